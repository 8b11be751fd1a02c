// Package admin is the `postern` command: the admin's one entry point, as
// Postfix's postfix(1), postconf(1), postmap(1)/postalias(1), postqueue(1)
// and postsuper(1) together.
//
//	postern [-c DIR] [-v] start|stop|reload|status|check|version
//	postern [-c DIR] conf [postconf flags]     (pkg/postconf)
//	postern [-c DIR] map  [postmap flags]      (pkg/postmap)
//	postern [-c DIR] queue [list|show|delete|hold|release|requeue] (pkg/queuectl)
//	postern [-c DIR] flush                      (pkg/queuectl)
//	postern demo [DIR]                          (embedded demo instance)
//
// The configuration directory is -c DIR, else $MAIL_CONFIG, else
// /etc/postern.
package admin

import (
	"fmt"
	"io"
	"os"

	"postern/pkg/config"
	"postern/pkg/control"
	"postern/pkg/master"
	"postern/pkg/mastercf"
	"postern/pkg/postconf"
	"postern/pkg/postmap"
	"postern/pkg/queuectl"
)

const usage = `usage: postern [-c config_dir] [-v] command [args]
commands:
  start | stop | reload | status   control the mail system
  check                            check the configuration, create or repair the queue
  conf [-n|-d|-h|-e|-X|-M] [name]  show or edit main.cf and master.cf (as postconf)
  map [-q key|-s|-a] type:name     query or check a lookup table (as postmap/postalias)
  flush                            retry all deferred mail now (as postqueue -f)
  queue [list] [-j]                list the queue (as mailq, postqueue -j)
  queue show [-beh] ID...          show a queued message (as postcat -q)
  queue delete|hold|release|requeue ID...|ALL|- [queue...]
                                   change the queue (as postsuper -d/-h/-H/-r)
  demo [DIR]                       write and start a demo instance on 127.0.0.1:2525
  version                          print the version
`

// Main runs the postern command and returns its exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	dirFlag := ""
	for len(args) > 0 && len(args[0]) > 1 && args[0][0] == '-' {
		switch args[0] {
		case "-c":
			if len(args) < 2 {
				fmt.Fprint(stderr, usage)
				return 64
			}
			dirFlag = args[1]
			args = args[2:]
		case "-v":
			args = args[1:]
		case "-h", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		default:
			fmt.Fprint(stderr, usage)
			return 64
		}
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 64
	}
	dir := config.Dir(dirFlag)
	withDir := func(rest []string) []string {
		if dirFlag == "" {
			return rest
		}
		return append([]string{"-c", dirFlag}, rest...)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "start":
		return Start(dir, stdout, stderr)
	case "stop":
		return control.Stop(dir, stdout, stderr)
	case "reload":
		return control.Reload(dir, stdout, stderr)
	case "status":
		return control.Status(dir, stdout, stderr)
	case "check":
		return Check(dir, stdout, stderr)
	case "conf":
		return postconf.Main(withDir(rest), stdout, stderr)
	case "map":
		// postmap takes its program name first, as in its argv.
		return postmap.Main(append([]string{"postern map"}, withDir(rest)...), stdout, stderr)
	case "flush":
		return queuectl.Flush(dir, rest, stdout, stderr)
	case "queue":
		return queuectl.Main(dir, rest, stdout, stderr)
	case "demo":
		d := "run"
		if len(rest) > 0 {
			d = rest[0]
		}
		return Demo(d, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "postern "+config.Version)
		return 0
	}
	fmt.Fprintf(stderr, "postern: unknown command %q\n%s", cmd, usage)
	return 64
}

// Start checks the configuration and starts the instance, as `postfix
// start` runs `postfix check` first; control.Start prepares the queue.
func Start(dir string, stdout, stderr io.Writer) int {
	cfg, rc := validate(dir, stderr)
	if rc != 0 {
		return rc
	}
	if owner, err := master.LookupOwner(cfg); err == nil && os.Geteuid() == 0 {
		for _, w := range unreadableByOwner(cfg, owner) {
			fmt.Fprintf(stderr, "postern: warning: %s\n", w)
		}
	}
	return control.Start(dir, stdout, stderr)
}

// Check validates main.cf and master.cf and creates or repairs the queue
// tree with the right owners and modes, as `postfix check`.
func Check(dir string, stdout, stderr io.Writer) int {
	cfg, rc := validate(dir, stderr)
	if rc != 0 {
		return rc
	}
	owner, err := master.LookupOwner(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "postern: fatal: %v\n", err)
		return 1
	}
	if os.Geteuid() == 0 {
		for _, w := range unreadableByOwner(cfg, owner) {
			fmt.Fprintf(stderr, "postern: warning: %s\n", w)
		}
	}
	changes, err := master.Prepare(cfg, owner)
	for _, c := range changes {
		fmt.Fprintf(stdout, "postern: %s\n", c)
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern: fatal: %v\n", err)
		return 1
	}
	return 0
}

// validate loads main.cf and master.cf and reports their problems as
// "file:line: ..."; errors give a non-zero status, warnings do not.
func validate(dir string, stderr io.Writer) (*config.Config, int) {
	cfg, err := config.Load(dir)
	if err != nil {
		fmt.Fprintf(stderr, "postern: fatal: %v\n", err)
		return nil, 1
	}
	services, mproblems, err := mastercf.Load(dir, cfg.Int("default_process_limit"))
	if err != nil {
		fmt.Fprintf(stderr, "postern: fatal: %v\n", err)
		return nil, 1
	}
	status := 0
	for _, p := range append(mproblems, cfg.Check(mastercf.ParamNames(services))...) {
		fmt.Fprintf(stderr, "postern: %s\n", p)
		if p.Severity == "error" {
			status = 1
		}
	}
	return cfg, status
}

package queuectl

// The `postern flush` and `postern queue ...` commands.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"postern/pkg/config"
	"postern/pkg/ipc"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
)

// Exit statuses (sysexits.h), as postqueue uses them; postsuper and
// postcat exit 1 on any fatal error.
const (
	exOK          = 0
	exFatal       = 1
	exUsage       = 64
	exUnavailable = 69
	exIOErr       = 74
	exTempFail    = 75
	exNoPerm      = 77
)

const usage = `usage: postern queue [list] [-j]
       postern queue show [-b] [-e] [-h] ID...
       postern queue delete|hold|release|requeue ID...|ALL|- [queue...]`

// Env is what one invocation works with; Main and Flush fill it from the
// process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	UID            int
	Loc            *time.Location // for arrival times; nil means time.Local
}

func processEnv(stdout, stderr io.Writer) Env {
	return Env{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, UID: os.Getuid()}
}

// Main runs `postern queue ARGS` with the configuration in dir and
// returns the exit status.
func Main(dir string, args []string, stdout, stderr io.Writer) int {
	return Run(processEnv(stdout, stderr), dir, args)
}

// Flush runs `postern flush` with the configuration in dir.
func Flush(dir string, args []string, stdout, stderr io.Writer) int {
	return RunFlush(processEnv(stdout, stderr), dir, args)
}

type cmd struct {
	Env
	prog string // postqueue, postsuper or postcat: whose job this is
	cfg  *config.Config
}

func (c *cmd) fatal(code int, format string, args ...any) int {
	fmt.Fprintf(c.Stderr, "%s: fatal: "+format+"\n", append([]any{c.prog}, args...)...)
	return code
}

func (c *cmd) load(dir string) int {
	cfg, err := config.Load(dir)
	if err != nil {
		return c.fatal(exFatal, "%v", err)
	}
	c.cfg = cfg
	if c.Loc == nil {
		c.Loc = time.Local
	}
	return exOK
}

func (c *cmd) qdir() string { return c.cfg.Get("queue_directory") }

// privileged: root, or the owner of the queue (incoming/ belongs to the
// mail_owner), for whom no ACL applies, as in Postfix.
func (c *cmd) privileged() bool {
	if c.UID == 0 {
		return true
	}
	var st syscall.Stat_t
	return syscall.Stat(filepath.Join(c.qdir(), queue.Incoming), &st) == nil && int(st.Uid) == c.UID
}

// refused maps an ACL refusal to postqueue's exit status.
func (c *cmd) refused(err error) int {
	var rf *drop.Refusal
	if errors.As(err, &rf) && rf.Status == drop.StatusTemp {
		return c.fatal(exTempFail, "%s", rf.Text)
	}
	return c.fatal(exNoPerm, "%v", err)
}

// trigger sends b to the service's socket in public/.
func (c *cmd) trigger(service string, b byte) error {
	return ipc.Trigger(filepath.Join(c.qdir(), queue.Public, c.cfg.Get(service)), b, c.cfg.Duration("trigger_timeout"))
}

// RunFlush is Flush with its environment given: postqueue -f.
func RunFlush(env Env, dir string, args []string) int {
	c := &cmd{Env: env, prog: "postqueue"}
	if len(args) > 0 {
		return c.fatal(exUsage, "usage: postern flush")
	}
	if rc := c.load(dir); rc != exOK {
		return rc
	}
	if err := FlushQueue(c.cfg, dir, c.UID, c.privileged()); err != nil {
		var re *ReportError
		errors.As(err, &re)
		return c.fatal(re.Status, "%s", re.Text)
	}
	return exOK
}

// Run is Main with its environment given.
func Run(env Env, dir string, args []string) int {
	sub := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "list":
		return runList(env, dir, args)
	case "show":
		return runShow(env, dir, args)
	case "delete":
		return runSuper(env, dir, Delete, args)
	case "hold":
		return runSuper(env, dir, Hold, args)
	case "release":
		return runSuper(env, dir, Release, args)
	case "requeue":
		return runSuper(env, dir, Requeue, args)
	}
	fmt.Fprintf(env.Stderr, "postern: unknown queue command %q\n%s\n", sub, usage)
	return exUsage
}

// runList is postqueue -p and -j.
func runList(env Env, dir string, args []string) int {
	c := &cmd{Env: env, prog: "postqueue"}
	asJSON := false
	for _, a := range args {
		switch a {
		case "-j":
			asJSON = true
		case "-p":
			asJSON = false
		default:
			return c.fatal(exUsage, "%s", usage)
		}
	}
	if rc := c.load(dir); rc != exOK {
		return rc
	}
	format := FormatText
	if asJSON {
		format = FormatJSON
	}
	if err := Report(c.cfg, dir, c.UID, c.privileged(), format, c.Loc, c.Stdout); err != nil {
		var re *ReportError
		errors.As(err, &re)
		return c.fatal(re.Status, "%s", re.Text)
	}
	return exOK
}

// runShow is postcat -q.
func runShow(env Env, dir string, args []string) int {
	c := &cmd{Env: env, prog: "postcat"}
	var flags ShowFlags
	var ids []string
	for _, a := range args {
		if len(a) > 1 && a[0] == '-' {
			for _, f := range a[1:] {
				switch f {
				case 'b':
					flags.Body = true
				case 'e':
					flags.Envelope = true
				case 'h':
					flags.Header = true
				default:
					return c.fatal(exFatal, "%s", usage)
				}
			}
			continue
		}
		ids = append(ids, a)
	}
	if len(ids) == 0 {
		return c.fatal(exFatal, "%s", usage)
	}
	if rc := c.load(dir); rc != exOK {
		return rc
	}
	store := queue.NewStore(c.qdir())
	for _, id := range ids {
		f, q, err := Open(store, id)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return c.fatal(exFatal, "open queue file %s: No such file or directory", id)
			}
			return c.fatal(exFatal, "%v", err)
		}
		fi, err := f.Stat()
		if err == nil {
			err = Show(c.Stdout, f, fi.Size(), q+"/"+id, flags, c.Loc)
		}
		f.Close()
		if err != nil {
			if errors.Is(err, syscall.EPIPE) {
				return exOK
			}
			return c.fatal(exFatal, "%v", err)
		}
	}
	return exOK
}

// runSuper is postsuper -d, -h, -H or -r.
func runSuper(env Env, dir string, op Op, args []string) int {
	c := &cmd{Env: env, prog: "postsuper"}
	var queues, targets []string
	for _, a := range args {
		if isQueueName(a) {
			queues = append(queues, a)
		} else {
			targets = append(targets, a)
		}
	}
	if len(targets) == 0 {
		return c.fatal(exFatal, "usage: postern queue %s ID...|ALL|- [queue...]", op)
	}
	if rc := c.load(dir); rc != exOK {
		return rc
	}
	if !c.privileged() {
		return c.fatal(exFatal, "use of this command is reserved for the superuser and the mail_owner")
	}
	ctl := &Ctl{
		Store:  queue.NewStore(c.qdir()),
		Log:    c.logger("postsuper"),
		Stderr: c.Stderr,
		Trigger: func(b byte) error {
			return c.trigger("queue_service_name", b)
		},
	}
	if ctl.Log != nil {
		defer ctl.Log.Close()
	}
	for _, t := range targets {
		switch t {
		case "ALL":
			ctl.DoAll(op, queues)
		case "-":
			sc := bufio.NewScanner(c.Stdin)
			for sc.Scan() {
				ctl.Do(op, strings.TrimSpace(sc.Text()), queues)
			}
			if err := sc.Err(); err != nil {
				ctl.Finish()
				return c.fatal(exFatal, "read standard input: %v", err)
			}
		default:
			ctl.Do(op, t, queues)
		}
	}
	ctl.Finish()
	if ctl.Failed() {
		return exFatal
	}
	return exOK
}

// logger opens the mail log as program prog; nil when it cannot be
// written (then standard error is all there is), or when there is no
// syslog socket and no maillog_file (maillog would then copy every line to
// our standard error a second time).
func (c *cmd) logger(prog string) *maillog.Logger {
	file := c.cfg.Get("maillog_file")
	if file == "" {
		if _, err := os.Stat("/dev/log"); err != nil {
			return nil
		}
	}
	prefixes := c.cfg.List("maillog_file_prefixes")
	if len(prefixes) == 0 {
		prefixes = nil
	}
	l, err := maillog.New(maillog.Options{
		SyslogName:   c.cfg.Get("syslog_name"),
		Program:      prog,
		Facility:     c.cfg.Get("syslog_facility"),
		File:         file,
		FilePrefixes: prefixes,
		Hostname:     c.cfg.Get("myhostname"),
	})
	if err != nil {
		return nil
	}
	return l
}

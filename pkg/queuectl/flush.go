package queuectl

// Flushing the queue (postqueue -f, sendmail -q, postern flush): wake qmgr
// to retry the deferred queue ('F') and pickup to scan maildrop/ ('W').
//
// Both triggers go to sockets in public/, which is open only to root, the
// mail_owner and setgid_group. Anyone else who passes
// authorized_flush_users goes through the set-group-ID postdrop, run as
// "postdrop flush [-c DIR]", as showq's listing does (showq.go): it
// plays the part of Postfix's set-group-ID postqueue.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"postern/pkg/config"
	"postern/pkg/ipc"
	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
)

// FlushArg, first on postdrop's command line, makes it the set-group-ID
// flush relay.
const FlushArg = "flush"

// IsFlushRelay reports whether postdrop was run as the flush relay.
func IsFlushRelay(args []string) bool { return len(args) > 1 && args[1] == FlushArg }

// FlushQueue asks qmgr and pickup to deliver now. privileged callers
// (root, the mail_owner) skip authorized_flush_users. confDir is passed
// to postdrop ("" for the default). Errors are *ReportError with
// postqueue's exit status and text.
func FlushQueue(cfg *config.Config, confDir string, uid int, privileged bool) error {
	if !privileged {
		if err := checkFlush(cfg, uid); err != nil {
			return err
		}
	}
	err := triggerFlush(cfg)
	if errors.Is(err, fs.ErrPermission) && !privileged {
		return flushRelay(cfg, confDir)
	}
	if err != nil {
		return flushDown(err)
	}
	return nil
}

func checkFlush(cfg *config.Config, uid int) error {
	if err := drop.CheckFlush(cfg, uid); err != nil {
		var rf *drop.Refusal
		if errors.As(err, &rf) && rf.Status == drop.StatusTemp {
			return &ReportError{Status: exTempFail, Text: rf.Text}
		}
		return &ReportError{Status: exNoPerm, Text: err.Error()}
	}
	return nil
}

func flushDown(err error) *ReportError {
	return &ReportError{Status: exUnavailable, Text: fmt.Sprintf("Cannot flush mail queue - mail system is down (%v)", err)}
}

// triggerFlush sends 'F' to qmgr and, when master.cf has pickup, 'W' to
// pickup.
func triggerFlush(cfg *config.Config) error {
	pub := filepath.Join(cfg.Get("queue_directory"), queue.Public)
	timeout := cfg.Duration("trigger_timeout")
	if err := ipc.Trigger(filepath.Join(pub, cfg.Get("queue_service_name")), 'F', timeout); err != nil {
		return err
	}
	pickup := filepath.Join(pub, cfg.Get("pickup_service_name"))
	if _, err := os.Lstat(pickup); err != nil && !errors.Is(err, fs.ErrPermission) {
		return nil // no pickup in master.cf: no socket
	}
	return ipc.Trigger(pickup, 'W', timeout)
}

// flushRelay runs "postdrop flush"; its diagnostic line becomes the error.
func flushRelay(cfg *config.Config, confDir string) error {
	args := []string{FlushArg}
	if confDir != "" {
		args = append(args, "-c", confDir)
	}
	cmd := exec.Command(filepath.Join(cfg.Get("command_directory"), "postdrop"), args...)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	text := strings.TrimSpace(stderr.b.String())
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		if text == "" {
			text = fmt.Sprintf("Cannot flush mail queue: postdrop exited with status %d", ee.ExitCode())
		}
		return &ReportError{Status: ee.ExitCode(), Text: text}
	}
	return &ReportError{Status: exUnavailable, Text: fmt.Sprintf("Cannot flush mail queue: run postdrop: %v", err)}
}

// FlushRelayMain is postdrop run as "postdrop flush [-c DIR]" (args
// without the program name and FlushArg): with the set-group-ID
// privilege that opens public/, it sends the flush triggers. The
// configuration directory must be trusted as for a submission, and the
// real uid must pass authorized_flush_users. Its diagnostic is one line
// on stderr; the exit status is postqueue's.
func FlushRelayMain(args []string, stderr io.Writer) int {
	fail := func(status int, format string, a ...any) int {
		fmt.Fprintf(stderr, format+"\n", a...)
		return status
	}
	var confFlag string
	for i := 0; i < len(args); i++ {
		if args[i] == "-c" && i+1 < len(args) {
			i++
			confFlag = args[i]
			continue
		}
		return fail(exUsage, "usage: postdrop flush [-c config_dir]")
	}
	cfg, uid, err := relayConfig(confFlag)
	if err != nil {
		return fail(exTempFail, "%v", err)
	}
	if err := checkFlush(cfg, uid); err != nil {
		re := err.(*ReportError)
		return fail(re.Status, "%s", re.Text)
	}
	if err := triggerFlush(cfg); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fail(exUnavailable, "Cannot flush mail queue - cannot reach %s: permission denied (is postdrop set-group-ID %s?)",
				filepath.Join(cfg.Get("queue_directory"), queue.Public), cfg.Get("setgid_group"))
		}
		return fail(exUnavailable, "%s", flushDown(err).Text)
	}
	return exOK
}

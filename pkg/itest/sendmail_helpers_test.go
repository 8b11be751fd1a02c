package itest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pickupMasterCf is the master.cf line of the pickup service, as in
// Postfix's stock master.cf.
const pickupMasterCf = "pickup    unix  n       -       n       60      1       pickup"

// Run is one finished command.
type Run struct {
	Code           int
	Stdout, Stderr string
}

// Sendmail runs the built sendmail (or mailq, newaliases when argv0 says
// so) against this instance, with MAIL_CONFIG set, stdin given, and
// optional credentials.
func (in *Instance) Sendmail(argv0, stdin string, cred *syscall.Credential, args ...string) Run {
	in.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "sendmail"), args...)
	cmd.Args[0] = argv0
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+in.Conf)
	cmd.Stdin = strings.NewReader(stdin)
	return in.run(cmd, cred, "sendmail")
}

// run runs cmd (with cred, when not nil) to its end, at most 30 s, and
// returns its exit code and output.
func (in *Instance) run(cmd *exec.Cmd, cred *syscall.Credential, what string) Run {
	in.t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := cmd.Start(); err != nil {
		in.t.Fatalf("start %s: %v", what, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		r := Run{Stdout: out.String(), Stderr: errb.String()}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.Code = ee.ExitCode()
		} else if err != nil {
			in.t.Fatalf("%s: %v", what, err)
		}
		return r
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		in.t.Fatalf("%s %v: timed out", what, cmd.Args)
		return Run{}
	}
}

// QueueFiles lists the queue IDs in one queue directory.
func (in *Instance) QueueFiles(q string) []string {
	ents, _ := os.ReadDir(filepath.Join(in.Dir, "queue", q))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// WaitQueueFiles waits until queue q holds n entries.
func (in *Instance) WaitQueueFiles(q string, n int, timeout time.Duration) []string {
	in.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		files := in.QueueFiles(q)
		if len(files) == n {
			return files
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("%s/ holds %v after %v, want %d entries\n%s", q, files, timeout, n, in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newSendmailInstance starts an instance with the pickup service. When
// the test is root the workers run as mail_owner, which must be able to
// execute the built programs and to reach the run directory (t.TempDir
// and os.MkdirTemp create mode 0700 directories), and the tests run
// sendmail as another user: those directories are opened to 0755.
func newSendmailInstance(t *testing.T, o Options) *Instance {
	t.Helper()
	o.MasterCf += "\n" + pickupMasterCf
	return NewInstance(t, o)
}

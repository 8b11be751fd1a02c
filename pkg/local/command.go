package local

// Delivery to commands (|command in aliases and .forward, and
// mailbox_command): the command runs through the shell in a child process
// with the delivering user's credentials (no supplementary groups), with
// the message on its standard input, the environment local(8) documents,
// a time limit, and its exit status read as <sysexits.h>.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"postern/pkg/deliver"
)

// commandSpec is one command delivery.
type commandSpec struct {
	command string
	id      identity
	env     []string
	dir     string // working directory; "" keeps queue_directory
	shell   string // local_command_shell; "" is /bin/sh
	timeout time.Duration
}

// defaultPath is the PATH commands get (Postfix resets it to the
// system's default path).
const defaultPath = "/usr/bin:/bin"

// commandEnv builds the environment of a command: PATH, the
// export_environment names taken from this process, then the recipient
// attributes, each value filtered through command_expansion_filter.
func commandEnv(export []string, vals [][2]string, allowed string) []string {
	env := []string{"PATH=" + defaultPath}
	for _, name := range export {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	for _, kv := range vals {
		env = append(env, kv[0]+"="+filterChars(kv[1], allowed))
	}
	return env
}

// maxCommandOutput bounds the command output kept for the bounce text.
const maxCommandOutput = 2048

// runCommand runs spec with the message written by content on its
// standard input and turns the outcome into a delivery result.
func (c *childRunner) runCommand(spec commandSpec, content func(io.Writer) error) deliver.Result {
	shell := spec.shell
	if shell == "" {
		shell = "/bin/sh"
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.timeout)
	defer cancel()
	cmd := exec.Command(shell, "-c", spec.command)
	cmd.Env = spec.env
	cmd.Dir = spec.dir
	cmd.SysProcAttr = c.sysProcAttr(spec.id)
	var out bytes.Buffer
	lb := &limitedBuffer{b: &out, left: maxCommandOutput}
	cmd.Stdout, cmd.Stderr = lb, lb
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return deliver.Result{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot run command: " + err.Error()}
	}
	if err := cmd.Start(); err != nil {
		return deliver.Result{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot run command: " + errText(err)}
	}
	// The whole process group goes when the time limit passes: the shell
	// may have started children that keep the pipes open.
	stop := context.AfterFunc(ctx, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stop()
	werr := content(stdin)
	stdin.Close()
	err = cmd.Wait()
	if ctx.Err() == context.DeadlineExceeded {
		return deliver.Result{Status: deliver.Defer, DSN: "4.3.0", Text: fmt.Sprintf("Command time limit exceeded: %q", spec.command)}
	}
	if werr != nil && !errors.Is(werr, syscall.EPIPE) && err == nil {
		return deliver.Result{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot read message: " + errText(werr)}
	}
	if err == nil {
		return deliver.Result{Status: deliver.Sent, DSN: "2.0.0", Text: "delivered to command: " + spec.command}
	}
	return commandFailure(spec.command, err, out.String())
}

// sysexits maps <sysexits.h> codes (EX_USAGE 64 ... EX_CONFIG 78) to
// enhanced status codes; EX_OSERR and EX_TEMPFAIL are temporary.
var sysexits = map[int]string{
	64: "5.3.0",
	65: "5.6.0",
	66: "5.3.0",
	67: "5.1.1",
	68: "5.1.2",
	69: "5.3.0",
	70: "5.3.0",
	71: "4.3.0",
	72: "5.3.0",
	73: "5.2.0",
	74: "5.3.0",
	75: "4.3.0",
	76: "5.5.0",
	77: "5.7.0",
	78: "5.3.5",
}

var leadingDSN = regexp.MustCompile(`^([245])\.(\d{1,3})\.(\d{1,3})\b`)

// commandFailure turns a failed command into a defer or bounce. An output
// that starts with an enhanced status code (RFC 3463) takes precedence
// over the exit status, as in Postfix.
func commandFailure(command string, err error, output string) deliver.Result {
	output = strings.Join(strings.Fields(output), " ")
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return deliver.Result{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot run command: " + errText(err)}
	}
	ws, _ := ee.Sys().(syscall.WaitStatus)
	var text, dsn string
	status := deliver.Bounce
	if ws.Signaled() {
		text = fmt.Sprintf("Command died with signal %d: %q", ws.Signal(), command)
		dsn, status = "4.3.0", deliver.Defer
	} else {
		code := ws.ExitStatus()
		var ok bool
		if dsn, ok = sysexits[code]; !ok {
			dsn = "5.3.0"
		}
		if dsn[0] == '4' {
			status = deliver.Defer
		}
		text = fmt.Sprintf("Command died with status %d: %q", code, command)
	}
	if m := leadingDSN.FindStringSubmatch(output); m != nil && m[1] != "2" {
		dsn = m[0]
		status = deliver.Bounce
		if m[1] == "4" {
			status = deliver.Defer
		}
		output = strings.TrimSpace(output[len(m[0]):])
	}
	if output != "" {
		text += ". Command output: " + output
	}
	return deliver.Result{Status: status, DSN: dsn, Text: text}
}

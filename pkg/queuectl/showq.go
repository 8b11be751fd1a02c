package queuectl

// The showq service and its clients: how users who may not read the
// queue directories still get the listing, as Postfix's showq(8) and
// postqueue -p.
//
// The conversation on $queue_directory/public/$showq_service_name:
//
//	client: FORMAT "\n"                  "text" (mailq) or "json" (postqueue -j)
//	server: "ok\n" LISTING, then close   the listing exactly as WriteMailq or WriteJSON print it
//	server: "error\n", then close        the queue could not be read (the reason is in the log)
//
// The status line exists because an empty queue lists as nothing at all
// in JSON: without it a client could not tell an empty queue from a
// server that failed. The request is at most showqMaxRequest bytes; each
// read and write of either side must progress within ipc_timeout.
//
// A caller who is neither root nor the mail_owner is refused the queue
// directories (mode 0700) and, unless in setgid_group, public/ too (mode
// 0710, group setgid_group). It reaches showq as Postfix's set-group-ID
// postqueue does: through the set-group-ID postdrop, run as
// "postdrop showq [-c DIR] FORMAT", which checks the configuration
// directory as for a submission, applies authorized_mailq_users to the
// real uid, and copies the listing to its standard output.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"postern/pkg/config"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
	"postern/pkg/server"
)

// Listing formats: the request line of the showq conversation.
const (
	FormatText = "text" // mailq, sendmail -bp, postqueue -p
	FormatJSON = "json" // postqueue -j
)

const (
	showqMaxRequest = 16   // bytes of the request line, newline included
	showqMaxStatus  = 64   // bytes of the status line a client accepts
	showqStderrMax  = 4096 // bytes of the relay's diagnostic kept
)

// ShowqArg, first on postdrop's command line, makes it the set-group-ID
// showq relay instead of a submission step.
const ShowqArg = "showq"

// Showq is the showq service: one listing per connection.
type Showq struct {
	store   *queue.Store
	timeout time.Duration
	loc     *time.Location
	log     *maillog.Logger
}

// NewShowq is the showq daemon's constructor for pkg/server.
func NewShowq(ctx context.Context, sc *server.Context) (any, error) {
	return &Showq{
		store:   queue.NewStore(sc.Config.Get("queue_directory")),
		timeout: sc.Config.Duration("ipc_timeout"),
		loc:     time.Local,
		log:     sc.Log,
	}, nil
}

// Handle serves one client: read its format, send the listing. The work
// is one pass over the queue, as `postern queue` does; an idle or
// stalled client is dropped after ipc_timeout.
func (s *Showq) Handle(ctx context.Context, conn net.Conn) {
	// A stopping worker must not wait ipc_timeout for a stalled client.
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	c := &deadlineConn{Conn: conn, timeout: s.timeout}
	format, err := readRequest(c)
	if err != nil {
		s.warn("showq: bad request: %v", err)
		return
	}
	entries, err := List(s.store)
	bw := bufio.NewWriter(c)
	if err != nil {
		s.warn("showq: queue report unavailable: %v", err)
		bw.WriteString("error\n")
		bw.Flush()
		return
	}
	bw.WriteString("ok\n")
	if format == FormatJSON {
		err = WriteJSON(bw, entries)
	} else {
		err = WriteMailq(bw, entries, s.loc)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		s.warn("showq: write listing: %v", err)
	}
}

func (s *Showq) warn(format string, args ...any) {
	if s.log != nil {
		s.log.Warning(format, args...)
	}
}

// readRequest reads the request line: a known format, bounded.
func readRequest(r io.Reader) (string, error) {
	var buf [showqMaxRequest]byte
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return parseFormat(string(buf[:i]))
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("request longer than %d bytes", showqMaxRequest)
}

func parseFormat(s string) (string, error) {
	switch s {
	case FormatText, FormatJSON:
		return s, nil
	}
	return "", fmt.Errorf("unknown format %q", printable(s))
}

// deadlineConn gives each read and write its own deadline: a client may
// take as long as it likes in total, but never stall longer than timeout.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(b)
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Write(b)
}

// ReportError is why a listing failed: Status is postqueue's exit status
// (69 EX_UNAVAILABLE, 74 EX_IOERR, 77 EX_NOPERM, 75 EX_TEMPFAIL) and Text
// its message, without the program name.
type ReportError struct {
	Status int
	Text   string
}

func (e *ReportError) Error() string { return e.Text }

func unavailable(format string, args ...any) *ReportError {
	return &ReportError{Status: exUnavailable, Text: fmt.Sprintf(format, args...)}
}

// errDown is a showq service that cannot be reached or hung up early.
var errDown = errors.New("mail system is down")

// ShowqClient asks the showq service at path for a listing in format and
// copies it to w. A service that is not there, refuses the connection or
// hangs up before its status line gives an error matching errDown (and
// the cause: fs.ErrPermission when public/ is closed to the caller); an
// error writing w is a *ReportError with status 74.
func ShowqClient(path, format string, timeout time.Duration, w io.Writer) error {
	if _, err := parseFormat(format); err != nil {
		return err
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("%w (%w)", errDown, err)
	}
	defer conn.Close()
	c := &deadlineConn{Conn: conn, timeout: timeout}
	if _, err := io.WriteString(c, format+"\n"); err != nil {
		return fmt.Errorf("%w (%w)", errDown, err)
	}
	br := bufio.NewReaderSize(c, 16<<10)
	status, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) || len(status) > showqMaxStatus {
			return unavailable("Queue report unavailable: malformed reply from %s", path)
		}
		return fmt.Errorf("%w (%s: %w)", errDown, path, err)
	}
	switch string(status) {
	case "ok\n":
	case "error\n":
		return unavailable("Queue report unavailable: the showq service could not read the queue (see the mail log)")
	default:
		return unavailable("Queue report unavailable: malformed reply from %s", path)
	}
	if _, err := br.WriteTo(&errWriter{w: w}); err != nil {
		var we *writeErr
		if errors.As(err, &we) {
			return outputError(we.err)
		}
		return unavailable("Queue report unavailable: %s: %v", path, err)
	}
	return nil
}

// outputError is an error writing the listing: none when the reader went
// away (EPIPE: "mailq | head"), else postqueue's "output write error".
func outputError(err error) error {
	if err == nil || errors.Is(err, syscall.EPIPE) || errors.Is(err, fs.ErrClosed) {
		return nil
	}
	return &ReportError{Status: exIOErr, Text: fmt.Sprintf("output write error: %v", err)}
}

// errWriter marks errors of the destination, to tell them from errors of
// the connection in io.Copy's result.
type errWriter struct{ w io.Writer }

type writeErr struct{ err error }

func (e *writeErr) Error() string { return e.err.Error() }
func (e *writeErr) Unwrap() error { return e.err }

func (e *errWriter) Write(b []byte) (int, error) {
	n, err := e.w.Write(b)
	if err != nil {
		return n, &writeErr{err}
	}
	return n, nil
}

// Report is how mailq, sendmail -bp and `postern queue` list the queue:
// root and the mail_owner (direct) read the queue files; everyone else
// must pass authorized_mailq_users and gets the listing from the showq
// service, through the set-group-ID postdrop when public/ is closed to
// them. confDir is passed to postdrop ("" for the default). Errors are
// *ReportError; a reader that went away (EPIPE) is not an error.
func Report(cfg *config.Config, confDir string, uid int, direct bool, format string, loc *time.Location, w io.Writer) error {
	err := report(cfg, confDir, uid, direct, format, loc, w)
	if err == nil {
		return nil
	}
	var re *ReportError
	if errors.As(err, &re) {
		return re
	}
	return unavailable("Queue report unavailable: %v", err)
}

func report(cfg *config.Config, confDir string, uid int, direct bool, format string, loc *time.Location, w io.Writer) error {
	qdir := cfg.Get("queue_directory")
	if direct {
		entries, err := List(queue.NewStore(qdir))
		if err != nil {
			return unavailable("Queue report unavailable: %v", err)
		}
		if format == FormatJSON {
			err = WriteJSON(w, entries)
		} else {
			err = WriteMailq(w, entries, loc)
		}
		return outputError(err)
	}
	if err := drop.CheckMailq(cfg, uid); err != nil {
		var rf *drop.Refusal
		if errors.As(err, &rf) && rf.Status == drop.StatusTemp {
			return &ReportError{Status: exTempFail, Text: rf.Text}
		}
		return &ReportError{Status: exNoPerm, Text: err.Error()}
	}
	path := filepath.Join(qdir, queue.Public, cfg.Get("showq_service_name"))
	err := ShowqClient(path, format, cfg.Duration("ipc_timeout"), w)
	if errors.Is(err, errDown) && errors.Is(err, fs.ErrPermission) {
		err = relay(cfg, confDir, format, w)
	}
	if errors.Is(err, errDown) {
		return unavailable("Queue report unavailable - %v", err)
	}
	return err
}

// relay runs the set-group-ID postdrop as the showq client. Its standard
// output is the listing; its standard error one line of diagnostics,
// which becomes the error's text, with its exit status.
func relay(cfg *config.Config, confDir, format string, w io.Writer) error {
	args := []string{ShowqArg}
	if confDir != "" {
		args = append(args, "-c", confDir)
	}
	cmd := exec.Command(filepath.Join(cfg.Get("command_directory"), "postdrop"), append(args, format)...)
	var stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	err := cmd.Run()
	text := strings.TrimSpace(stderr.b.String())
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() < 0:
		// Killed: by SIGPIPE when the reader of the listing went away.
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGPIPE {
			return nil
		}
	case errors.As(err, &ee):
		if text == "" {
			text = fmt.Sprintf("Queue report unavailable: postdrop exited with status %d", ee.ExitCode())
		}
		return &ReportError{Status: ee.ExitCode(), Text: text}
	}
	return unavailable("Queue report unavailable: run postdrop: %v", err)
}

// limitedBuffer keeps the first showqStderrMax bytes written to it.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := showqStderrMax - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// relayConfig is the start of postdrop's showq and flush relays: the
// caller's configuration directory (-c, or the default) must be trusted
// as for a submission when postdrop runs set-group-ID; it returns the
// configuration and the real uid.
func relayConfig(confFlag string) (*config.Config, int, error) {
	uid := os.Getuid()
	privileged := os.Getegid() != os.Getgid() || os.Geteuid() != uid
	dir := config.Dir(confFlag)
	if err := drop.TrustConfigDir(dir, uid, privileged); err != nil {
		return nil, uid, err
	}
	cfg, err := config.Load(dir)
	return cfg, uid, err
}

// IsShowqRelay reports whether postdrop was run as the showq relay.
func IsShowqRelay(args []string) bool { return len(args) > 1 && args[1] == ShowqArg }

// ShowqRelayMain is postdrop run as "postdrop showq [-c DIR] FORMAT" (args
// without the program name and ShowqArg): with the set-group-ID privilege
// that opens public/, it copies the showq listing to stdout. The caller's
// configuration directory must be trusted as for a submission, and the
// real uid must pass authorized_mailq_users. Its diagnostic is one line
// on stderr, without a program name (the caller adds its own); the exit
// status is postqueue's.
func ShowqRelayMain(args []string, stdout, stderr io.Writer) int {
	fail := func(status int, format string, a ...any) int {
		fmt.Fprintf(stderr, format+"\n", a...)
		return status
	}
	var confFlag, format string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-c" && i+1 < len(args):
			i++
			confFlag = args[i]
		case format == "" && (a == FormatText || a == FormatJSON):
			format = a
		default:
			return fail(exUsage, "usage: postdrop showq [-c config_dir] text|json")
		}
	}
	if format == "" {
		return fail(exUsage, "usage: postdrop showq [-c config_dir] text|json")
	}
	cfg, uid, err := relayConfig(confFlag)
	if err != nil {
		return fail(exTempFail, "%v", err)
	}
	if err := drop.CheckMailq(cfg, uid); err != nil {
		var rf *drop.Refusal
		if errors.As(err, &rf) && rf.Status == drop.StatusTemp {
			return fail(exTempFail, "%s", rf.Text)
		}
		return fail(exNoPerm, "%v", err)
	}
	path := filepath.Join(cfg.Get("queue_directory"), queue.Public, cfg.Get("showq_service_name"))
	err = ShowqClient(path, format, cfg.Duration("ipc_timeout"), stdout)
	var re *ReportError
	switch {
	case err == nil:
		return exOK
	case errors.As(err, &re):
		return fail(re.Status, "%s", re.Text)
	case errors.Is(err, errDown) && errors.Is(err, fs.ErrPermission):
		return fail(exUnavailable, "Queue report unavailable - cannot reach %s: permission denied (is postdrop set-group-ID %s?)", path, cfg.Get("setgid_group"))
	case errors.Is(err, errDown):
		return fail(exUnavailable, "Queue report unavailable - %v", err)
	}
	return fail(exUnavailable, "Queue report unavailable: %v", err)
}

package sendmail

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"postern/pkg/config"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
)

// Env is what one invocation works with; Main fills it from the process.
type Env struct {
	Argv0  string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	UID    int
	Getenv func(string) string
}

// run is one invocation in progress.
type run struct {
	Env
	prog string
	opts *Options
	dir  string
	cfg  *config.Config
}

// Main runs sendmail (or mailq, newaliases by argv[0]) and returns the
// exit status.
func Main(args []string) int {
	return Run(Env{
		Argv0: os.Args[0], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		UID: os.Getuid(), Getenv: os.Getenv,
	}, args)
}

// Run is Main with its environment given.
func Run(env Env, args []string) int {
	r := &run{Env: env, prog: filepath.Base(env.Argv0)}
	if r.prog == "" || r.prog == "." {
		r.prog = "sendmail"
	}
	err := r.main(args)
	if err == nil {
		return ExOK
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: ExSoftware, Msg: err.Error()}
	}
	fmt.Fprintf(r.Stderr, "%s: fatal: %s\n", r.prog, e.Msg)
	r.logFatal(e.Msg)
	return e.Code
}

func (r *run) warnf(format string, args ...any) {
	fmt.Fprintf(r.Stderr, "%s: warning: "+format+"\n", append([]any{r.prog}, args...)...)
}

// logFatal copies a fatal error to the mail log, as Postfix's sendmail
// does, when the log can be opened (an unprivileged user may not be able
// to write maillog_file; then stderr is all there is).
func (r *run) logFatal(msg string) {
	if r.cfg == nil {
		return
	}
	file := r.cfg.Get("maillog_file")
	if file == "" {
		// Without a syslog socket maillog would fall back to our stderr,
		// which has the message already.
		if _, err := os.Stat("/dev/log"); err != nil {
			return
		}
	}
	log, err := maillog.New(maillog.Options{
		SyslogName:   r.cfg.Get("syslog_name"),
		Program:      "sendmail",
		Facility:     r.cfg.Get("syslog_facility"),
		File:         file,
		FilePrefixes: nonEmpty(r.cfg.List("maillog_file_prefixes")),
		Hostname:     r.cfg.Get("myhostname"),
	})
	if err != nil {
		return
	}
	log.Fatal("%s", msg)
	log.Close()
}

func nonEmpty(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

func (r *run) main(args []string) error {
	opts, err := ParseArgs(r.Argv0, args)
	if err != nil {
		return err
	}
	r.opts = opts
	for _, w := range opts.Warnings {
		r.warnf("%s", w)
	}
	if opts.ConfigDir != "" {
		// postdrop and postern, started from here, must read the same
		// configuration.
		os.Setenv("MAIL_CONFIG", opts.ConfigDir)
	}
	r.dir = opts.ConfigDir
	if r.dir == "" {
		r.dir = config.Dir("")
	}
	cfg, err := config.Load(r.dir)
	if err != nil {
		return fatalf(ExTempFail, "%v", err)
	}
	r.cfg = cfg
	switch opts.Mode {
	case ModeIgnore:
		return nil
	case ModeNewAlias:
		return r.newaliases()
	case ModeMailq:
		return r.mailq()
	case ModeFlush:
		return r.flush()
	case ModeDaemon:
		return r.daemon()
	case ModeSMTP:
		return r.smtp()
	}
	return r.enqueue()
}

// who names the caller in error messages, as Postfix: "login(uid)".
func (r *run) who(login string) string {
	if login == "" {
		login = "unknown"
	}
	return fmt.Sprintf("%s(%d)", login, r.UID)
}

// account is the caller's password entry: login name and GECOS name.
func (r *run) account() (login, gecos string) {
	u, err := user.LookupId(strconv.Itoa(r.UID))
	if err != nil {
		return "", ""
	}
	return u.Username, u.Name
}

// fullName is Postfix's fullname(): $NAME, else the GECOS name up to the
// first comma with '&' standing for the capitalised login name.
func fullName(getenv func(string) string, login, gecos string) string {
	if n := getenv("NAME"); n != "" {
		return n
	}
	if i := strings.IndexByte(gecos, ','); i >= 0 {
		gecos = gecos[:i]
	}
	if strings.Contains(gecos, "&") && login != "" {
		gecos = strings.ReplaceAll(gecos, "&", strings.ToUpper(login[:1])+login[1:])
	}
	return gecos
}

// senderAddress turns a -f argument into an envelope sender: the first
// address it holds, "" for "<>" (the null sender).
func (r *run) senderAddress(s string) string {
	t := strings.TrimSpace(s)
	if t == "" || t == "<>" {
		return ""
	}
	addrs := Addresses(t)
	if len(addrs) > 1 {
		r.warnf("-f option specified malformed sender: %s", s)
	}
	if len(addrs) == 0 {
		return ""
	}
	return addrs[0]
}

// submission builds the envelope of a message from the command line.
func (r *run) submission(login, gecos string) *drop.Submission {
	o := r.opts
	s := &drop.Submission{
		Sender:   login,
		Remote:   o.Remote,
		BodyType: o.BodyType,
		DSNRet:   o.Ret,
		DSNEnvID: o.EnvID,
		SMTPUTF8: o.SMTPUTF8,
		Trace:    o.Trace,
	}
	if o.HaveSender {
		s.Sender = r.senderAddress(o.Sender)
	}
	if o.HaveName {
		s.FullName = o.FullName
	} else {
		s.FullName = fullName(r.Getenv, login, gecos)
	}
	s.FullName = sanitizeName(s.FullName)
	for _, a := range o.Recipients {
		for _, addr := range Addresses(a) {
			s.Recipients = append(s.Recipients, queue.Recipient{Addr: addr, Notify: o.Notify})
		}
	}
	return s
}

// sanitizeName makes a full name safe for a header: control characters
// become spaces, and it is cut to a sane length.
func sanitizeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// openSink decides how the message reaches maildrop/: directly for root
// and for the owner of maildrop/ (mail_owner, or the user who runs an
// unprivileged instance), through postdrop for everyone else.
func (r *run) openSink(s *drop.Submission) (drop.Sink, error) {
	qdir := r.cfg.Get("queue_directory")
	store := queue.NewStore(qdir)
	if r.UID == 0 || ownedBy(filepath.Join(qdir, queue.Maildrop), r.UID) {
		return drop.Direct(r.cfg, store, r.UID, s)
	}
	path := filepath.Join(r.cfg.Get("command_directory"), "postdrop")
	return drop.Postdrop(path, r.opts.ConfigDir, r.opts.Verbose > 1, s)
}

func ownedBy(path string, uid int) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return false
	}
	return int(st.Uid) == uid
}

// refusalError maps a drop refusal to Postfix's exit status.
func refusalError(who string, err error) error {
	var rf *drop.Refusal
	if !errors.As(err, &rf) {
		return fatalf(ExTempFail, "%s: %v", who, err)
	}
	code := ExUnavailable
	switch rf.Status {
	case drop.StatusNoPerm:
		code = ExNoPerm
	case drop.StatusTemp:
		code = ExTempFail
	case drop.StatusBad:
		code = ExSoftware
	case drop.StatusSize:
		code = ExUnavailable
	}
	return fatalf(code, "%s: %s", who, rf.Text)
}

func (r *run) enqueue() error {
	login, gecos := r.account()
	if login == "" && !r.opts.HaveSender {
		return fatalf(ExOSErr, "no login name found for user ID %d", r.UID)
	}
	who := r.who(login)
	// A friendlier early answer; postdrop enforces it again.
	if err := drop.CheckSubmit(r.cfg, r.UID); err != nil {
		return refusalError(who, err)
	}
	s := r.submission(login, gecos)
	if !r.opts.Extract && len(s.Recipients) == 0 {
		return fatalf(ExUsage, "%s: Recipient addresses must be specified on the command line or via the -t option", who)
	}
	sink, err := r.openSink(s)
	if err != nil {
		return refusalError(who, err)
	}
	defer sink.Abort()
	rcpts, err := copyMessage(r.Stdin, sink, r.opts.DotEnds, r.opts.Extract, r.cfg.Int("header_size_limit"))
	var re *readError
	switch {
	case errors.Is(err, errHeaderTooLong):
		return fatalf(ExDataErr, "%s: unable to extract recipients: %v", who, err)
	case errors.As(err, &re):
		return fatalf(ExDataErr, "%s: %v", who, err)
	case err != nil:
		return refusalError(who, err)
	}
	for _, a := range rcpts {
		if err := sink.AddRecipient(queue.Recipient{Addr: a, Notify: r.opts.Notify}); err != nil {
			return refusalError(who, err)
		}
	}
	if len(s.Recipients)+len(rcpts) == 0 {
		return fatalf(ExUsage, "%s: No recipient addresses found in message header", who)
	}
	id, err := sink.Commit()
	if err != nil {
		return refusalError(who, err)
	}
	if r.opts.Verbose > 1 {
		fmt.Fprintf(r.Stderr, "%s: queued as %s\n", r.prog, id)
	}
	return nil
}

// daemon is -bd/-bl: start the mail system, as Postfix runs "postfix start".
func (r *run) daemon() error {
	path := filepath.Join(r.cfg.Get("command_directory"), "postern")
	cmd := exec.Command(path, "-c", r.dir, "start")
	cmd.Stdout, cmd.Stderr = r.Stdout, r.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &Error{Code: ee.ExitCode(), Msg: fmt.Sprintf("%s start: %v", path, err)}
		}
		return fatalf(ExOSErr, "%s: %v", path, err)
	}
	return nil
}

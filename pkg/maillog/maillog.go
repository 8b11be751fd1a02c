// Package maillog writes Postern's log in Postfix's shape, so that tools
// tuned for Postfix logs (pflogsumm, fail2ban's postfix filter, logwatch,
// postfix_exporter) read it unchanged.
//
// Every line is one event of one process, tagged "syslog_name/program[pid]"
// ("postern/smtpd[4711]", or "postfix/smtpd[4711]" with syslog_name =
// postfix); the text starts with the queue ID ("NOQUEUE" before one
// exists), then key=value fields joined by ", ", then free text in
// parentheses. Each mail event has one method here (Connect, Queued,
// Delivered, ...) that builds Postfix's exact text, so the vocabulary
// exists once; daemons never format those lines themselves. Printf,
// Warning, Error, Fatal and Panic log free text with Postfix's severity
// prefixes ("warning: ", "error: ", "fatal: ", "panic: "); Debug logs only
// with Options.Verbose (Postfix's -v), at info priority as Postfix does.
//
// Text is made safe as Postfix's printable() does: control characters and
// invalid UTF-8 become '?', so a client cannot forge a log line; a text
// over MaxText bytes is cut.
//
// # Destinations
//
// With Options.File empty, lines go to syslog over the unixgram socket
// /dev/log in RFC 3164 framing, "<PRI>Mmm dd hh:mm:ss TAG[pid]: text", at
// Options.Facility (syslog_facility, default "mail") and Postfix's
// priorities: info for events, warning, err, and crit for fatal and panic.
// If /dev/log cannot be reached, lines go to standard error in the file
// format below, after a one-time notice saying so, and the socket is tried
// again every 10 seconds; a syslogd restart is followed by a reconnect.
//
// With Options.File set (maillog_file), lines are appended to that file in
// the format Postfix's postlogd writes: "Mmm dd hh:mm:ss host
// TAG[pid]: text", local time, host the first label of Options.Hostname.
// The file is opened with O_APPEND (mode 0600, as maillog_file_permissions'
// default) and each line is one write(2) of at most a few kilobytes, so
// lines of concurrent processes appending to one file never interleave.
// "/dev/stdout" and "/dev/stderr" write to the process's own stream. As in
// Postfix, File must start with one of Options.FilePrefixes
// (maillog_file_prefixes; nil means Postfix's default "/var, /dev/stdout").
//
// A Logger is safe for concurrent use. Write errors are not reported: a
// daemon cannot log that it cannot log.
package maillog

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxText is the longest text of one line, in bytes, as Postfix's
// MSG_SYSLOG_RECLEN.
const MaxText = 2000

// syslogRetry is how long lines go to stderr after a failed connect to
// the syslog socket before the next attempt.
const syslogRetry = 10 * time.Second

// DefaultFilePrefixes is Postfix's default maillog_file_prefixes.
var DefaultFilePrefixes = []string{"/var", "/dev/stdout"}

// Options configures a Logger. The zero value logs to syslog as
// "postern/<program name>" at facility mail.
type Options struct {
	SyslogName   string   // syslog_name; default "postern"
	Program      string   // daemon name after the slash; default the base name of os.Args[0]
	Facility     string   // syslog_facility; default "mail"
	File         string   // maillog_file; "" = syslog
	FilePrefixes []string // maillog_file_prefixes; nil = DefaultFilePrefixes
	Hostname     string   // myhostname, for the file format; default os.Hostname()
	Verbose      bool     // log Debug lines
	// ClientPortLogging appends ":port" to client name[addr], as Postfix's
	// smtpd_client_port_logging.
	ClientPortLogging bool
	Now               func() time.Time // clock; default time.Now
	// SyslogPath is the syslog socket; default "/dev/log".
	SyslogPath string
}

type severity int

const (
	sevInfo severity = iota
	sevWarning
	sevError
	sevFatal
	sevPanic
)

var sevPrefix = [...]string{"", "warning: ", "error: ", "fatal: ", "panic: "}

// syslog priorities (RFC 5424 §6.2.1), Postfix's mapping in msg_syslog.
var sevPriority = [...]int{6 /* info */, 4 /* warning */, 3 /* err */, 2 /* crit */, 2 /* crit */}

var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5,
	"lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// Logger writes Postfix-shaped lines to one destination.
type Logger struct {
	tag      string // "syslog_name/program"
	pid      int
	host     string // first label of the host name
	facility int
	verbose  bool
	portLog  bool
	now      func() time.Time

	mu       sync.Mutex
	buf      []byte
	file     io.Writer // file destination, or stderr fallback; nil = syslog
	closer   io.Closer // what Close closes, if anything
	sysPath  string
	sys      net.Conn  // syslog socket, nil when not connected
	fellBack bool      // the stderr fallback notice was written
	retryAt  time.Time // no syslog connect attempt before this
}

// New returns a Logger for o. It fails on an unknown facility, a File
// outside FilePrefixes, or a File that cannot be opened; an unreachable
// syslog is not an error (see the package doc).
func New(o Options) (*Logger, error) {
	if o.SyslogName == "" {
		o.SyslogName = "postern"
	}
	if o.Program == "" {
		o.Program = filepath.Base(os.Args[0])
	}
	if o.Facility == "" {
		o.Facility = "mail"
	}
	fac, ok := facilities[strings.ToLower(o.Facility)]
	if !ok {
		return nil, fmt.Errorf("maillog: unknown syslog_facility %q", o.Facility)
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
		if o.Hostname == "" {
			o.Hostname = "amnesiac"
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SyslogPath == "" {
		o.SyslogPath = "/dev/log"
	}
	host, _, _ := strings.Cut(o.Hostname, ".")
	l := &Logger{
		tag:      o.SyslogName + "/" + o.Program,
		pid:      os.Getpid(),
		host:     host,
		facility: fac,
		verbose:  o.Verbose,
		portLog:  o.ClientPortLogging,
		now:      o.Now,
		sysPath:  o.SyslogPath,
	}
	if o.File == "" {
		// Failure here is handled per line: the first line falls back to
		// stderr with a notice, and /dev/log is tried again every
		// syslogRetry, so logging resumes when syslogd comes back.
		if c, err := net.Dial("unixgram", l.sysPath); err == nil {
			l.sys = c
		}
		return l, nil
	}
	prefixes := o.FilePrefixes
	if prefixes == nil {
		prefixes = DefaultFilePrefixes
	}
	allowed := false
	for _, p := range prefixes {
		if p != "" && strings.HasPrefix(o.File, p) {
			allowed = true
			break
		}
	}
	if !allowed {
		return nil, fmt.Errorf("maillog: maillog_file value %q does not match any prefix in maillog_file_prefixes (%s)",
			o.File, strings.Join(prefixes, ", "))
	}
	switch o.File {
	case "/dev/stdout":
		l.file = os.Stdout
	case "/dev/stderr":
		l.file = os.Stderr
	default:
		f, err := os.OpenFile(o.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("maillog: open maillog_file: %w", err)
		}
		l.file, l.closer = f, f
	}
	return l, nil
}

// Close releases the destination. Lines logged after Close are lost.
func (l *Logger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if l.sys != nil {
		err = l.sys.Close()
		l.sys = nil
	}
	if l.closer != nil {
		err = errors.Join(err, l.closer.Close())
		l.closer = nil
	}
	l.file = io.Discard
	return err
}

// Printf logs an informational line.
func (l *Logger) Printf(format string, args ...any) { l.logf(sevInfo, format, args...) }

// Warning logs "warning: ...": something is wrong, work goes on.
func (l *Logger) Warning(format string, args ...any) { l.logf(sevWarning, format, args...) }

// Error logs "error: ...".
func (l *Logger) Error(format string, args ...any) { l.logf(sevError, format, args...) }

// Fatal logs "fatal: ...". It does not exit: the caller does.
func (l *Logger) Fatal(format string, args ...any) { l.logf(sevFatal, format, args...) }

// Panic logs "panic: ...": a broken invariant. It does not panic.
func (l *Logger) Panic(format string, args ...any) { l.logf(sevPanic, format, args...) }

// Debug logs an informational line only when Options.Verbose is set.
func (l *Logger) Debug(format string, args ...any) {
	if l.verbose {
		l.logf(sevInfo, format, args...)
	}
}

// Verbose reports whether Debug lines are logged.
func (l *Logger) Verbose() bool { return l.verbose }

func (l *Logger) logf(sev severity, format string, args ...any) {
	if len(args) == 0 {
		l.log(sev, format)
		return
	}
	l.log(sev, fmt.Sprintf(format, args...))
}

// log writes one line: the severity prefix and text, made printable and
// cut to MaxText, framed for the destination.
func (l *Logger) log(sev severity, text string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.file
	if w == nil {
		if l.writeSyslog(sev, now, text) {
			return
		}
		w = os.Stderr
		l.fallBackNotice(now)
	}
	w.Write(l.fileLine(now, sev, text))
}

// fileLine formats a line as postlogd writes it to maillog_file.
func (l *Logger) fileLine(now time.Time, sev severity, text string) []byte {
	b := l.buf[:0]
	b = now.AppendFormat(b, "Jan 02 15:04:05 ")
	b = append(b, l.host...)
	b = append(b, ' ')
	b = l.appendTagText(b, sev, text)
	b = append(b, '\n')
	l.buf = b
	return b
}

// writeSyslog sends one datagram to syslog, reconnecting once if the
// socket went away (syslogd restarted). It reports success.
func (l *Logger) writeSyslog(sev severity, now time.Time, text string) bool {
	b := l.buf[:0]
	b = append(b, '<')
	b = appendInt(b, l.facility*8+sevPriority[sev])
	b = append(b, '>')
	b = now.AppendFormat(b, time.Stamp+" ")
	b = l.appendTagText(b, sev, text)
	l.buf = b
	for try := 0; try < 2; try++ {
		if l.sys == nil {
			if time.Now().Before(l.retryAt) {
				return false
			}
			c, err := net.Dial("unixgram", l.sysPath)
			if err != nil {
				// Without syslogd (a container), don't pay a failed
				// connect for every line.
				l.retryAt = time.Now().Add(syslogRetry)
				return false
			}
			l.sys = c
		}
		if _, err := l.sys.Write(b); err == nil {
			return true
		}
		l.sys.Close()
		l.sys = nil
	}
	return false
}

// fallBackNotice says once, on stderr, that syslog is unreachable and
// lines go to stderr instead.
func (l *Logger) fallBackNotice(now time.Time) {
	if l.fellBack {
		return
	}
	l.fellBack = true
	os.Stderr.Write(l.fileLine(now, sevWarning,
		"cannot log to syslog socket "+l.sysPath+": logging to standard error until it is back"))
}

// appendTagText appends "tag[pid]: prefix text" with text sanitised.
func (l *Logger) appendTagText(b []byte, sev severity, text string) []byte {
	b = append(b, l.tag...)
	b = append(b, '[')
	b = appendInt(b, l.pid)
	b = append(b, "]: "...)
	b = append(b, sevPrefix[sev]...)
	return appendPrintable(b, text, MaxText)
}

// appendPrintable appends at most max bytes of s, replacing control
// characters and invalid UTF-8 with '?', and never cutting a character.
func appendPrintable(b []byte, s string, max int) []byte {
	n := 0
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		if n+size > max {
			break
		}
		switch {
		case r == utf8.RuneError && size == 1, r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			b = append(b, '?')
		default:
			b = append(b, s[:size]...)
		}
		n += size
		s = s[size:]
	}
	return b
}

func appendInt(b []byte, n int) []byte { return strconv.AppendInt(b, int64(n), 10) }

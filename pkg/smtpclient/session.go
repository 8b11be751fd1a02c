// One connection to an SMTP or LMTP server: dial, greeting, EHLO/LHLO,
// STARTTLS, AUTH, mail transactions, QUIT.

package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// timeouts are Postfix's per-stage limits (smtp_*_timeout).
type timeouts struct {
	connect, helo, starttls, mail, rcpt, dataInit, dataXfer, dataDone, rset, quit time.Duration
}

// target is one server to try.
type target struct {
	name string     // host name (MX name, nexthop host, or myhostname for a socket)
	addr netip.Addr // TCP address, or invalid for a socket
	port int
	path string // unix socket path
}

// hostAddr is "name[addr]" as Postfix puts it in texts.
func (t target) hostAddr() string {
	if t.path != "" {
		return t.name + "[" + t.path + "]"
	}
	return t.name + "[" + t.addr.String() + "]"
}

// relay is the relay= of log lines: "name[addr]:port", "name[path]".
func (t target) relay() string {
	if t.path != "" {
		return t.hostAddr()
	}
	return t.hostAddr() + ":" + strconv.Itoa(t.port)
}

// failure is why a delivery attempt did not work, as Postfix words it.
type failure struct {
	dsn  string // enhanced status code
	text string
	// next says another server might do better: connection-level trouble
	// (refused, timed out, lost, 4xx greeting or EHLO, TLS or AUTH
	// failure), as opposed to a reply about this message.
	next bool
	// plain asks to try the same server again without TLS (an
	// opportunistic TLS handshake that failed).
	plain bool
	// connect marks a failure to connect at all, which Postfix logs
	// without a queue ID when it moves on to the next server.
	connect bool
	// reply marks a 4xx reply about the message (to MAIL FROM, RCPT TO,
	// DATA or the end of data) from a server that was not the last to
	// try: its recipients were kept for the next server. It is not the
	// destination's failure (deliver.Result.Site).
	reply bool
	// mta and diag are the server's host name and its reply as a
	// Diagnostic-Code ("smtp; 550 5.1.1 ..."), when a reply caused the
	// failure.
	mta, diag string
}

func (f *failure) bounce() bool { return strings.HasPrefix(f.dsn, "5") }

// session is one open connection. It belongs to one goroutine at a time.
type session struct {
	t      *timeouts
	tg     target
	conn   net.Conn
	dc     *deadlineConn
	br     *bufio.Reader
	bw     *bufio.Writer
	lmtp   bool
	ext    map[string]string // EHLO keywords
	tls    bool
	uses   int       // transactions carried so far
	born   time.Time // connection time, for smtp_connection_reuse_time_limit
	idle   time.Time // when it went into the cache
	key    string    // cache key
	broken bool      // not reusable
}

// deadlineConn sets a fresh write deadline before every write, so that a
// stage's limit applies to each write as Postfix's timeouts do, not to
// the whole transfer.
type deadlineConn struct {
	net.Conn
	wto time.Duration
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	if d.wto > 0 {
		d.Conn.SetWriteDeadline(time.Now().Add(d.wto))
	}
	return d.Conn.Write(p)
}

// dialOptions says how to open a session.
type dialOptions struct {
	helo     string
	lmtp     bool
	bind4    string // smtp_bind_address
	bind6    string // smtp_bind_address6
	tls      *tlsPolicy
	noEHLO   bool // smtp_never_send_ehlo
	skip5xx  bool // smtp_skip_5xx_greeting
	noTLS    bool // retry of an opportunistic session in plaintext
	auth     func(s *session) *failure
	bufSize  int
	lookupMX string // name the TLS "secure" level matches (nexthop domain)
}

// dial connects to tg and completes the greeting, EHLO/LHLO, STARTTLS and
// AUTH. On failure the connection is closed.
func dial(ctx context.Context, tg target, t *timeouts, o *dialOptions) (*session, *failure) {
	d := net.Dialer{Timeout: t.connect}
	network, address := "tcp", ""
	if tg.path != "" {
		network, address = "unix", tg.path
	} else {
		address = net.JoinHostPort(tg.addr.String(), strconv.Itoa(tg.port))
		bind := o.bind4
		if tg.addr.Is6() {
			bind = o.bind6
		}
		if bind != "" {
			ip := net.ParseIP(bind)
			if ip == nil {
				return nil, &failure{dsn: "4.3.5", text: "bad smtp_bind_address " + bind, next: false}
			}
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
	}
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		what := tg.relay()
		if tg.path != "" {
			what = tg.path
		}
		return nil, &failure{dsn: "4.4.1", text: "connect to " + what + ": " + errnoText(err), next: true, connect: true}
	}
	s := &session{t: t, tg: tg, lmtp: o.lmtp, born: time.Now()}
	s.attach(conn, o.bufSize)
	if f := s.open(o); f != nil {
		s.conn.Close()
		return nil, f
	}
	return s, nil
}

func (s *session) attach(conn net.Conn, size int) {
	s.conn = conn
	s.dc = &deadlineConn{Conn: conn}
	s.br = bufio.NewReaderSize(conn, 4096)
	s.bw = bufio.NewWriterSize(s.dc, size)
}

// open runs the session setup on a fresh connection.
func (s *session) open(o *dialOptions) *failure {
	tp := o.tls
	if tp != nil && tp.wrapper && !o.noTLS {
		if f := s.handshake(tp, o.lookupMX); f != nil {
			return f
		}
	}
	r, err := s.read(s.t.helo)
	if err != nil {
		return s.ioFailure(err, "receiving the initial server greeting")
	}
	if r.Class() != 2 {
		f := &failure{dsn: r.Enhanced(), text: "host " + s.tg.hostAddr() + " refused to talk to me: " + r.Text(), next: true,
			mta: s.tg.name, diag: diagnostic(r)}
		if r.Class() == 5 && !o.skip5xx {
			f.next = false
		}
		if r.Class() == 5 && o.skip5xx {
			f.dsn = "4" + f.dsn[1:]
		}
		return f
	}
	if f := s.hello(o); f != nil {
		return f
	}
	if tp != nil && !s.tls && !o.noTLS && tp.level != levelNone {
		_, offered := s.ext["STARTTLS"]
		switch {
		case offered:
			r, err := s.cmd(s.t.helo, "STARTTLS")
			if err != nil {
				return s.ioFailure(err, "sending STARTTLS")
			}
			if r.Class() != 2 {
				if tp.mandatory() {
					return &failure{dsn: "4.7.4", text: "TLS is required, but host " + s.tg.hostAddr() + " refused to start TLS: " + r.Text(), next: true}
				}
				break
			}
			if f := s.handshake(tp, o.lookupMX); f != nil {
				return f
			}
			if f := s.hello(o); f != nil {
				return f
			}
		case tp.mandatory():
			return &failure{dsn: "4.7.4", text: "TLS is required, but was not offered by host " + s.tg.hostAddr(), next: true}
		}
	}
	if o.auth != nil {
		if f := o.auth(s); f != nil {
			return f
		}
	}
	return nil
}

// hello sends EHLO (or LHLO), falling back to HELO for SMTP servers that
// reject EHLO.
func (s *session) hello(o *dialOptions) *failure {
	verb := "EHLO"
	if s.lmtp {
		verb = "LHLO"
	} else if o.noEHLO {
		verb = "HELO"
	}
	r, err := s.cmd(s.t.helo, verb+" "+o.helo)
	if err != nil {
		return s.ioFailure(err, "performing the "+verb+" handshake")
	}
	if r.Class() == 5 && verb == "EHLO" {
		verb = "HELO"
		r, err = s.cmd(s.t.helo, verb+" "+o.helo)
		if err != nil {
			return s.ioFailure(err, "performing the HELO handshake")
		}
	}
	if r.Class() != 2 {
		return &failure{dsn: r.Enhanced(), text: s.said(r, verb), next: true, mta: s.tg.name, diag: diagnostic(r)}
	}
	if verb == "HELO" {
		s.ext = map[string]string{}
	} else {
		s.ext = parseEHLO(r)
	}
	return nil
}

// handshake starts TLS on the connection.
func (s *session) handshake(tp *tlsPolicy, nexthop string) *failure {
	tc := tls.Client(s.conn, tp.config(s.tg.name, nexthop))
	tc.SetDeadline(time.Now().Add(s.t.starttls))
	err := tc.Handshake()
	tc.SetDeadline(time.Time{})
	if err != nil {
		if tp.mandatory() {
			dsn, text := "4.7.5", "Cannot start TLS: handshake failure with "+s.tg.hostAddr()
			var ve *verifyError
			if errors.As(err, &ve) {
				text = "Server certificate not verified: " + ve.Error() + " (host " + s.tg.hostAddr() + ")"
			}
			return &failure{dsn: dsn, text: text, next: true}
		}
		return &failure{dsn: "4.7.5", text: "Cannot start TLS: handshake failure with " + s.tg.hostAddr(), next: true, plain: true}
	}
	s.tls = true
	s.attach(tc, s.bw.Size())
	return nil
}

// diagnostic is r as an RFC 3464 Diagnostic-Code value: "smtp; 550 5.1.1
// text" (Postfix's DSB_DTYPE_SMTP, for LMTP too).
func diagnostic(r Reply) string { return "smtp; " + r.Text() }

// said formats a server's reply as Postfix's "host X[a] said: ... (in
// reply to CMD command)".
func (s *session) said(r Reply, cmd string) string {
	return "host " + s.tg.hostAddr() + " said: " + r.Text() + " (in reply to " + cmd + " command)"
}

// ioFailure words a read or write error during stage.
func (s *session) ioFailure(err error, stage string) *failure {
	s.broken = true
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &failure{dsn: "4.4.2", text: "conversation with " + s.tg.hostAddr() + " timed out while " + stage, next: true}
	}
	if errors.Is(err, errMalformed) {
		return &failure{dsn: "4.4.2", text: "host " + s.tg.hostAddr() + " sent a malformed reply while " + stage, next: true}
	}
	return &failure{dsn: "4.4.2", text: "lost connection with " + s.tg.hostAddr() + " while " + stage, next: true}
}

// read reads one reply within timeout.
func (s *session) read(timeout time.Duration) (Reply, error) {
	if timeout > 0 {
		s.conn.SetReadDeadline(time.Now().Add(timeout))
	} else {
		s.conn.SetReadDeadline(time.Time{})
	}
	return readReply(s.br)
}

// send buffers one command line.
func (s *session) send(line string) {
	s.bw.WriteString(line)
	s.bw.WriteString("\r\n")
}

func (s *session) flush(timeout time.Duration) error {
	s.dc.wto = timeout
	return s.bw.Flush()
}

// cmd sends one command and reads its reply.
func (s *session) cmd(timeout time.Duration, line string) (Reply, error) {
	s.send(line)
	if err := s.flush(timeout); err != nil {
		return Reply{}, err
	}
	return s.read(timeout)
}

// quit ends the session politely, with a short bound, and closes it.
func (s *session) quit() {
	if !s.broken {
		s.conn.SetDeadline(time.Now().Add(min(s.t.quit, 5*time.Second)))
		if _, err := s.cmd(s.t.quit, "QUIT"); err != nil {
			s.broken = true
		}
	}
	s.conn.Close()
}

// errnoText words a dial error as Postfix does: "Connection refused",
// "Connection timed out", ...
func errnoText(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "Connection timed out"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		t := en.Error()
		return strings.ToUpper(t[:1]) + t[1:]
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	return err.Error()
}

// mailParams are the ESMTP parameters of one transaction.
type mailParams struct {
	sender   string
	size     int64
	body8    bool // BODY=8BITMIME is wanted
	smtputf8 bool
	ret      string
	envid    string
}

// rcptState is one recipient of a transaction and its outcome.
type rcptState struct {
	addr, notify, orcpt string
	done                bool // has a final result for this attempt
	res                 outcome
	accepted            bool
}

// outcome is a recipient's result.
type outcome struct {
	status string // "sent", "deferred", "bounced"
	dsn    string
	text   string
	relay  string // the server that decided it ("name[addr]:port"); "" for the attempt's last
	mta    string // the server's host name, when its reply decided (Remote-MTA)
	diag   string // that reply as a Diagnostic-Code value
}

func replyOutcome(s *session, r Reply, cmd string) outcome {
	st := "deferred"
	if r.Class() == 5 {
		st = "bounced"
	}
	return outcome{status: st, dsn: r.Enhanced(), text: s.said(r, cmd), relay: s.tg.relay(), mta: s.tg.name, diag: diagnostic(r)}
}

// txOptions says how one transaction treats soft errors.
type txOptions struct {
	// final says no server is left to try after this one: a 4xx reply
	// defers the recipients it concerns. Otherwise they are kept for
	// the next server, as Postfix's smtp_trouble.c does for a non-final
	// server, and skip logs the reply.
	final bool
	skip  func(text string)
}

// softKeep applies r, a reply to cmd concerning recipients rcs, when it
// is a 4xx reply from a non-final server: the recipients stay without a
// result for the next server, the reply is logged, and the failure that
// defers them if no server takes them is returned. It returns nil (and
// does nothing) otherwise.
func (s *session) softKeep(o *txOptions, r Reply, cmd string) *failure {
	if o.final || r.Class() != 4 {
		return nil
	}
	f := &failure{dsn: r.Enhanced(), text: s.said(r, cmd), next: true, reply: true, mta: s.tg.name, diag: diagnostic(r)}
	if o.skip != nil {
		o.skip(f.text)
	}
	return f
}

// transact runs one mail transaction for the recipients not yet done.
// Each recipient that gets a final answer from the server is marked done.
// The failure returned is session-level (I/O trouble); started says
// whether message content was already being sent, after which another
// server must not be tried. soft is set when recipients were kept for
// the next server (txOptions.final unset): the last such reply.
func (s *session) transact(mp *mailParams, rcpts []*rcptState, reused bool, content func(w io.Writer) error, o *txOptions) (f *failure, started bool, soft *failure) {
	pipelining := s.ext != nil
	if _, ok := s.ext["PIPELINING"]; !ok {
		pipelining = false
	}
	type step struct {
		kind byte // 'R' RSET, 'M' MAIL, 'T' RCPT, 'D' DATA
		rc   *rcptState
	}
	var steps []step
	if reused {
		steps = append(steps, step{kind: 'R'})
	}
	steps = append(steps, step{kind: 'M'})
	for _, r := range rcpts {
		if !r.done {
			steps = append(steps, step{kind: 'T', rc: r})
		}
	}
	steps = append(steps, step{kind: 'D'})

	line := func(st step) string {
		switch st.kind {
		case 'R':
			return "RSET"
		case 'M':
			var b strings.Builder
			b.WriteString("MAIL FROM:<" + mp.sender + ">")
			if _, ok := s.ext["SIZE"]; ok && mp.size > 0 {
				b.WriteString(" SIZE=" + strconv.FormatInt(mp.size, 10))
			}
			if _, ok := s.ext["8BITMIME"]; ok && mp.body8 {
				b.WriteString(" BODY=8BITMIME")
			}
			if _, ok := s.ext["SMTPUTF8"]; ok && mp.smtputf8 {
				b.WriteString(" SMTPUTF8")
			}
			if _, ok := s.ext["DSN"]; ok {
				if mp.ret != "" {
					b.WriteString(" RET=" + mp.ret)
				}
				if mp.envid != "" {
					b.WriteString(" ENVID=" + xtext(mp.envid))
				}
			}
			return b.String()
		case 'T':
			var b strings.Builder
			b.WriteString("RCPT TO:<" + st.rc.addr + ">")
			if _, ok := s.ext["DSN"]; ok {
				if st.rc.notify != "" {
					b.WriteString(" NOTIFY=" + st.rc.notify)
				}
				if typ, addr, ok := strings.Cut(st.rc.orcpt, ";"); ok && addr != "" {
					b.WriteString(" ORCPT=" + typ + ";" + xtext(addr))
				}
			}
			return b.String()
		}
		return "DATA"
	}
	timeout := func(st step) time.Duration {
		switch st.kind {
		case 'R':
			return s.t.rset
		case 'M':
			return s.t.mail
		case 'T':
			return s.t.rcpt
		}
		return s.t.dataInit
	}
	stage := map[byte]string{'R': "sending RSET", 'M': "sending MAIL FROM", 'T': "sending RCPT TO", 'D': "sending DATA command"}

	for _, r := range rcpts {
		r.accepted = false
	}
	s.uses++
	mailOK := false
	accepted := 0
	var dataReply Reply
	dataRead := false
	if pipelining {
		for _, st := range steps {
			s.send(line(st))
		}
		if err := s.flush(s.t.mail); err != nil {
			return s.ioFailure(err, "sending MAIL FROM"), false, nil
		}
	}
	for i, st := range steps {
		if !pipelining {
			// Without PIPELINING, stop as soon as the rest is pointless.
			if st.kind == 'T' && !mailOK {
				break
			}
			if st.kind == 'D' && (!mailOK || accepted == 0) {
				break
			}
			s.send(line(st))
			if err := s.flush(timeout(st)); err != nil {
				return s.ioFailure(err, stage[st.kind]), false, nil
			}
		}
		r, err := s.read(timeout(st))
		if err != nil {
			return s.ioFailure(err, stage[st.kind]), false, nil
		}
		switch st.kind {
		case 'R':
			if r.Class() != 2 {
				s.broken = true
				return &failure{dsn: r.Enhanced(), text: s.said(r, "RSET"), next: true}, false, nil
			}
		case 'M':
			mailOK = r.Class() == 2
			if !mailOK {
				if k := s.softKeep(o, r, "MAIL FROM"); k != nil {
					soft = k
					continue
				}
				for _, rc := range rcpts {
					if !rc.done {
						rc.done, rc.res = true, replyOutcome(s, r, "MAIL FROM")
					}
				}
			}
		case 'T':
			if !mailOK {
				continue
			}
			if r.Class() == 2 {
				st.rc.accepted = true
				accepted++
			} else if k := s.softKeep(o, r, "RCPT TO"); k != nil {
				soft = k
			} else {
				st.rc.done, st.rc.res = true, replyOutcome(s, r, "RCPT TO")
			}
		case 'D':
			dataReply, dataRead = r, true
		}
		_ = i
	}
	if !dataRead || dataReply.Code != 354 || !mailOK || accepted == 0 {
		if dataRead && dataReply.Code == 354 {
			// A pipelined DATA the server accepted although nothing
			// else was: end the empty transaction at once.
			s.send(".")
			if err := s.flush(s.t.dataDone); err != nil {
				return s.ioFailure(err, "sending end of data"), false, nil
			}
			if _, err := s.read(s.t.dataDone); err != nil {
				return s.ioFailure(err, "sending end of data"), false, nil
			}
		}
		if dataRead && dataReply.Code != 354 && mailOK && accepted > 0 {
			if k := s.softKeep(o, dataReply, "DATA"); k != nil {
				soft = k
				for _, rc := range rcpts {
					rc.accepted = false
				}
			}
			for _, rc := range rcpts {
				if rc.accepted && !rc.done {
					rc.done, rc.res = true, replyOutcome(s, dataReply, "DATA")
				}
			}
		}
		if mailOK && (!dataRead || dataReply.Code == 354) {
			// The transaction is open on the server: reset it so that
			// the session can carry the next message.
			r, err := s.cmd(s.t.rset, "RSET")
			if err != nil || r.Class() != 2 {
				s.broken = true
			}
		}
		return nil, false, soft
	}

	dw := newDotWriter(s.bw)
	s.dc.wto = s.t.dataXfer
	err := content(dw)
	if err == nil {
		err = dw.Close()
	}
	if err == nil {
		err = s.flush(s.t.dataXfer)
	}
	if err != nil {
		var ce *contentError
		if errors.As(err, &ce) {
			// The queue file could not be read: the connection is
			// mid-message and cannot be saved.
			s.broken = true
			for _, rc := range rcpts {
				if rc.accepted && !rc.done {
					rc.done, rc.res = true, outcome{status: "deferred", dsn: "4.3.0", text: "error reading queue file: " + ce.err.Error()}
				}
			}
			return nil, true, soft
		}
		return s.ioFailure(err, "sending message body"), true, nil
	}
	for _, rc := range rcpts {
		if !rc.accepted || rc.done {
			continue
		}
		r, err := s.read(s.t.dataDone)
		if err != nil {
			return s.ioFailure(err, "sending end of data -- message may be sent more than once"), true, nil
		}
		out := replyOutcome(s, r, "end of DATA")
		if r.Class() == 2 {
			out = outcome{status: "sent", dsn: r.Enhanced(), text: r.Text(), relay: s.tg.relay(), mta: s.tg.name, diag: diagnostic(r)}
		} else if k := s.softKeep(o, r, "end of DATA"); k != nil {
			// Not taken: the recipients stay for the next server.
			soft = k
			if !s.lmtp {
				break
			}
			continue
		}
		if !s.lmtp {
			// One reply for every accepted recipient (RFC 5321); LMTP
			// gives one per recipient (RFC 2033 §4.2).
			for _, rc2 := range rcpts {
				if rc2.accepted && !rc2.done {
					rc2.done, rc2.res = true, out
				}
			}
			break
		}
		rc.done, rc.res = true, out
	}
	return nil, true, soft
}

// contentError marks a failure to read the message, not to write it.
type contentError struct{ err error }

func (e *contentError) Error() string { return e.err.Error() }

// xtext encodes s as RFC 3461 §4 xtext.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

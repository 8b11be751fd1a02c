package itest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// lmtpSink is an LMTP server (go-smtp in LMTP mode) on a free loopback
// port that keeps what it receives. Recipients whose local part starts
// with "reject" get 550, "later" 452.
type lmtpSink struct {
	addr  string
	relay string // as the lmtp agent logs it: 127.0.0.1[127.0.0.1]:port
	mu    sync.Mutex
	msgs  []lmtpMsg
}

type lmtpMsg struct {
	from string
	to   []string
	data string
}

type lmtpSession struct {
	s   *lmtpSink
	cur lmtpMsg
}

func (s *lmtpSession) Reset()        { s.cur = lmtpMsg{} }
func (s *lmtpSession) Logout() error { return nil }
func (s *lmtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur.from = from
	return nil
}

func (s *lmtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "reject"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox here"}
	case strings.HasPrefix(to, "later"):
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox busy"}
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *lmtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(b)
	s.s.mu.Lock()
	s.s.msgs = append(s.s.msgs, s.cur)
	s.s.mu.Unlock()
	return nil
}

func startLMTPSink(t *testing.T) *lmtpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return serveLMTPSink(t, ln, &lmtpSink{addr: ln.Addr().String(), relay: fmt.Sprintf("127.0.0.1[127.0.0.1]:%d", port)})
}

func serveLMTPSink(t *testing.T, ln net.Listener, sink *lmtpSink) *lmtpSink {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &lmtpSession{s: sink}, nil
	}))
	srv.LMTP = true
	srv.Domain = "lmtp.itest.test"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("LMTP server did not stop")
		}
	})
	return sink
}

// wait returns the first message for rcpt, failing after timeout.
func (s *lmtpSink) wait(t *testing.T, in *Instance, rcpt string, timeout time.Duration) lmtpMsg {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		for _, m := range s.msgs {
			for _, to := range m.to {
				if to == rcpt {
					s.mu.Unlock()
					return m
				}
			}
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("LMTP server got nothing for %s after %v\n%s", rcpt, timeout, in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *lmtpSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// localTransportInstance is an instance whose local domain is
// localDomain with no aliases and local_recipient_maps empty (so smtpd
// accepts names without accounts), an lmtp service, and extra main.cf.
// It runs unprivileged: none of its recipients has an account, except
// the test's own user where a test says so.
func localTransportInstance(t *testing.T, extra string) *Instance {
	t.Helper()
	return NewInstance(t, Options{
		MasterCf: "lmtp      unix  -       -       n       -       -       lmtp",
		MainCf: fmt.Sprintf(`mydestination = %s
alias_maps =
local_recipient_maps =
forward_path =
recipient_delimiter = +
%s`, localDomain, extra),
	})
}

// mailbox_transport = lmtp:inet:host:port: local passes each local
// recipient to the lmtp agent (Postfix's usual Dovecot setup). The lmtp
// agent logs the delivery; its refusals reach qmgr as the recipient's own
// result (a bounce to the sender, a deferral that stays queued).
func TestLocalMailboxTransport(t *testing.T) {
	sink := startLMTPSink(t)
	in := localTransportInstance(t, "mailbox_transport = lmtp:inet:"+sink.addr+"\n")
	to := "nobody-here+box@" + localDomain
	text, err := send(t, in.Addr, "user@itest.test", []string{to}, "Subject: via lmtp\r\n\r\nhanded over\r\n")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	m := sink.wait(t, in, to, 15*time.Second)
	if m.from != "user@itest.test" || !strings.Contains(m.data, "Subject: via lmtp\r\n") || !strings.HasSuffix(m.data, "\r\n\r\nhanded over\r\n") {
		t.Errorf("LMTP got from=%s data:\n%s", m.from, m.data)
	}
	line := id + ": to=<" + to + ">, relay=" + sink.relay
	if !in.WaitLog(line, 10*time.Second) || !in.WaitLog(id+": removed", 10*time.Second) {
		t.Fatalf("no lmtp delivery line %q or removal\n%s", line, in.Log())
	}
	log := in.Log()
	if !strings.Contains(log, id+": passing <"+to+"> to transport=lmtp") {
		t.Errorf("no passing line\n%s", log)
	}
	// One delivery line: the lmtp agent's, none from local.
	if lines := grepLines(log, id+": to=<"+to+">"); strings.Count(lines, "\n") != 0 || !strings.Contains(lines, "status=sent (250 ") {
		t.Errorf("delivery lines:\n%s", lines)
	}

	// A 550 from the LMTP server bounces the recipient; the bounce
	// notice reaches the sender's virtual mailbox.
	bad := "reject-me@" + localDomain
	if _, err := send(t, in.Addr, "user@itest.test", []string{bad}, "Subject: refused\r\n\r\nno\r\n"); err != nil {
		t.Fatal(err)
	}
	if !in.WaitLog("to=<"+bad+">, relay="+sink.relay, 15*time.Second) {
		t.Fatalf("no lmtp line for %s\n%s", bad, in.Log())
	}
	notice := readFile(t, in.WaitMaildir("itest.test/user", 1, 15*time.Second)[0])
	if !strings.Contains(notice, "Final-Recipient: rfc822; "+bad+"\n") || !strings.Contains(notice, "said: 550 5.1.1 no such") {
		t.Errorf("bounce notice:\n%s", notice)
	}
	if lines := grepLines(in.Log(), "to=<"+bad+">"); !strings.Contains(lines, "dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 no such mailbox here") {
		t.Errorf("bounce lines:\n%s", lines)
	}

	// A 452 defers it: the message stays in the queue.
	later := "later@" + localDomain
	text, err = send(t, in.Addr, "user@itest.test", []string{later}, "Subject: later\r\n\r\nlater\r\n")
	if err != nil {
		t.Fatal(err)
	}
	lid := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	if !in.WaitLog(lid+": to=<"+later+">, relay="+sink.relay, 15*time.Second) {
		t.Fatalf("no lmtp line for %s\n%s", later, in.Log())
	}
	in.WaitQueueFiles("deferred", 1, 10*time.Second)
	if lines := grepLines(in.Log(), lid+": to=<"+later+">"); !strings.Contains(lines, "status=deferred") || strings.Contains(lines, "relay=local") {
		t.Errorf("deferral lines:\n%s", lines)
	}
}

// mailbox_transport_maps picks the transport per user; others keep
// mailbox_transport's. A table value with no next hop uses the one qmgr
// gave local (the recipient's domain), so this one is given.
func TestLocalMailboxTransportMaps(t *testing.T) {
	sink := startLMTPSink(t)
	other := startLMTPSink(t)
	in := localTransportInstance(t, fmt.Sprintf("mailbox_transport_maps = inline:{special=lmtp:inet:%s}\nmailbox_transport = lmtp:inet:%s\n", other.addr, sink.addr))
	if _, err := send(t, in.Addr, "user@itest.test", []string{"special+x@" + localDomain, "plain@" + localDomain}, "Subject: maps\r\n\r\nmaps\r\n"); err != nil {
		t.Fatal(err)
	}
	other.wait(t, in, "special+x@"+localDomain, 15*time.Second)
	sink.wait(t, in, "plain@"+localDomain, 15*time.Second)
	if other.count() != 1 || sink.count() != 1 {
		t.Errorf("messages: special server %d, default server %d", other.count(), sink.count())
	}
}

// fallback_transport takes recipients without an account; an account
// (the test's own user) still gets its mailbox, here through
// mailbox_command writing to a file.
func TestLocalFallbackTransport(t *testing.T) {
	sink := startLMTPSink(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// The command runs as the account, or as default_privs for root: it
	// writes into a directory anyone may write.
	dir, err := os.MkdirTemp("", "postern-fallback-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "cmd.out")
	in := localTransportInstance(t, fmt.Sprintf("fallback_transport = lmtp:inet:%s\nmailbox_command = cat > %s\nluser_relay = user@itest.test\n", sink.addr, out))
	if _, err := send(t, in.Addr, "user@itest.test", []string{"ghost@" + localDomain, me.Username + "@" + localDomain}, "Subject: fb\r\n\r\nfallback\r\n"); err != nil {
		t.Fatal(err)
	}
	sink.wait(t, in, "ghost@"+localDomain, 15*time.Second)
	if !in.WaitLog("to=<"+me.Username+"@"+localDomain+">, relay=local", 15*time.Second) {
		t.Fatalf("no local delivery for the account\n%s", in.Log())
	}
	waitFile(t, in, out, int64(len("fallback\n")), 10*time.Second)
	if got := readFile(t, out); !strings.Contains(got, "fallback\n") {
		t.Errorf("mailbox_command got:\n%s", got)
	}
	if sink.count() != 1 || countMaildir(in, "itest.test/user") != 0 {
		t.Errorf("LMTP messages %d (want 1), luser_relay copies %d (want 0: fallback_transport comes first)", sink.count(), countMaildir(in, "itest.test/user"))
	}
}

// luser_relay sends mail for unknown local names to an address built
// from them; the copy is re-injected like an alias or .forward address,
// with Delivered-To: naming the original recipient. A relay address that
// is the recipient itself bounces as an unknown user.
func TestLocalLuserRelay(t *testing.T) {
	in := localTransportInstance(t, "luser_relay = ${extension?{$extension}:{other}}@itest.test\n")
	for _, c := range []struct{ rcpt, box string }{
		{"stranger+user@" + localDomain, "itest.test/user"},
		{"stranger@" + localDomain, "itest.test/other"},
	} {
		text, err := send(t, in.Addr, "sender@example.org", []string{c.rcpt}, "Subject: luser\r\n\r\nfor "+c.rcpt+"\r\n")
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
		got := readFile(t, in.WaitMaildir(c.box, 1, 15*time.Second)[0])
		if !strings.Contains(got, "Delivered-To: "+c.rcpt+"\n") || !strings.Contains(got, "for "+c.rcpt+"\n") || !strings.Contains(got, "Return-Path: <sender@example.org>") {
			t.Errorf("%s: relayed copy:\n%s", c.rcpt, got)
		}
		if !in.WaitLog(id+": to=<"+c.rcpt+">, relay=local", 5*time.Second) || !strings.Contains(grepLines(in.Log(), id+": to=<"+c.rcpt+">"), "status=sent (forwarded as ") {
			t.Errorf("%s: log:\n%s", c.rcpt, in.Log())
		}
	}

	self := "nobody-here+loop@" + localDomain
	in2 := localTransportInstance(t, "luser_relay = $recipient\n")
	if _, err := send(t, in2.Addr, "sender@example.org", []string{self}, "Subject: self\r\n\r\nself\r\n"); err != nil {
		t.Fatal(err)
	}
	if !in2.WaitLog(`to=<`+self+`>, relay=local`, 15*time.Second) || !in2.WaitLog(`dsn=5.1.1, status=bounced (unknown user: "nobody-here")`, 5*time.Second) {
		t.Errorf("luser_relay naming the recipient:\n%s", in2.Log())
	}
}

// For an account, mailbox_transport comes after .forward: a .forward
// that keeps a copy ("\user, address") forwards the address and passes
// the user's own copy to the transport instead of the mail spool.
func TestLocalMailboxTransportAccount(t *testing.T) {
	needRoot(t)
	sink := startLMTPSink(t)
	in := NewInstance(t, Options{NoStart: true, MasterCf: "lmtp      unix  -       -       n       -       -       lmtp"})
	amy := addUser(t, in.Dir, "m")
	in.AppendMainCf(fmt.Sprintf("mydestination = %s\nalias_maps =\nmailbox_transport = lmtp:inet:%s\nmail_spool_directory = %s/spool\n", localDomain, sink.addr, in.Dir))
	fwd := filepath.Join(amy.Home, ".forward")
	if err := os.WriteFile(fwd, []byte("\\"+amy.Name+", other@itest.test\n"), 0600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(fwd, amy.UID, amy.GID); err != nil {
		t.Fatal(err)
	}
	in.Start()
	to := amy.Name + "@" + localDomain
	text, err := send(t, in.Addr, "user@itest.test", []string{to}, "Subject: account\r\n\r\nfor an account\r\n")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	m := sink.wait(t, in, to, 15*time.Second)
	if !strings.HasSuffix(m.data, "\r\n\r\nfor an account\r\n") {
		t.Errorf("LMTP got:\n%s", m.data)
	}
	in.WaitMaildir("itest.test/other", 1, 15*time.Second)
	if !in.WaitLog(id+": removed", 10*time.Second) {
		t.Fatalf("not finished\n%s", in.Log())
	}
	lines := grepLines(in.Log(), id+": to=<"+to+">")
	if !strings.Contains(lines, "relay=local") || !strings.Contains(lines, "(forwarded as ") ||
		!strings.Contains(lines, "relay="+sink.relay) || strings.Contains(lines, "delivered to mailbox") {
		t.Errorf("delivery lines:\n%s", lines)
	}
}

// The usual Dovecot setup, "mailbox_transport =
// lmtp:unix:private/dovecot-lmtp": the next hop is a socket below
// queue_directory.
func TestLocalMailboxTransportUnixSocket(t *testing.T) {
	in := localTransportInstance(t, "mailbox_transport = lmtp:unix:private/dovecot-lmtp\n")
	path := filepath.Join(in.Dir, "queue", "private", "dovecot-lmtp")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	// The lmtp agent runs as mail_owner.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	sink := serveLMTPSink(t, ln, &lmtpSink{addr: path})
	to := "dove@" + localDomain
	text, err := send(t, in.Addr, "user@itest.test", []string{to}, "Subject: dovecot\r\n\r\nover a socket\r\n")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	if m := sink.wait(t, in, to, 15*time.Second); !strings.HasSuffix(m.data, "\r\n\r\nover a socket\r\n") {
		t.Errorf("LMTP got:\n%s", m.data)
	}
	if !in.WaitLog(id+": removed", 10*time.Second) {
		t.Fatalf("not finished\n%s", in.Log())
	}
	if lines := grepLines(in.Log(), id+": to=<"+to+">"); !strings.Contains(lines, "postern/lmtp[") || !strings.Contains(lines, "status=sent (250 ") {
		t.Errorf("delivery lines:\n%s", lines)
	}
}

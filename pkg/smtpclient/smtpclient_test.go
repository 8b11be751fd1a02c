package smtpclient

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"postern/pkg/config"
	"postern/pkg/deliver"
	"postern/pkg/queue"
	"postern/pkg/resolve"
	"postern/pkg/table"
)

func TestMXPreferenceAndDeadPrimary(t *testing.T) {
	port, lns := loopbackPort(t, 3, 3)
	good := startFake(t, lns[3], fakeOptions{})
	dns, _ := dnsFor(t,
		"example.com. MX 10 mx1.example.com.",
		"example.com. MX 20 mx2.example.com.",
		"mx1.example.com. A 127.0.0.2",
		"mx2.example.com. A 127.0.0.3",
	)
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\ninet_protocols = ipv4\n", port))
	res := e.send(t, "example.com", "a@example.net", "rcpt@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "250 2.0.0")
	if m := good.messages(); len(m) != 1 || m[0].from != "a@example.net" || m[0].rcpts[0] != "rcpt@example.com" {
		t.Fatalf("backup MX got %+v", m)
	}
	e.wantLog(t, fmt.Sprintf("to=<rcpt@example.com>, relay=mx2.example.com[127.0.0.3]:%d, delay=", port), "dsn=2.0.0, status=sent (250 2.0.0")
}

func TestMXPreferenceOrder(t *testing.T) {
	port, lns := loopbackPort(t, 3, 2, 3)
	primary := startFake(t, lns[2], fakeOptions{})
	backup := startFake(t, lns[3], fakeOptions{})
	dns, _ := dnsFor(t,
		"example.com. MX 20 mx2.example.com.",
		"example.com. MX 10 mx1.example.com.",
		"mx1.example.com. A 127.0.0.2",
		"mx2.example.com. A 127.0.0.3",
	)
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\nsmtp_connection_cache_time_limit = 0\n", port))
	for i := 0; i < 5; i++ {
		res := e.send(t, "example.com", fmt.Sprintf("s%d@example.net", i), "rcpt@example.com")
		wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	}
	if len(primary.messages()) != 5 || len(backup.messages()) != 0 {
		t.Errorf("primary got %d, backup %d; want 5 and 0", len(primary.messages()), len(backup.messages()))
	}
}

func TestAllMXDown(t *testing.T) {
	port, _ := loopbackPort(t, 3)
	dns, _ := dnsFor(t,
		"example.com. MX 10 mx1.example.com.",
		"example.com. MX 20 mx2.example.com.",
		"mx1.example.com. A 127.0.0.2",
		"mx2.example.com. A 127.0.0.3",
	)
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\n", port))
	res := e.send(t, "example.com", "a@example.net", "rcpt@example.com")
	want := fmt.Sprintf("connect to mx2.example.com[127.0.0.3]:%d: Connection refused", port)
	wantResult(t, res[0], deliver.Defer, "4.4.1", want)
	e.wantLog(t, "relay=none, delay=", "dsn=4.4.1, status=deferred ("+want+")")
}

func TestFallbackRelay(t *testing.T) {
	port, lns := loopbackPort(t, 3, 3)
	fb := startFake(t, lns[3], fakeOptions{})
	dns, _ := dnsFor(t, "example.com. MX 10 mx1.example.com.", "mx1.example.com. A 127.0.0.2")
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\nsmtp_fallback_relay = [127.0.0.3]\n", port))
	res := e.send(t, "example.com", "a@example.net", "rcpt@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if len(fb.messages()) != 1 {
		t.Errorf("fallback relay got %d messages", len(fb.messages()))
	}
}

func TestNoMXUsesAddress(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	mx := startFake(t, lns[2], fakeOptions{})
	dns, _ := dnsFor(t, "example.com. A 127.0.0.2", "example.com. TXT \"v=spf1 -all\"")
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\n", port))
	res := e.send(t, "example.com", "a@example.net", "rcpt@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if len(mx.messages()) != 1 {
		t.Errorf("A-record host got %d messages", len(mx.messages()))
	}
	e.wantLog(t, fmt.Sprintf("relay=example.com[127.0.0.2]:%d", port))
}

func TestDNSFailures(t *testing.T) {
	dns, srv := dnsFor(t,
		"null.example. MX 0 .",
		"noaddr.example. MX 10 mx.noaddr.example.",
		"mx.noaddr.example. TXT \"no address here\"",
	)
	srv.ServFail("broken.example")
	e := newEnv(t, "smtp", dns)
	cases := []struct {
		dest string
		st   deliver.Status
		dsn  string
		text string
	}{
		{"null.example", deliver.Bounce, "5.1.10", "Domain null.example does not accept mail (nullMX)"},
		{"nx.example", deliver.Bounce, "5.4.4", "Host or domain name not found. Name service error for name=nx.example type=MX: Host not found"},
		{"broken.example", deliver.Defer, "4.4.3", "Host or domain name not found. Name service error for name=broken.example type=MX: Host not found, try again"},
		{"noaddr.example", deliver.Bounce, "5.4.4", "name=mx.noaddr.example type=A"},
	}
	for _, c := range cases {
		res := e.send(t, c.dest, "a@example.net", "u@"+c.dest)
		wantResult(t, res[0], c.st, c.dsn, c.text)
	}
	e.wantLog(t, "to=<u@null.example>, relay=none,", "dsn=5.1.10, status=bounced (Domain null.example does not accept mail (nullMX))")
}

func TestReplyClassification(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	mx := startFake(t, lns[2], fakeOptions{})
	mx.rcptErr["busy@example.com"] = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox busy"}
	mx.rcptErr["gone@example.com"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\n", port))
	res := e.send(t, "[127.0.0.2]", "a@example.net", "ok@example.com", "busy@example.com", "gone@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "250 2.0.0")
	wantResult(t, res[1], deliver.Defer, "4.2.1", "host 127.0.0.2[127.0.0.2] said: 450 4.2.1 Mailbox busy (in reply to RCPT TO command)")
	wantResult(t, res[2], deliver.Bounce, "5.1.1", "host 127.0.0.2[127.0.0.2] said: 550 5.1.1 No such user (in reply to RCPT TO command)")
	if m := mx.messages(); len(m) != 1 || len(m[0].rcpts) != 1 {
		t.Errorf("server got %+v", m)
	}

	mx.mailErr = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender refused"}
	res = e.send(t, "[127.0.0.2]", "b@example.net", "x@example.com", "y@example.com")
	for _, r := range res {
		wantResult(t, r, deliver.Bounce, "5.7.1", "said: 553 5.7.1 Sender refused (in reply to MAIL FROM command)")
	}
	mx.mailErr = nil
	mx.dataErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try later"}
	res = e.send(t, "[127.0.0.2]", "c@example.net", "x@example.com")
	wantResult(t, res[0], deliver.Defer, "4.3.0", "said: 451 4.3.0 Try later (in reply to end of DATA command)")
	mx.dataErr = nil
	// The session survived all of that and is reused.
	res = e.send(t, "[127.0.0.2]", "d@example.net", "x@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if n := mx.conns.Load(); n != 1 {
		t.Errorf("server saw %d connections; want 1", n)
	}
}

func TestConnectionReuse(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	mx := startFake(t, lns[2], fakeOptions{})
	e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\nsmtp_connection_cache_time_limit = 10s\n", port))
	for i := 0; i < 10; i++ {
		res := e.send(t, "[127.0.0.2]", fmt.Sprintf("s%d@example.net", i), "r@example.com")
		wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	}
	if n := mx.conns.Load(); n != 1 {
		t.Errorf("10 messages used %d connections; want 1", n)
	}
	if len(mx.messages()) != 10 {
		t.Errorf("server got %d messages", len(mx.messages()))
	}
	e.wantLog(t, "conn_use=2,", "conn_use=10,")
	// A cached session the server closed is replaced transparently.
	mx.srv.Close()
	lns2 := mustListen(t, fmt.Sprintf("127.0.0.2:%d", port))
	mx2 := startFake(t, lns2, fakeOptions{})
	res := e.send(t, "[127.0.0.2]", "late@example.net", "r@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if len(mx2.messages()) != 1 {
		t.Errorf("new server got %d messages", len(mx2.messages()))
	}
}

func mustListen(t *testing.T, addr string) net.Listener {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDSNAndSMTPUTF8Parameters(t *testing.T) {
	port, lns := loopbackPort(t, 3, 2, 3)
	mx := startFake(t, lns[2], fakeOptions{dsn: true, utf8: true})
	plain := startFake(t, lns[3], fakeOptions{})
	e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\n", port))
	env := queue.Envelope{Sender: "a@example.net", DSNRet: "HDRS", DSNEnvID: "env+1", SMTPUTF8: true, BodyType: "8BITMIME",
		Recipients: []queue.Recipient{{Addr: "r@example.com", Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;orig@example.com"}}}
	id := e.queue(t, env, "Subject: x\n\nbody\n")
	now := e.deliverReq(t, id, "[127.0.0.2]", env)
	wantResult(t, now[0], deliver.Sent, "2.0.0", "")
	m := mx.messages()[0]
	if m.mopts.Return != smtp.DSNReturnHeaders || m.mopts.EnvelopeID != "env+1" || !m.mopts.UTF8 || m.mopts.Body != smtp.Body8BitMIME {
		t.Errorf("MAIL options %+v", m.mopts)
	}
	if o := m.ropts[0]; len(o.Notify) != 2 || o.OriginalRecipient != "orig@example.com" {
		t.Errorf("RCPT options %+v", o)
	}
	// SMTPUTF8 with a non-ASCII address to a server without it bounces.
	env.Recipients = []queue.Recipient{{Addr: "δοκιμή@example.com"}}
	id = e.queue(t, env, "Subject: x\n\nbody\n")
	res := e.deliverReq(t, id, "[127.0.0.3]", env)
	wantResult(t, res[0], deliver.Bounce, "5.6.7", "SMTPUTF8 is required, but was not offered by host 127.0.0.3[127.0.0.3]")
	if len(plain.messages()) != 0 {
		t.Error("message sent without SMTPUTF8")
	}
}

func (e *testEnv) deliverReq(t *testing.T, id queue.ID, nexthop string, env queue.Envelope) []deliver.Result {
	var rcpts []string
	for _, r := range env.Recipients {
		rcpts = append(rcpts, r.Addr)
	}
	req := &deliver.Request{QueueID: string(id), Queue: queue.Active, Sender: env.Sender, Nexthop: nexthop}
	for i, r := range env.Recipients {
		req.Recipients = append(req.Recipients, deliver.Recipient{Index: i, Addr: r.Addr, Notify: r.Notify, ORcpt: r.ORcpt})
	}
	res, err := e.client.Deliver(req)
	if err != nil || len(res) != len(rcpts) {
		t.Fatalf("Deliver: %v, %v", res, err)
	}
	return res
}

func TestSizeLimit(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	startFake(t, lns[2], fakeOptions{maxSize: 100})
	e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\n", port))
	id := e.queue(t, queue.Envelope{Sender: "a@example.net"}, "Subject: big\n\n"+strings.Repeat("x", 200)+"\n")
	res := e.deliver(t, id, "[127.0.0.2]", "a@example.net", "rcpt@example.com")
	wantResult(t, res[0], deliver.Bounce, "5.3.4", "exceeds size limit 100 of server 127.0.0.2[127.0.0.2]")
}

func TestTLSLevels(t *testing.T) {
	port, lns := loopbackPort(t, 3, 2, 3)
	dir := t.TempDir()
	pki := newPKI(t, dir, "mx.example.com")
	other := newPKI(t, dir, "mx.example.com")
	tlsMX := startFake(t, lns[2], fakeOptions{tls: pki.server})
	plainMX := startFake(t, lns[3], fakeOptions{})
	dns, _ := dnsFor(t,
		"tls.example. MX 10 mx.example.com.", "mx.example.com. A 127.0.0.2",
		"plain.example. MX 10 mx.plain.example.", "mx.plain.example. A 127.0.0.3",
		"wrong.example. MX 10 other.example.com.", "other.example.com. A 127.0.0.2",
	)
	base := dns + fmt.Sprintf("smtp_tcp_port = %d\nsmtp_connection_cache_time_limit = 0\n", port)
	cases := []struct {
		name, level, ca, dest string
		st                    deliver.Status
		dsn, text             string
		tls                   bool
		mx                    *fakeMX
	}{
		{"may with STARTTLS", "may", "", "tls.example", deliver.Sent, "2.0.0", "", true, tlsMX},
		{"may without STARTTLS", "may", "", "plain.example", deliver.Sent, "2.0.0", "", false, plainMX},
		{"none", "none", "", "tls.example", deliver.Sent, "2.0.0", "", false, tlsMX},
		{"encrypt", "encrypt", "", "tls.example", deliver.Sent, "2.0.0", "", true, tlsMX},
		{"encrypt without STARTTLS", "encrypt", "", "plain.example", deliver.Defer, "4.7.4", "TLS is required, but was not offered by host mx.plain.example[127.0.0.3]", false, nil},
		{"verify", "verify", pki.caFile, "tls.example", deliver.Sent, "2.0.0", "", true, tlsMX},
		{"verify untrusted CA", "verify", other.caFile, "tls.example", deliver.Defer, "4.7.5", "Server certificate not verified", false, nil},
		{"verify wrong name", "verify", pki.caFile, "wrong.example", deliver.Defer, "4.7.5", "name mismatch", false, nil},
		{"secure wrong nexthop", "secure", pki.caFile, "tls.example", deliver.Defer, "4.7.5", "Server certificate not verified", false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "smtp", base+"smtp_tls_security_level = "+c.level+"\nsmtp_tls_CAfile = "+c.ca+"\n")
			var before int
			if c.mx != nil {
				before = len(c.mx.messages())
			}
			res := e.send(t, c.dest, "a@example.net", "rcpt@"+c.dest)
			wantResult(t, res[0], c.st, c.dsn, c.text)
			if c.mx != nil {
				m := c.mx.messages()
				if len(m) != before+1 {
					t.Fatalf("server got %d new messages", len(m)-before)
				}
				if m[len(m)-1].tls != c.tls {
					t.Errorf("TLS = %v; want %v", m[len(m)-1].tls, c.tls)
				}
			}
		})
	}
	// secure matches the next-hop domain: a certificate for the domain's
	// subdomain passes.
	secPKI := newPKI(t, dir, "mx.secure.example")
	port2, lns2 := loopbackPort(t, 4, 4)
	secMX := startFake(t, lns2[4], fakeOptions{tls: secPKI.server})
	dns2, _ := dnsFor(t, "secure.example. MX 10 mx.secure.example.", "mx.secure.example. A 127.0.0.4")
	e := newEnv(t, "smtp", dns2+fmt.Sprintf("smtp_tcp_port = %d\nsmtp_tls_security_level = secure\nsmtp_tls_CAfile = %s\n", port2, secPKI.caFile))
	res := e.send(t, "secure.example", "a@example.net", "rcpt@secure.example")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if m := secMX.messages(); len(m) != 1 || !m[0].tls {
		t.Errorf("secure delivery: %+v", m)
	}
}

func TestSmartHostWrapperModeAuth(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	dir := t.TempDir()
	pki := newPKI(t, dir, "smarthost.example")
	mx := startFake(t, lns[2], fakeOptions{tls: pki.server, implicit: true})
	mx.authUser, mx.authPass = "alice", "s3cret"
	dns, _ := dnsFor(t, "smarthost.example. A 127.0.0.2")
	relay := fmt.Sprintf("[smarthost.example]:%d", port)
	pw := filepath.Join(dir, "sasl_passwd")
	os.WriteFile(pw, []byte(relay+" alice:s3cret\n"), 0o600)
	conf := dns + "relayhost = " + relay + "\nsmtp_tls_wrappermode = yes\nsmtp_tls_security_level = encrypt\n" +
		"smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = texthash:" + pw + "\n"

	// The default options forbid plaintext mechanisms, as Postfix's do.
	e := newEnv(t, "smtp", conf)
	res := e.send(t, relay, "a@example.net", "rcpt@example.com")
	wantResult(t, res[0], deliver.Defer, "4.7.0", "SASL authentication failed; cannot authenticate to server smarthost.example[127.0.0.2]: no mechanism available")

	e = newEnv(t, "smtp", conf+"smtp_sasl_security_options = noanonymous\n")
	res = e.send(t, relay, "a@example.net", "rcpt@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if m := mx.messages(); len(m) != 1 || m[0].user != "alice" || !m[0].tls {
		t.Errorf("smart host got %+v", m)
	}
	e.wantLog(t, fmt.Sprintf("relay=smarthost.example[127.0.0.2]:%d", port))

	os.WriteFile(pw, []byte(relay+" alice:wrong\n"), 0o600)
	e = newEnv(t, "smtp", conf+"smtp_sasl_security_options = noanonymous\n")
	res = e.send(t, relay, "a@example.net", "rcpt@example.com")
	wantResult(t, res[0], deliver.Defer, "4.7.0", "SASL authentication failed; server smarthost.example[127.0.0.2] said: 535 5.7.8 Authentication failed")
}

// TestSenderDependentRelayhost: sender_dependent_relayhost_maps is
// resolved with the sender before the agent sees the request (as
// Postfix's trivial-rewrite does, pkg/resolve ResolveFrom, called by
// qmgr), and the agent delivers to the next hop it is given: the
// sender's relay, relayhost for other senders, an explicit transport
// next hop as written.
func TestSenderDependentRelayhost(t *testing.T) {
	port, lns := loopbackPort(t, 3, 2, 3)
	normal := startFake(t, lns[2], fakeOptions{})
	special := startFake(t, lns[3], fakeOptions{})
	dir := t.TempDir()
	m := filepath.Join(dir, "sdr")
	os.WriteFile(m, []byte("@special.example [127.0.0.3]\n"), 0o600)
	rh := "[127.0.0.2]"
	conf := fmt.Sprintf("smtp_tcp_port = %d\nrelayhost = %s\nsender_dependent_relayhost_maps = texthash:%s\n", port, rh, m)
	cfg, err := config.Parse(strings.NewReader("myhostname = client.example.net\n"+conf), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	tables := table.NewCache(table.Options{NoWatch: true})
	t.Cleanup(func() { tables.Close() })
	r, err := resolve.New(cfg, tables.Open)
	if err != nil {
		t.Fatal(err)
	}
	nexthop := func(sender, rcpt string) string {
		res, err := r.ResolveFrom(sender, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		return res.Nexthop
	}
	e := newEnv(t, "smtp", conf)
	if nh := nexthop("a@special.example", "r@example.com"); nh != "[127.0.0.3]" {
		t.Errorf("next hop for a@special.example: %q", nh)
	}
	wantResult(t, e.send(t, nexthop("a@special.example", "r@example.com"), "a@special.example", "r@example.com")[0], deliver.Sent, "2.0.0", "")
	wantResult(t, e.send(t, nexthop("a@plain.example", "r@example.com"), "a@plain.example", "r@example.com")[0], deliver.Sent, "2.0.0", "")
	// The agent does not look the sender up again: an explicit next hop
	// is delivered to as given.
	wantResult(t, e.send(t, "[127.0.0.2]:"+fmt.Sprint(port), "b@special.example", "r@example.com")[0], deliver.Sent, "2.0.0", "")
	if len(special.messages()) != 1 || len(normal.messages()) != 2 {
		t.Errorf("special got %d, normal %d; want 1 and 2", len(special.messages()), len(normal.messages()))
	}
}

func TestDowngrade8BITMIME(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	s := startScripted(t, lns[2], "SIZE 1000000") // no 8BITMIME, no PIPELINING
	e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\n", port))
	content := "From: a@example.net\nSubject: caf\xc3\xa9\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" +
		"Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e\n.leading dot\n= sign\n"
	id := e.queue(t, queue.Envelope{Sender: "a@example.net", BodyType: "8BITMIME"}, content)
	res := e.deliver(t, id, "[127.0.0.2]", "a@example.net", "rcpt@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "250 2.0.0 Ok: queued as SCRIPT1")
	want := "From: a@example.net\r\nSubject: caf\xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n" +
		"Caf=C3=A9 cr=C3=A8me br=C3=BBl=C3=A9e\r\n..leading dot\r\n=3D sign\r\n.\r\n"
	if len(s.data) != 1 || string(s.data[0]) != want {
		t.Fatalf("DATA bytes:\n%q\nwant\n%q", s.data, want)
	}
	for _, c := range s.cmds {
		if strings.HasPrefix(c, "MAIL") && strings.Contains(c, "BODY=") {
			t.Errorf("BODY= sent to a server without 8BITMIME: %q", c)
		}
	}
}

func TestDowngradeMultipart(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	s := startScripted(t, lns[2])
	e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\n", port))
	content := "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n--b1\nContent-Type: text/plain\n\nplain ascii\n--b1\nContent-Type: text/plain; charset=latin1\nContent-Transfer-Encoding: 8bit\n\nna\xefve\n--b1--\n"
	id := e.queue(t, queue.Envelope{Sender: "a@example.net", BodyType: "8BITMIME"}, content)
	res := e.deliver(t, id, "[127.0.0.2]", "a@example.net", "rcpt@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	want := "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n--b1\r\nContent-Type: text/plain; charset=latin1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=EFve\r\n--b1--\r\n.\r\n"
	if len(s.data) != 1 || string(s.data[0]) != want {
		t.Fatalf("DATA bytes:\n%q\nwant\n%q", s.data, want)
	}
}

func TestNoPipeliningStopsEarly(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	s := startScripted(t, lns[2], "8BITMIME", "SIZE")
	e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\n", port))
	res := e.send(t, "[127.0.0.2]", "a@example.net", "r1@example.com", "r2@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	wantResult(t, res[1], deliver.Sent, "2.0.0", "")
	got := strings.Join(s.cmds, "|")
	if !strings.HasPrefix(got, "EHLO client.example.net|MAIL FROM:<a@example.net> SIZE=") || !strings.Contains(got, "|RCPT TO:<r1@example.com>|RCPT TO:<r2@example.com>|DATA") {
		t.Errorf("commands %s", got)
	}
}

func TestLMTPUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "lmtp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mx := startFake(t, ln, fakeOptions{lmtp: true})
	mx.lmtpErr["full@example.com"] = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
	mx.lmtpErr["bad@example.com"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 0}, Message: "Delivery failed"}
	mx.rcptErr["nouser@example.com"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	e := newEnv(t, "lmtp", "")
	res := e.send(t, "unix:"+sock, "a@example.net", "ok@example.com", "full@example.com", "bad@example.com", "nouser@example.com", "ok2@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "250 2.0.0")
	wantResult(t, res[1], deliver.Defer, "4.2.2", "said: 452 4.2.2 <full@example.com> Mailbox full (in reply to end of DATA command)")
	wantResult(t, res[2], deliver.Bounce, "5.2.0", "said: 550 5.2.0 <bad@example.com> Delivery failed (in reply to end of DATA command)")
	wantResult(t, res[3], deliver.Bounce, "5.1.1", "said: 550 5.1.1 User unknown (in reply to RCPT TO command)")
	wantResult(t, res[4], deliver.Sent, "2.0.0", "")
	e.wantLog(t, "relay=client.example.net["+sock+"]", "postern/lmtp[")
	res = e.send(t, "unix:"+sock, "b@example.net", "ok@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if n := mx.conns.Load(); n != 1 {
		t.Errorf("LMTP connections %d; want 1 (reused)", n)
	}
}

func TestLMTPInet(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	mx := startFake(t, lns[2], fakeOptions{lmtp: true})
	e := newEnv(t, "lmtp", "")
	res := e.send(t, fmt.Sprintf("inet:127.0.0.2:%d", port), "a@example.net", "ok@example.com")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if len(mx.messages()) != 1 {
		t.Errorf("LMTP server got %d messages", len(mx.messages()))
	}
}

func TestQueueFileMissing(t *testing.T) {
	e := newEnv(t, "smtp", "")
	res := e.deliver(t, queue.ID("4BzNotThere1"), "[127.0.0.2]", "a@example.net", "r@example.com")
	wantResult(t, res[0], deliver.Defer, "4.3.0", "cannot open queue file")
}

package smtpclient

// Audit tests (issue 4): behaviours that were implemented but had no test
// that could fail: PIPELINING in one write, smtp_helo_name,
// smtp_bind_address, per-stage timeouts, SNI, smtp_sasl_tls_security_options,
// inet_protocols, relayhost "host" (MX lookup) against "[host]" (none).

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/pkg/deliver"
)

var smtpError450 = smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again later"}

// rawServer accepts connections on ln and runs serve for each, recording
// the client's address. It stops (and waits) when the test ends.
type rawServer struct {
	mu      sync.Mutex
	remotes []string
	cmds    []string
	note    []string
}

func (s *rawServer) add(field *[]string, v string) {
	s.mu.Lock()
	*field = append(*field, v)
	s.mu.Unlock()
}

func (s *rawServer) get(field *[]string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), (*field)...)
}

func startRaw(t *testing.T, ln net.Listener, serve func(s *rawServer, c net.Conn, br *bufio.Reader)) *rawServer {
	s := &rawServer{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.add(&s.remotes, c.RemoteAddr().String())
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(testTimeout))
				serve(s, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		waitGroup(t, &wg)
	})
	return s
}

// auditLine reads one command line without its CRLF.
func auditLine(br *bufio.Reader) (string, error) {
	l, err := br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// auditData reads message content up to the lone dot.
func auditData(br *bufio.Reader) error {
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if l == ".\r\n" {
			return nil
		}
	}
}

// TestAuditPipeliningOneWrite: with PIPELINING the client sends MAIL,
// every RCPT and DATA before it waits for a reply. The server here
// answers nothing until it has read DATA, so a client that waits for the
// MAIL reply first times out (smtp_mail_timeout = 3s) instead of
// delivering.
func TestAuditPipeliningOneWrite(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	srv := startRaw(t, lns[2], func(s *rawServer, c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "220 pipe.example ESMTP\r\n")
		for {
			l, err := auditLine(br)
			if err != nil {
				return
			}
			s.add(&s.cmds, l)
			switch verb := strings.ToUpper(strings.Fields(l + " x")[0]); verb {
			case "EHLO":
				io.WriteString(c, "250-pipe.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
			case "MAIL":
				// Collect the rest of the batch before any reply.
				batch := []string{l}
				for !strings.EqualFold(batch[len(batch)-1], "DATA") {
					n, err := auditLine(br)
					if err != nil {
						return
					}
					s.add(&s.cmds, n)
					batch = append(batch, n)
				}
				s.add(&s.note, fmt.Sprintf("batch of %d before any reply", len(batch)))
				var out strings.Builder
				for _, b := range batch[:len(batch)-1] {
					if strings.HasPrefix(strings.ToUpper(b), "MAIL") {
						out.WriteString("250 2.1.0 Ok\r\n")
					} else {
						out.WriteString("250 2.1.5 Ok\r\n")
					}
				}
				out.WriteString("354 go ahead\r\n")
				io.WriteString(c, out.String())
				if auditData(br) != nil {
					return
				}
				io.WriteString(c, "250 2.0.0 Ok: queued as PIPE1\r\n")
			case "QUIT":
				io.WriteString(c, "221 2.0.0 Bye\r\n")
				return
			default:
				io.WriteString(c, "250 2.0.0 Ok\r\n")
			}
		}
	})
	e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\nsmtp_mail_timeout = 3s\nsmtp_rcpt_timeout = 3s\nsmtp_data_init_timeout = 3s\n", port))
	res := e.send(t, "[127.0.0.2]", "a@example.net", "r1@example.com", "r2@example.com", "r3@example.com")
	for i, r := range res {
		if r.Status != deliver.Sent {
			t.Errorf("recipient %d: %s %s %s (client did not pipeline?)", i, r.Status, r.DSN, r.Text)
		}
	}
	if n := srv.get(&srv.note); len(n) != 1 || n[0] != "batch of 5 before any reply" {
		t.Errorf("server saw %v; want one batch of MAIL, 3 RCPT, DATA", n)
	}
}

// TestAuditHeloNameAndBindAddress: smtp_helo_name is what EHLO says and
// smtp_bind_address is the connection's source address.
func TestAuditHeloNameAndBindAddress(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	srv := startRaw(t, lns[2], func(s *rawServer, c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "220 helo.example ESMTP\r\n")
		for {
			l, err := auditLine(br)
			if err != nil {
				return
			}
			s.add(&s.cmds, l)
			switch strings.ToUpper(strings.Fields(l + " x")[0]) {
			case "EHLO":
				io.WriteString(c, "250-helo.example\r\n250 8BITMIME\r\n")
			case "DATA":
				io.WriteString(c, "354 go ahead\r\n")
				if auditData(br) != nil {
					return
				}
				io.WriteString(c, "250 2.0.0 Ok\r\n")
			case "QUIT":
				io.WriteString(c, "221 2.0.0 Bye\r\n")
				return
			default:
				io.WriteString(c, "250 2.0.0 Ok\r\n")
			}
		}
	})
	e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\nsmtp_helo_name = helo-name.audit.example\nsmtp_bind_address = 127.0.0.7\n", port))
	wantResult(t, e.send(t, "[127.0.0.2]", "a@example.net", "r@example.com")[0], deliver.Sent, "2.0.0", "")
	if cmds := srv.get(&srv.cmds); len(cmds) == 0 || cmds[0] != "EHLO helo-name.audit.example" {
		t.Errorf("first command %v; want EHLO helo-name.audit.example", cmds)
	}
	if r := srv.get(&srv.remotes); len(r) != 1 || !strings.HasPrefix(r[0], "127.0.0.7:") {
		t.Errorf("client connected from %v; want 127.0.0.7 (smtp_bind_address)", r)
	}
}

// TestAuditStageTimeouts: each stage has its own limit, and the deferral
// says where it ran out, in Postfix's words.
func TestAuditStageTimeouts(t *testing.T) {
	cases := []struct {
		name  string
		conf  string
		serve func(c net.Conn, br *bufio.Reader) // the server's misbehaviour
		stage string
	}{
		{"greeting", "smtp_helo_timeout = 1s\n", func(c net.Conn, br *bufio.Reader) {
			io.Copy(io.Discard, br) // never greets
		}, "receiving the initial server greeting"},
		{"EHLO", "smtp_helo_timeout = 1s\n", func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "220 slow.example ESMTP\r\n")
			io.Copy(io.Discard, br)
		}, "performing the EHLO handshake"},
		{"MAIL", "smtp_mail_timeout = 1s\n", func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "220 slow.example ESMTP\r\n")
			auditLine(br)
			io.WriteString(c, "250 slow.example\r\n") // no PIPELINING
			io.Copy(io.Discard, br)
		}, "sending MAIL FROM"},
		{"end of data", "smtp_data_done_timeout = 1s\n", func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "220 slow.example ESMTP\r\n")
			for {
				l, err := auditLine(br)
				if err != nil {
					return
				}
				switch strings.ToUpper(strings.Fields(l + " x")[0]) {
				case "EHLO":
					io.WriteString(c, "250 slow.example\r\n")
				case "DATA":
					io.WriteString(c, "354 go ahead\r\n")
					auditData(br)
					io.Copy(io.Discard, br) // never confirms
					return
				default:
					io.WriteString(c, "250 Ok\r\n")
				}
			}
		}, "sending end of data -- message may be sent more than once"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			port, lns := loopbackPort(t, 2, 2)
			startRaw(t, lns[2], func(s *rawServer, conn net.Conn, br *bufio.Reader) { c.serve(conn, br) })
			e := newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\n", port)+c.conf)
			start := time.Now()
			res := e.send(t, "[127.0.0.2]", "a@example.net", "r@example.com")
			took := time.Since(start)
			wantResult(t, res[0], deliver.Defer, "4.4.2", "conversation with 127.0.0.2[127.0.0.2] timed out while "+c.stage)
			if took < 900*time.Millisecond || took > 5*time.Second {
				t.Errorf("gave up after %v; want about 1s", took)
			}
		})
	}
}

// TestAuditSNI: the client names the server in the TLS handshake as
// Postfix does: not at all by default (smtp_tls_servername empty), the MX
// host name with "hostname", the next-hop domain with "nexthop", a
// literal name as given.
func TestAuditSNI(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	pki := newPKI(t, t.TempDir(), "mx.sni.example")
	var mu sync.Mutex
	var names []string
	conf := pki.server.Clone()
	conf.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		names = append(names, h.ServerName)
		mu.Unlock()
		return nil, nil
	}
	mx := startFake(t, lns[2], fakeOptions{tls: conf})
	dns, _ := dnsFor(t, "sni.example. MX 10 mx.sni.example.", "mx.sni.example. A 127.0.0.2")
	base := dns + fmt.Sprintf("smtp_tcp_port = %d\nsmtp_connection_cache_time_limit = 0\nsmtp_tls_security_level = encrypt\n", port)
	for i, c := range []struct{ servername, want string }{
		{"", ""},
		{"hostname", "mx.sni.example"},
		{"nexthop", "sni.example"},
		{"literal.sni.example", "literal.sni.example"},
	} {
		e := newEnv(t, "smtp", base+"smtp_tls_servername = "+c.servername+"\n")
		wantResult(t, e.send(t, "sni.example", "a@example.net", "r@sni.example")[0], deliver.Sent, "2.0.0", "")
		mu.Lock()
		got := append([]string(nil), names...)
		mu.Unlock()
		if len(got) != i+1 || got[i] != c.want {
			t.Errorf("smtp_tls_servername = %q: SNI %v; want %q last", c.servername, got, c.want)
		}
	}
	for _, m := range mx.messages() {
		if !m.tls {
			t.Error("message sent without TLS")
		}
	}
}

// TestAuditSASLTLSSecurityOptions: smtp_sasl_tls_security_options applies
// over TLS, smtp_sasl_security_options without: the usual "noplaintext
// in the clear, plaintext over TLS" setup. The server offers only PLAIN.
func TestAuditSASLTLSSecurityOptions(t *testing.T) {
	port, lns := loopbackPort(t, 2, 2)
	dir := t.TempDir()
	pki := newPKI(t, dir, "smtp.provider.example")
	mx := startFake(t, lns[2], fakeOptions{tls: pki.server}) // STARTTLS, AUTH offered before and after it
	mx.authUser, mx.authPass = "bob", "pa55"
	pw := filepath.Join(dir, "sasl_passwd")
	relay := fmt.Sprintf("[127.0.0.2]:%d", port)
	if err := os.WriteFile(pw, []byte(relay+" bob:pa55\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "relayhost = " + relay + "\nsmtp_connection_cache_time_limit = 0\nsmtp_sasl_auth_enable = yes\n" +
		"smtp_sasl_password_maps = texthash:" + pw + "\nsmtp_sasl_security_options = noplaintext, noanonymous\n" +
		"smtp_sasl_tls_security_options = noanonymous\n"

	// Over TLS PLAIN is allowed.
	e := newEnv(t, "smtp", base+"smtp_tls_security_level = encrypt\n")
	wantResult(t, e.send(t, relay, "a@example.net", "r@example.com")[0], deliver.Sent, "2.0.0", "")
	if m := mx.messages(); len(m) != 1 || m[0].user != "bob" || !m[0].tls {
		t.Fatalf("server got %+v; want one message over TLS authenticated as bob", m)
	}
	// In the clear smtp_sasl_security_options rules: no mechanism.
	e = newEnv(t, "smtp", base+"smtp_tls_security_level = none\n")
	wantResult(t, e.send(t, relay, "a@example.net", "r@example.com")[0], deliver.Defer, "4.7.0",
		"SASL authentication failed; cannot authenticate to server 127.0.0.2[127.0.0.2]: no mechanism available")
	if n := len(mx.messages()); n != 1 {
		t.Errorf("server got %d messages; the plaintext session must not send one", n)
	}
}

// TestAuditInetProtocols: an MX host with an IPv4 and an IPv6 address is
// reached over the family inet_protocols allows.
func TestAuditInetProtocols(t *testing.T) {
	var port int
	var v4, v6 net.Listener
	for try := 0; try < 20 && v6 == nil; try++ {
		l, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port))
		if err != nil {
			l.Close()
			if try == 0 {
				if _, e := net.Listen("tcp6", "[::1]:0"); e != nil {
					t.Skipf("no IPv6 loopback: %v", e)
				}
			}
			continue
		}
		v4, v6 = l, l6
	}
	if v6 == nil {
		t.Fatal("no port free on both 127.0.0.2 and ::1")
	}
	mx4 := startFake(t, v4, fakeOptions{})
	mx6 := startFake(t, v6, fakeOptions{})
	dns, _ := dnsFor(t, "dual.example. MX 10 mx.dual.example.", "mx.dual.example. A 127.0.0.2", "mx.dual.example. AAAA ::1")
	for _, c := range []struct {
		protos string
		want   *fakeMX
		relay  string
	}{
		{"ipv4", mx4, fmt.Sprintf("relay=mx.dual.example[127.0.0.2]:%d", port)},
		{"ipv6", mx6, fmt.Sprintf("relay=mx.dual.example[::1]:%d", port)},
	} {
		n4, n6 := len(mx4.messages()), len(mx6.messages())
		e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\ninet_protocols = %s\n", port, c.protos))
		wantResult(t, e.send(t, "dual.example", "a@example.net", "r@dual.example")[0], deliver.Sent, "2.0.0", "")
		got4, got6 := len(mx4.messages())-n4, len(mx6.messages())-n6
		if (c.want == mx4 && (got4 != 1 || got6 != 0)) || (c.want == mx6 && (got6 != 1 || got4 != 0)) {
			t.Errorf("inet_protocols = %s: IPv4 server got %d, IPv6 server %d", c.protos, got4, got6)
		}
		e.wantLog(t, c.relay)
	}
}

// TestAuditRelayhostMXSemantics: a next hop "host" looks up MX records of
// host; "[host]" connects to host's own address, as relayhost and
// transport next hops mean in Postfix.
func TestAuditRelayhostMXSemantics(t *testing.T) {
	port, lns := loopbackPort(t, 3, 2, 3)
	direct := startFake(t, lns[2], fakeOptions{})
	viaMX := startFake(t, lns[3], fakeOptions{})
	dns, _ := dnsFor(t,
		"relay.example. A 127.0.0.2",
		"relay.example. MX 10 mx.relay.example.",
		"mx.relay.example. A 127.0.0.3",
	)
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\nsmtp_connection_cache_time_limit = 0\n", port))
	wantResult(t, e.send(t, "relay.example", "a@example.net", "r@example.com")[0], deliver.Sent, "2.0.0", "")
	wantResult(t, e.send(t, "[relay.example]", "b@example.net", "r@example.com")[0], deliver.Sent, "2.0.0", "")
	wantResult(t, e.send(t, fmt.Sprintf("relay.example:%d", port), "c@example.net", "r@example.com")[0], deliver.Sent, "2.0.0", "")
	wantResult(t, e.send(t, fmt.Sprintf("[relay.example]:%d", port), "d@example.net", "r@example.com")[0], deliver.Sent, "2.0.0", "")
	senders := func(m []received) string {
		var s []string
		for _, x := range m {
			s = append(s, x.from)
		}
		return strings.Join(s, " ")
	}
	if got := senders(viaMX.messages()); got != "a@example.net c@example.net" {
		t.Errorf("MX host got %q; want the messages for relay.example and relay.example:port", got)
	}
	if got := senders(direct.messages()); got != "b@example.net d@example.net" {
		t.Errorf("relay.example's address got %q; want the messages for [relay.example] and [relay.example]:port", got)
	}
}

// TestAuditSoftErrorTriesBackupMX: Postfix's smtp(8) keeps a recipient
// that a non-final server answers with 4xx (to MAIL FROM or RCPT TO) for
// the next server (smtp_trouble.c: SMTP_RCPT_KEEP unless
// SMTP_MISC_FLAG_FINAL_SERVER), so a greylisting primary MX does not
// delay mail its backup would take.
func TestAuditSoftErrorTriesBackupMX(t *testing.T) {
	port, lns := loopbackPort(t, 3, 2, 3)
	primary := startFake(t, lns[2], fakeOptions{})
	primary.rcptErr["r@grey.example"] = &smtpError450
	backup := startFake(t, lns[3], fakeOptions{})
	dns, _ := dnsFor(t,
		"grey.example. MX 10 mx1.grey.example.", "mx1.grey.example. A 127.0.0.2",
		"grey.example. MX 20 mx2.grey.example.", "mx2.grey.example. A 127.0.0.3",
	)
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\n", port))
	res := e.send(t, "grey.example", "a@example.net", "r@grey.example")
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if len(primary.messages()) != 0 || len(backup.messages()) != 1 {
		t.Errorf("primary got %d, backup %d; want 0 and 1", len(primary.messages()), len(backup.messages()))
	}
}

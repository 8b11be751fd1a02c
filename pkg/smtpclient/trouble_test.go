package smtpclient

// Soft errors and skipped servers (Postfix smtp_trouble.c,
// smtp_connect.c): a 4xx reply from a server that is not the last to try
// keeps its recipients for the next one; every server left behind is
// logged; results carry the remote MTA and its reply for DSNs.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"postern/pkg/deliver"
)

var (
	grey451 = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again later"}
	busy452 = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage"}
)

// softEnv is a domain with two MX hosts on 127.0.0.2 and 127.0.0.3.
func softEnv(t *testing.T, extra string) (e *testEnv, mx1, mx2 *fakeMX) {
	port, lns := loopbackPort(t, 3, 2, 3)
	mx1 = startFake(t, lns[2], fakeOptions{})
	mx2 = startFake(t, lns[3], fakeOptions{})
	dns, _ := dnsFor(t,
		"soft.example. MX 10 mx1.soft.example.", "mx1.soft.example. A 127.0.0.2",
		"soft.example. MX 20 mx2.soft.example.", "mx2.soft.example. A 127.0.0.3",
	)
	return newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\n", port)+extra), mx1, mx2
}

func rcptsOf(m []received) string {
	var s []string
	for _, x := range m {
		s = append(s, strings.Join(x.rcpts, ","))
	}
	return strings.Join(s, " ")
}

// TestSoftReplyTriesNextMX: a 4xx reply to MAIL FROM (the whole
// message), to RCPT TO (that recipient) or at the end of data (the
// message) from the primary MX sends the recipients to the backup, and
// the skipped reply is logged with the queue ID at level info.
func TestSoftReplyTriesNextMX(t *testing.T) {
	for _, c := range []struct {
		name      string
		set       func(mx *fakeMX)
		primary   string // recipients the primary took
		backup    string
		replyTo   string
		replyText string
	}{
		{"MAIL FROM", func(mx *fakeMX) { mx.mailErr = grey451 }, "", "a@soft.example,b@soft.example", "MAIL FROM", "451 4.7.1 Greylisted, try again later"},
		{"RCPT TO", func(mx *fakeMX) { mx.rcptErr["b@soft.example"] = grey451 }, "a@soft.example", "b@soft.example", "RCPT TO", "451 4.7.1 Greylisted, try again later"},
		{"end of data", func(mx *fakeMX) { mx.dataErr = busy452 }, "", "a@soft.example,b@soft.example", "end of DATA", "452 4.3.1 Insufficient system storage"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, mx1, mx2 := softEnv(t, "")
			c.set(mx1)
			env := []string{"a@soft.example", "b@soft.example"}
			res := e.send(t, "soft.example", "s@example.net", env...)
			for i, r := range res {
				wantResult(t, r, deliver.Sent, "2.0.0", "")
				if r.RemoteMTA == "" || !strings.HasPrefix(r.Diagnostic, "smtp; 250 ") {
					t.Errorf("recipient %d: Remote-MTA %q, Diagnostic-Code %q", i, r.RemoteMTA, r.Diagnostic)
				}
			}
			if got := rcptsOf(mx1.messages()); got != c.primary {
				t.Errorf("primary took %q; want %q", got, c.primary)
			}
			if got := rcptsOf(mx2.messages()); got != c.backup {
				t.Errorf("backup took %q; want %q", got, c.backup)
			}
			log := e.logText(t)
			re := regexp.MustCompile(`\]: [0-9A-Za-z]+: host mx1\.soft\.example\[127\.0\.0\.2\] said: ` + regexp.QuoteMeta(c.replyText) + ` \(in reply to ` + c.replyTo + ` command\)\n`)
			if !re.MatchString(log) {
				t.Errorf("log lacks the skipped reply of mx1:\n%s", log)
			}
			// Each recipient's delivery line names the server that took it.
			e.wantLog(t, "to=<b@soft.example>, relay=mx2.soft.example[127.0.0.3]:")
		})
	}
}

// TestSoftReplyFinalServerDefers: the last server's 4xx reply defers the
// recipient with that reply; it is not a failure of the destination.
func TestSoftReplyFinalServerDefers(t *testing.T) {
	e, mx1, mx2 := softEnv(t, "")
	mx1.rcptErr["r@soft.example"] = grey451
	mx2.rcptErr["r@soft.example"] = busy452
	res := e.send(t, "soft.example", "s@example.net", "r@soft.example", "ok@soft.example")
	wantResult(t, res[0], deliver.Defer, "4.3.1", "host mx2.soft.example[127.0.0.3] said: 452 4.3.1 Insufficient system storage (in reply to RCPT TO command)")
	if res[0].Site {
		t.Error("a recipient's 4xx reply counted as a site failure")
	}
	if res[0].RemoteMTA != "mx2.soft.example" || res[0].Diagnostic != "smtp; 452 4.3.1 Insufficient system storage" {
		t.Errorf("Remote-MTA %q, Diagnostic-Code %q", res[0].RemoteMTA, res[0].Diagnostic)
	}
	wantResult(t, res[1], deliver.Sent, "2.0.0", "")
	if rcptsOf(mx1.messages()) != "ok@soft.example" || len(mx2.messages()) != 0 {
		t.Errorf("primary took %q, backup %q", rcptsOf(mx1.messages()), rcptsOf(mx2.messages()))
	}
	log := e.logText(t)
	if strings.Contains(log, ": host mx2.soft.example[127.0.0.3] said") && !strings.Contains(log, "status=deferred (host mx2.soft.example") {
		t.Errorf("final server's reply logged as skipped:\n%s", log)
	}
	if n := strings.Count(log, "said: 452"); n != 1 {
		t.Errorf("final reply logged %d times; want once (the delivery line):\n%s", n, log)
	}
	// A 5xx reply from a non-final server stays final.
	mx1.rcptErr["gone@soft.example"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	res = e.send(t, "soft.example", "s@example.net", "gone@soft.example")
	wantResult(t, res[0], deliver.Bounce, "5.1.1", "host mx1.soft.example[127.0.0.2] said: 550 5.1.1 No such user (in reply to RCPT TO command)")
	if res[0].RemoteMTA != "mx1.soft.example" || res[0].Diagnostic != "smtp; 550 5.1.1 No such user" {
		t.Errorf("Remote-MTA %q, Diagnostic-Code %q", res[0].RemoteMTA, res[0].Diagnostic)
	}
	if len(mx2.messages()) != 0 || mx2.conns.Load() != 1 {
		t.Errorf("backup saw %d connections, %d messages after a 5xx from the primary", mx2.conns.Load(), len(mx2.messages()))
	}
}

// TestSoftReplyCachedSession: a cached session to the primary that
// answers 4xx sends the recipient on to the backup, without a second
// connection to the primary.
func TestSoftReplyCachedSession(t *testing.T) {
	e, mx1, mx2 := softEnv(t, "smtp_connection_cache_time_limit = 10s\n")
	wantResult(t, e.send(t, "soft.example", "s@example.net", "r@soft.example")[0], deliver.Sent, "2.0.0", "")
	mx1.rcptErr["r@soft.example"] = grey451
	wantResult(t, e.send(t, "soft.example", "s@example.net", "r@soft.example")[0], deliver.Sent, "2.0.0", "")
	if mx1.conns.Load() != 1 || len(mx1.messages()) != 1 || len(mx2.messages()) != 1 {
		t.Errorf("primary: %d connections, %d messages; backup %d messages; want 1, 1, 1",
			mx1.conns.Load(), len(mx1.messages()), len(mx2.messages()))
	}
	// Both sessions are cached again: a third message uses the primary's.
	delete(mx1.rcptErr, "r@soft.example")
	wantResult(t, e.send(t, "soft.example", "s@example.net", "r@soft.example")[0], deliver.Sent, "2.0.0", "")
	if mx1.conns.Load() != 1 || mx2.conns.Load() != 1 || len(mx1.messages()) != 2 {
		t.Errorf("connections %d/%d, primary messages %d", mx1.conns.Load(), mx2.conns.Load(), len(mx1.messages()))
	}
}

// TestSoftReplyFallbackRelay: recipients the last MX kept go to
// smtp_fallback_relay, which is then the final server.
func TestSoftReplyFallbackRelay(t *testing.T) {
	port, lns := loopbackPort(t, 4, 2, 4)
	mx := startFake(t, lns[2], fakeOptions{})
	mx.rcptErr["r@soft.example"] = grey451
	fb := startFake(t, lns[4], fakeOptions{})
	dns, _ := dnsFor(t, "soft.example. MX 10 mx1.soft.example.", "mx1.soft.example. A 127.0.0.2")
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\nsmtp_fallback_relay = [127.0.0.4]\n", port))
	wantResult(t, e.send(t, "soft.example", "s@example.net", "r@soft.example")[0], deliver.Sent, "2.0.0", "")
	if len(fb.messages()) != 1 {
		t.Errorf("fallback relay got %d messages", len(fb.messages()))
	}
}

// TestSkippedServerLogLines: each server left behind is logged as Postfix
// logs it: a refused connection without a queue ID (smtp_connect.c), a
// lost connection or an error greeting with one (smtp_trouble.c).
func TestSkippedServerLogLines(t *testing.T) {
	port, lns := loopbackPort(t, 5, 3, 4, 5) // 127.0.0.2 refuses
	startRaw(t, lns[3], func(s *rawServer, c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "220 lost.example ESMTP\r\n")
		auditLine(br) // EHLO, then hang up
	})
	startRaw(t, lns[4], func(s *rawServer, c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "421 4.3.2 Service shutting down\r\n")
	})
	good := startFake(t, lns[5], fakeOptions{})
	dns, _ := dnsFor(t,
		"log.example. MX 10 mx1.log.example.", "mx1.log.example. A 127.0.0.2",
		"log.example. MX 20 mx2.log.example.", "mx2.log.example. A 127.0.0.3",
		"log.example. MX 30 mx3.log.example.", "mx3.log.example. A 127.0.0.4",
		"log.example. MX 40 mx4.log.example.", "mx4.log.example. A 127.0.0.5",
	)
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\n", port))
	env := "r@log.example"
	res := e.send(t, "log.example", "s@example.net", env)
	wantResult(t, res[0], deliver.Sent, "2.0.0", "")
	if res[0].Site {
		t.Error("Site set on a sent result")
	}
	if len(good.messages()) != 1 {
		t.Errorf("last MX got %d messages", len(good.messages()))
	}
	log := e.logText(t)
	for _, re := range []string{
		fmt.Sprintf(`smtp\[\d+\]: connect to mx1\.log\.example\[127\.0\.0\.2\]:%d: Connection refused\n`, port),
		`smtp\[\d+\]: [0-9A-Za-z]+: lost connection with mx2\.log\.example\[127\.0\.0\.3\] while performing the EHLO handshake\n`,
		`smtp\[\d+\]: [0-9A-Za-z]+: host mx3\.log\.example\[127\.0\.0\.4\] refused to talk to me: 421 4\.3\.2 Service shutting down\n`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("log lacks %s:\n%s", re, log)
		}
	}
	// The final server's trouble is in the delivery line only, but a
	// refused connection is always logged.
	e2 := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\n", port))
	res = e2.send(t, "[127.0.0.4]", "s@example.net", env)
	wantResult(t, res[0], deliver.Defer, "4.3.2", "host 127.0.0.4[127.0.0.4] refused to talk to me: 421 4.3.2 Service shutting down")
	if !res[0].Site || res[0].RemoteMTA != "127.0.0.4" || res[0].Diagnostic != "smtp; 421 4.3.2 Service shutting down" {
		t.Errorf("result %+v; want a site failure with Remote-MTA and Diagnostic-Code", res[0])
	}
	if n := strings.Count(e2.logText(t), "refused to talk to me"); n != 1 {
		t.Errorf("final server's greeting logged %d times; want once:\n%s", n, e2.logText(t))
	}
	res = e2.send(t, "[127.0.0.2]", "s@example.net", env)
	wantResult(t, res[0], deliver.Defer, "4.4.1", fmt.Sprintf("connect to 127.0.0.2[127.0.0.2]:%d: Connection refused", port))
	if res[0].RemoteMTA != "" || res[0].Diagnostic != "" {
		t.Errorf("connection failure with Remote-MTA %q, Diagnostic-Code %q", res[0].RemoteMTA, res[0].Diagnostic)
	}
	if !regexp.MustCompile(fmt.Sprintf(`smtp\[\d+\]: connect to 127\.0\.0\.2\[127\.0\.0\.2\]:%d: Connection refused\n`, port)).MatchString(e2.logText(t)) {
		t.Errorf("refused connection to the final server not logged:\n%s", e2.logText(t))
	}
}

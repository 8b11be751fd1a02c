package smtpclient

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/pkg/deliver"
)

// greeter answers every connection with one greeting line and closes it.
func greeter(t *testing.T, ln net.Listener, line string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(testTimeout))
			fmt.Fprintf(c, "%s\r\n", line)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Error("greeter did not stop")
		}
	})
}

// TestSiteFailure: a result says the destination failed (Site) when no
// server of it gave a working session, never for a reply about the
// message or a recipient, nor for a permanent failure.
func TestSiteFailure(t *testing.T) {
	port, lns := loopbackPort(t, 5, 2, 4, 5)
	mx := startFake(t, lns[2], fakeOptions{})
	mx.rcptErr["busy@example.com"] = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox busy"}
	greeter(t, lns[4], "421 4.3.2 Service not available")
	greeter(t, lns[5], "554 5.3.2 Go away")
	dns, srv := dnsFor(t, "null.example. MX 0 .")
	srv.ServFail("broken.example")
	e := newEnv(t, "smtp", dns+fmt.Sprintf("smtp_tcp_port = %d\nsmtp_connection_cache_time_limit = 0\n", port))
	for _, c := range []struct {
		name, nexthop string
		rcpts         []string
		st            deliver.Status
		site          bool
	}{
		{"refused", "[127.0.0.3]", []string{"a@example.com", "b@example.com"}, deliver.Defer, true},
		{"421 greeting", "[127.0.0.4]", []string{"a@example.com"}, deliver.Defer, true},
		{"554 greeting skipped", "[127.0.0.5]", []string{"a@example.com"}, deliver.Defer, true},
		{"DNS temporary failure", "broken.example", []string{"a@broken.example"}, deliver.Defer, true},
		{"null MX", "null.example", []string{"a@null.example"}, deliver.Bounce, false},
		{"recipient deferred", "[127.0.0.2]", []string{"busy@example.com"}, deliver.Defer, false},
		{"sent", "[127.0.0.2]", []string{"ok@example.com"}, deliver.Sent, false},
	} {
		res := e.send(t, c.nexthop, "s@example.net", c.rcpts...)
		if len(res) != len(c.rcpts) {
			t.Fatalf("%s: %d results", c.name, len(res))
		}
		for _, r := range res {
			if r.Status != c.st || r.Site != c.site {
				t.Errorf("%s: %s site=%v (%s %s), want %s site=%v", c.name, r.Status, r.Site, r.DSN, r.Text, c.st, c.site)
			}
		}
	}

	// A 5xx greeting is final when smtp_skip_5xx_greeting is off: a
	// bounce, no site failure.
	e = newEnv(t, "smtp", fmt.Sprintf("smtp_tcp_port = %d\nsmtp_skip_5xx_greeting = no\n", port))
	res := e.send(t, "[127.0.0.5]", "s@example.net", "a@example.com")
	if res[0].Status != deliver.Bounce || res[0].Site {
		t.Errorf("554 greeting not skipped: %s site=%v", res[0].Status, res[0].Site)
	}
}

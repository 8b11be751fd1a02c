package itest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// dialSMTP connects go-smtp's client with a deadline on the whole
// session, so a server that never answers fails the test instead of
// hanging it.
func dialSMTP(addr string) (*smtp.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	return smtp.NewClient(conn), nil
}

// send delivers one message with go-smtp's client and returns the final
// reply text.
func send(t *testing.T, addr, from string, to []string, body string) (string, error) {
	t.Helper()
	c, err := dialSMTP(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Hello("client.itest.test"); err != nil {
		return "", err
	}
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, c.Quit()
}

var receivedRE = regexp.MustCompile(`^Received: from client\.itest\.test \(localhost \[127\.0\.0\.1\]\)\n\tby mta\.itest\.test \(Postern\) with ESMTP id ([0-9A-Za-z]+)\n\tfor <user@itest\.test>; [A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z0-9+-]+\)\n`)

func TestSMTPToMaildir(t *testing.T) {
	in := NewInstance(t, Options{})
	body := "From: Sender <sender@example.org>\r\nTo: user@itest.test\r\nSubject: hello\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <first@example.org>\r\n\r\nline one\r\n.leading dot\r\n\r\nlast line\r\n"
	text, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"}, body)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if !strings.HasPrefix(text, "2.0.0 Ok: queued as ") {
		t.Errorf("final reply %q", text)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	files := in.WaitMaildir("itest.test/user", 1, 10*time.Second)
	got, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	head := "Return-Path: <sender@example.org>\nX-Original-To: user@itest.test\nDelivered-To: user@itest.test\n"
	if !strings.HasPrefix(string(got), head) {
		t.Fatalf("delivered file does not start with the delivery headers:\n%s", got)
	}
	rest := string(got[len(head):])
	m := receivedRE.FindStringSubmatch(rest)
	if m == nil {
		t.Fatalf("no Postfix-style Received: header:\n%s", rest)
	}
	if m[1] != id {
		t.Errorf("Received: id %s, queued as %s", m[1], id)
	}
	want := strings.ReplaceAll(body, "\r\n", "\n")
	if rest[len(m[0]):] != want {
		t.Errorf("body changed:\ngot  %q\nwant %q", rest[len(m[0]):], want)
	}
	fi, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != in.UID {
		t.Errorf("maildir file owned by %d, want %d", st.Uid, in.UID)
	}
	// The queue is empty once delivery is done, and the log tells the story
	// in Postfix's words.
	if !in.WaitLog(id+": removed", 5*time.Second) {
		t.Fatalf("no removed line:\n%s", in.Log())
	}
	log := in.Log()
	for _, re := range []string{
		`postern/smtpd\[\d+\]: connect from localhost\[127\.0\.0\.1\]`,
		`postern/smtpd\[\d+\]: ` + id + `: client=localhost\[127\.0\.0\.1\]`,
		`postern/cleanup\[\d+\]: ` + id + `: message-id=<first@example\.org>`,
		`postern/qmgr\[\d+\]: ` + id + `: from=<sender@example\.org>, size=\d+, nrcpt=1 \(queue active\)`,
		`postern/virtual\[\d+\]: ` + id + `: to=<user@itest\.test>, relay=virtual, delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent \(delivered to maildir\)`,
		`postern/qmgr\[\d+\]: ` + id + `: removed`,
		`postern/smtpd\[\d+\]: disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("log has no line matching %s", re)
		}
	}
	for _, q := range []string{"incoming", "active", "deferred"} {
		ents, _ := os.ReadDir(filepath.Join(in.Dir, "queue", q))
		if len(ents) != 0 {
			t.Errorf("queue %s not empty: %v", q, ents)
		}
	}
}

func TestMissingHeadersAdded(t *testing.T) {
	in := NewInstance(t, Options{})
	// The client connects from 127.0.0.1, an inet_interfaces address, so
	// cleanup completes the header (local_header_rewrite_clients default).
	if _, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"}, "Subject: bare\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(in.WaitMaildir("itest.test/user", 1, 10*time.Second)[0])
	for _, re := range []string{`(?m)^From: sender@example\.org$`, `(?m)^Date: [A-Z][a-z]{2}, `, `(?m)^Message-Id: <\d{14}\.[0-9A-Za-z]+@mta\.itest\.test>$`} {
		if !regexp.MustCompile(re).Match(got) {
			t.Errorf("no header matching %s in\n%s", re, got)
		}
	}
	// The added headers come before the empty line that ends the header.
	if !regexp.MustCompile(`Message-Id: [^\n]+\n\nbody\n$`).Match(got) {
		t.Errorf("headers not at the end of the header section:\n%s", got)
	}
}

func TestRecipientPolicy(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "mynetworks = 127.0.0.2/32"})
	c, err := dialSMTP(in.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.itest.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.org", nil); err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	err = c.Rcpt("nobody@itest.test", nil)
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) ||
		se.Message != "<nobody@itest.test>: Recipient address rejected: User unknown in virtual mailbox table" {
		t.Errorf("unknown user: %v", err)
	}
	err = c.Rcpt("someone@elsewhere.example", nil)
	if !errors.As(err, &se) || se.Code != 454 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) ||
		se.Message != "<someone@elsewhere.example>: Relay access denied" {
		t.Errorf("relay: %v", err)
	}
	if err := c.Rcpt("user@itest.test", nil); err != nil {
		t.Errorf("known user refused: %v", err)
	}
	c.Quit()
	if !in.WaitLog("NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 454 4.7.1 <someone@elsewhere.example>: Relay access denied; from=<a@example.org> to=<someone@elsewhere.example> proto=ESMTP helo=<client.itest.test>", 5*time.Second) {
		t.Errorf("no reject line:\n%s", in.Log())
	}
	if !in.WaitLog("disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1/3 quit=1 commands=4/6", 5*time.Second) {
		t.Errorf("no disconnect line with counts:\n%s", in.Log())
	}
}

func TestRejectUnauthDestination(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "mynetworks = 127.0.0.2/32\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination"})
	_, err := send(t, in.Addr, "a@example.org", []string{"someone@elsewhere.example"}, "Subject: x\r\n\r\nx\r\n")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("got %v, want 554 5.7.1", err)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "message_size_limit = 2000"})
	c, err := dialSMTP(in.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Hello("client.itest.test")
	if n, ok := c.MaxMessageSize(); !ok || n != 2000 {
		t.Errorf("SIZE = %d, %v", n, ok)
	}
	_, err = send(t, in.Addr, "a@example.org", []string{"user@itest.test"}, "Subject: big\r\n\r\n"+strings.Repeat("0123456789\r\n", 400))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 {
		t.Errorf("oversized message: %v, want 552", err)
	}
}

func TestBanner(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "smtpd_banner = $myhostname ESMTP test banner"})
	conn, err := net.DialTimeout("tcp", in.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "220 mta.itest.test ESMTP test banner\r\n" {
		t.Errorf("greeting %q, %v", line, err)
	}
}

func TestManyConcurrent(t *testing.T) {
	in := NewInstance(t, Options{})
	const sessions, per = 10, 10
	var wg sync.WaitGroup
	errs := make(chan error, sessions*per)
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				body := fmt.Sprintf("Subject: %d-%d\r\nMessage-ID: <%d.%d@itest>\r\n\r\nbody %d %d\r\n", s, i, s, i, s, i)
				if _, err := send(t, in.Addr, "a@example.org", []string{"user@itest.test", "other@itest.test"}, body); err != nil {
					errs <- err
				}
			}
		}(s)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	a := in.WaitMaildir("itest.test/user", sessions*per, 30*time.Second)
	b := in.WaitMaildir("itest.test/other", sessions*per, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	if n := len(in.WaitMaildir("itest.test/user", 0, time.Second)); n != len(a) || len(a) != sessions*per || len(b) != sessions*per {
		t.Errorf("got %d and %d messages (then %d), want %d each", len(a), len(b), n, sessions*per)
	}
}

func TestSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks is not installed (apt-get install swaks)")
	}
	in := NewInstance(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, swaks, "--server", in.Addr, "--from", "swaks@example.org", "--to", "user@itest.test",
		"--helo", "swaks.itest.test", "--header", "Subject: via swaks", "--body", "hello from swaks")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "<-  250 2.0.0 Ok: queued as ") {
		t.Errorf("swaks transcript lacks the queued reply:\n%s", out)
	}
	got, _ := os.ReadFile(in.WaitMaildir("itest.test/user", 1, 10*time.Second)[0])
	if !strings.Contains(string(got), "Subject: via swaks\n") || !strings.Contains(string(got), "\n\nhello from swaks\n") {
		t.Errorf("delivered:\n%s", got)
	}
}

func TestMbox(t *testing.T) {
	in := NewInstance(t, Options{})
	for i := 0; i < 2; i++ {
		if _, err := send(t, in.Addr, "a@example.org", []string{"mbox@itest.test"}, fmt.Sprintf("Subject: %d\r\n\r\nFrom here\r\nbody\r\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(in.Mail, "itest.test", "mbox")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Count(string(b), "\nFrom a@example.org  ") == 1 && strings.HasPrefix(string(b), "From a@example.org  ") {
			if strings.Count(string(b), "\n>From here\n") != 2 || !strings.HasSuffix(string(b), "body\n\n") {
				t.Errorf("mbox quoting or separators wrong:\n%s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mbox: %q\n%s", b, in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

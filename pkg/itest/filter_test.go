package itest

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// fakeFilter is an after-queue content filter in the manner of amavis: it
// takes a message over SMTP, adds "X-Filtered: yes" and re-injects it
// over SMTP into Postern's re-injection listener before it answers, so a
// failed re-injection fails the filter delivery.
type fakeFilter struct {
	reinject string
	srv      *smtp.Server
	ln       net.Listener
	mu       sync.Mutex
	got      int
}

type filterSession struct {
	f    *fakeFilter
	from string
	to   []string
}

func (s *filterSession) Reset()        { s.from, s.to = "", nil }
func (s *filterSession) Logout() error { return nil }
func (s *filterSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *filterSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *filterSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.f.mu.Lock()
	s.f.got++
	s.f.mu.Unlock()
	c, err := dialSMTP(s.f.reinject)
	if err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "re-injection failed: " + err.Error()}
	}
	defer c.Close()
	fail := func(err error) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "re-injection failed: " + err.Error()}
	}
	if err := c.Hello("filter.itest.test"); err != nil {
		return fail(err)
	}
	if err := c.Mail(s.from, nil); err != nil {
		return fail(err)
	}
	for _, to := range s.to {
		if err := c.Rcpt(to, nil); err != nil {
			return fail(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fail(err)
	}
	if _, err := w.Write(append([]byte("X-Filtered: yes\r\n"), b...)); err != nil {
		return fail(err)
	}
	if err := w.Close(); err != nil {
		return fail(err)
	}
	return c.Quit()
}

// startFilter listens on addr and re-injects into reinject; the test's
// cleanup stops it.
func startFilter(t *testing.T, addr, reinject string) *fakeFilter {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFilter{reinject: reinject, ln: ln}
	f.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &filterSession{f: f}, nil }))
	f.srv.Domain = "filter.itest.test"
	f.srv.ReadTimeout, f.srv.WriteTimeout = 30*time.Second, 30*time.Second
	go f.srv.Serve(ln)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fakeFilter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got
}

// filterInstance starts an instance whose main smtpd has extra main.cf
// lines and whose master.cf has the smtp transport and the re-injection
// listener of FILTER_README; it returns the instance, the filter port and
// the re-injection address.
func filterInstance(t *testing.T, mainCf func(filterPort int) string) (*Instance, int, string) {
	t.Helper()
	filterPort, reinjectPort := freePort(t), freePort(t)
	reinject := fmt.Sprintf("127.0.0.1:%d", reinjectPort)
	in := NewInstance(t, Options{
		MainCf: mainCf(filterPort) + "\nminimal_backoff_time = 1h\nmaximal_backoff_time = 2h\nsmtp_connect_timeout = 5s",
		MasterCf: "smtp unix - - n - - smtp\n" + reinject + " inet n - n - - smtpd -o content_filter= " +
			"-o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_address_mappings " +
			"-o smtpd_recipient_restrictions=permit_mynetworks,reject",
	})
	return in, filterPort, reinject
}

func readMaildir(t *testing.T, files []string) []string {
	t.Helper()
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestContentFilter is FILTER_README's advanced content filter: every
// message from the main smtpd goes to the filter, comes back through the
// re-injection listener (content_filter empty, no header checks, no
// address mappings) and is delivered once, filtered. always_bcc is added
// before the filter only, and header_checks, which would refuse filtered
// mail, are not applied after it. With the filter down the message is
// deferred and delivered once the filter is back.
func TestContentFilter(t *testing.T) {
	dir := t.TempDir()
	hc := filepath.Join(dir, "header_checks")
	os.WriteFile(hc, []byte("/^X-Filtered:/ REJECT filtered mail must not meet header_checks\n"), 0o644)
	in, filterPort, reinject := filterInstance(t, func(p int) string {
		return fmt.Sprintf("content_filter = smtp:[127.0.0.1]:%d\nalways_bcc = other@itest.test\nheader_checks = regexp:%s", p, hc)
	})
	f := startFilter(t, fmt.Sprintf("127.0.0.1:%d", filterPort), reinject)

	body := "From: sender@example.org\r\nTo: user@itest.test\r\nSubject: filter me\r\nMessage-ID: <filter1@example.org>\r\n\r\nbody\r\n"
	text, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"}, body)
	if err != nil {
		t.Fatalf("send: %v\n%s", err, in.Log())
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	for _, box := range []string{"itest.test/user", "itest.test/other"} {
		got := readMaildir(t, in.WaitMaildir(box, 1, 20*time.Second))
		if len(got) != 1 || strings.Count(got[0], "X-Filtered: yes\n") != 1 || !strings.Contains(got[0], "Subject: filter me\n") {
			t.Errorf("%s: %q", box, got)
		}
	}
	// Nothing more arrives: the re-injected message is neither filtered
	// again nor given a second BCC.
	time.Sleep(time.Second)
	for _, box := range []string{"itest.test/user", "itest.test/other"} {
		if n, _ := os.ReadDir(filepath.Join(in.Mail, box, "new")); len(n) != 1 {
			t.Errorf("%s: %d messages, want 1", box, len(n))
		}
	}
	if f.count() != 1 {
		t.Errorf("filter got %d messages, want 1", f.count())
	}
	log := in.Log()
	for _, re := range []string{
		`postern/smtp\[\d+\]: ` + id + `: to=<user@itest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:` + fmt.Sprint(filterPort) + `, .*status=sent`,
		`postern/smtp\[\d+\]: ` + id + `: to=<other@itest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:` + fmt.Sprint(filterPort) + `, .*status=sent`,
		`postern/virtual\[\d+\]: \w+: to=<user@itest\.test>, relay=virtual, .*status=sent`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("log lacks %s:\n%s", re, log)
		}
	}
	if strings.Contains(log, "reject: header X-Filtered") {
		t.Errorf("header_checks ran on the re-injected message:\n%s", log)
	}

	// The filter goes down: the message waits in deferred/.
	f.srv.Close()
	text, err = send(t, in.Addr, "sender@example.org", []string{"user@itest.test"}, strings.Replace(body, "filter1", "filter2", 1))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	id = strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	if !in.WaitLog(id+": to=<user@itest.test>, relay=none", 20*time.Second) {
		t.Fatalf("no deferral:\n%s", in.Log())
	}
	if !regexp.MustCompile(id + `: to=<user@itest\.test>, relay=none, .*status=deferred`).MatchString(in.Log()) {
		t.Errorf("not deferred:\n%s", in.Log())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(in.Dir, "queue", "deferred", id)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in deferred/:\n%s", id, in.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Back up: a flush delivers it, filtered, exactly once.
	f2 := startFilter(t, fmt.Sprintf("127.0.0.1:%d", filterPort), reinject)
	if out, err := in.Postern("flush"); err != nil {
		t.Fatalf("flush: %v %s", err, out)
	}
	got := readMaildir(t, in.WaitMaildir("itest.test/user", 2, 30*time.Second))
	if len(got) != 2 || strings.Count(got[1]+got[0], "X-Filtered: yes\n") != 2 {
		t.Errorf("after the flush: %q", got)
	}
	if f2.count() != 1 {
		t.Errorf("restarted filter got %d messages, want 1", f2.count())
	}
}

// TestFilterAndRedirectActions: a header_checks FILTER sends one message
// through the filter without content_filter set, and a body_checks
// REDIRECT delivers another to the redirect address only.
func TestFilterAndRedirectActions(t *testing.T) {
	dir := t.TempDir()
	hc := filepath.Join(dir, "header_checks")
	bc := filepath.Join(dir, "body_checks")
	os.WriteFile(bc, []byte("/^redirect this/ REDIRECT other@itest.test\n"), 0o644)
	in, filterPort, reinject := filterInstance(t, func(p int) string {
		os.WriteFile(hc, []byte(fmt.Sprintf("/^Subject: scan me/ FILTER smtp:[127.0.0.1]:%d\n", p)), 0o644)
		return "header_checks = regexp:" + hc + "\nbody_checks = regexp:" + bc
	})
	f := startFilter(t, fmt.Sprintf("127.0.0.1:%d", filterPort), reinject)

	if _, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"},
		"Subject: scan me\r\n\r\nbody\r\n"); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := readMaildir(t, in.WaitMaildir("itest.test/user", 1, 20*time.Second))
	if !strings.Contains(got[0], "X-Filtered: yes\n") {
		t.Errorf("FILTER action: not filtered: %q", got[0])
	}
	if f.count() != 1 {
		t.Errorf("filter got %d messages", f.count())
	}

	text, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"},
		"Subject: plain\r\n\r\nhello\r\nredirect this please\r\n")
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	got = readMaildir(t, in.WaitMaildir("itest.test/other", 1, 20*time.Second))
	if !strings.Contains(got[0], "redirect this please\n") || strings.Contains(got[0], "X-Filtered") ||
		!strings.Contains(got[0], "X-Original-To: user@itest.test\n") {
		t.Errorf("redirected message: %q", got[0])
	}
	if !in.WaitLog(id+": removed", 10*time.Second) {
		t.Fatalf("not removed:\n%s", in.Log())
	}
	if n, _ := os.ReadDir(filepath.Join(in.Mail, "itest.test/user", "new")); len(n) != 1 {
		t.Errorf("user got %d messages, want only the filtered one", len(n))
	}
	log := in.Log()
	for _, re := range []string{
		`postern/cleanup\[\d+\]: \w+: filter: header Subject: scan me from localhost\[127\.0\.0\.1\]; from=<sender@example\.org> to=<user@itest\.test> proto=ESMTP helo=<client\.itest\.test>: smtp:\[127\.0\.0\.1\]:\d+`,
		`postern/cleanup\[\d+\]: ` + id + `: redirect: body redirect this please from localhost\[127\.0\.0\.1\]; from=<sender@example\.org> to=<user@itest\.test> proto=ESMTP helo=<client\.itest\.test>: other@itest\.test`,
		`postern/virtual\[\d+\]: ` + id + `: to=<other@itest\.test>, orig_to=<user@itest\.test>, relay=virtual, .*status=sent`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("log lacks %s:\n%s", re, log)
		}
	}
}

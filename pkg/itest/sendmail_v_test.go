package itest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSendmailVerboseReport: "sendmail -v" to a recipient that is
// delivered and one that is deferred gets the sender one "Mail Delivery
// Status Report" listing both, after the first attempt only; the second
// attempt (postern flush) sends none, and plain sendmail none at all.
func TestSendmailVerboseReport(t *testing.T) {
	in := newSendmailInstance(t, Options{NoStart: true, MainCf: "minimal_backoff_time = 1h\nmaximal_backoff_time = 2h"})
	in.write("vmailbox", "user@itest.test itest.test/user/\nslow@itest.test itest.test/slow/\nsender@itest.test itest.test/sender/\n")
	in.Start()
	// A plain file where slow's Maildir should be: delivery is deferred.
	os.MkdirAll(filepath.Join(in.Mail, "itest.test"), 0755)
	blocker := filepath.Join(in.Mail, "itest.test", "slow")
	if err := os.WriteFile(blocker, []byte("in the way"), 0644); err != nil {
		t.Fatal(err)
	}
	pickedUp := regexp.MustCompile(`([0-9A-Za-z]+): uid=\d+ from=<sender@itest\.test>`)
	idOf := func(n int) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if m := pickedUp.FindAllStringSubmatch(in.Log(), -1); len(m) >= n {
				return m[n-1][1]
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %d not picked up:\n%s", n, in.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Plain sendmail: delivered, no report.
	r := in.Sendmail("sendmail", "Subject: plain\n\nno report\n", nil, "-f", "sender@itest.test", "user@itest.test")
	if r.Code != 0 {
		t.Fatalf("sendmail exit %d: %s", r.Code, r.Stderr)
	}
	plain := idOf(1)
	if !in.WaitLog(plain+": removed", 15*time.Second) {
		t.Fatalf("plain message not delivered:\n%s", in.Log())
	}
	in.WaitMaildir("itest.test/user", 1, 5*time.Second)

	// sendmail -v: one delivered, one deferred.
	r = in.Sendmail("sendmail", "Subject: verbose\nMessage-ID: <v1@itest.test>\n\nreport please\n", nil,
		"-v", "-f", "sender@itest.test", "user@itest.test", "slow@itest.test")
	if r.Code != 0 || r.Stdout != "" || r.Stderr != "" {
		t.Fatalf("sendmail -v: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	id := idOf(2)
	in.WaitMaildir("itest.test/user", 2, 15*time.Second)
	in.WaitQueueFiles("deferred", 1, 15*time.Second)
	reports := in.WaitMaildir("itest.test/sender", 1, 15*time.Second)
	if len(reports) != 1 {
		t.Fatalf("%d reports", len(reports))
	}
	msg := readFile(t, reports[0])
	hdr, rcpts := parseStatusReport(t, msg)
	if hdr.Get("Subject") != "Mail Delivery Status Report" || hdr.Get("Return-Path") != "<>" ||
		hdr.Get("From") != "Mail Delivery System <MAILER-DAEMON@mta.itest.test>" {
		t.Errorf("report header: %v", hdr)
	}
	if !strings.Contains(msg, "This is the mail system at host mta.itest.test.\n\nEnclosed is the mail delivery report that you requested.\n") ||
		!strings.Contains(msg, "X-Postern-Queue-ID: "+id+"\n") || !strings.Contains(msg, "Subject: verbose\n") ||
		strings.Contains(msg, "report please") {
		t.Errorf("report:\n%s", msg)
	}
	got := map[string]textproto.MIMEHeader{}
	for _, h := range rcpts {
		got[h.Get("Final-Recipient")] = h
	}
	if len(rcpts) != 2 {
		t.Fatalf("%d recipients reported:\n%s", len(rcpts), msg)
	}
	if h := got["rfc822; user@itest.test"]; h == nil || h.Get("Action") != "delivered" || h.Get("Status") != "2.0.0" || h.Get("Diagnostic-Code") == "" {
		t.Errorf("delivered recipient: %v\n%s", h, msg)
	}
	if h := got["rfc822; slow@itest.test"]; h == nil || h.Get("Action") != "delayed" || !strings.HasPrefix(h.Get("Status"), "4.") ||
		!strings.Contains(h.Get("Diagnostic-Code"), "maildir delivery failed") {
		t.Errorf("deferred recipient: %v\n%s", h, msg)
	}
	if n := strings.Count(in.Log(), id+": sender delivery status notification: "); n != 1 {
		t.Errorf("%d report log lines for %s", n, id)
	}

	// The second attempt delivers slow's copy and reports nothing.
	os.Remove(blocker)
	if out, err := in.Postern("flush"); err != nil {
		t.Fatalf("flush: %v %s", err, out)
	}
	in.WaitMaildir("itest.test/slow", 1, 15*time.Second)
	if !in.WaitLog(id+": removed", 15*time.Second) {
		t.Fatalf("not removed after the second attempt:\n%s", in.Log())
	}
	log := in.Log()
	if n := strings.Count(log, id+": sender delivery status notification: "); n != 1 {
		t.Errorf("%d report log lines for %s after the second attempt:\n%s", n, id, log)
	}
	if strings.Contains(log, plain+": sender delivery status notification: ") {
		t.Errorf("plain sendmail got a report:\n%s", log)
	}
	// Anything queued would have been logged above; give a stray report
	// the time to arrive anyway.
	time.Sleep(500 * time.Millisecond)
	if ents, _ := os.ReadDir(filepath.Join(in.Mail, "itest.test", "sender", "new")); len(ents) != 1 {
		t.Errorf("sender has %d messages, want the one report", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(in.Dir, "queue", "trace")); len(ents) != 0 {
		t.Errorf("trace/ not emptied: %d files", len(ents))
	}
}

// parseStatusReport returns the header of a multipart/report and the
// per-recipient field blocks of its message/delivery-status part.
func parseStatusReport(t *testing.T, msg string) (mail.Header, []textproto.MIMEHeader) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			t.Fatalf("no message/delivery-status part:\n%s", msg)
		}
		if err != nil {
			t.Fatal(err)
		}
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct != "message/delivery-status" {
			continue
		}
		b, _ := io.ReadAll(p)
		tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
		if _, err := tr.ReadMIMEHeader(); err != nil {
			t.Fatalf("per-message fields: %v", err)
		}
		var rcpts []textproto.MIMEHeader
		for {
			h, err := tr.ReadMIMEHeader()
			if len(h) > 0 {
				rcpts = append(rcpts, h)
			}
			if err != nil {
				return m.Header, rcpts
			}
		}
	}
}

package itest

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A recipient that fails permanently after the message was accepted: the
// sender gets an RFC 3464 report in its own Maildir.
func TestBounceToSender(t *testing.T) {
	in := NewInstance(t, Options{MainCf: fullMboxCf})
	fillMbox(t, in)
	body := "Subject: too big for mbox\r\nMessage-ID: <big@example.org>\r\n\r\n" + strings.Repeat("x", 300) + "\r\n"
	text, err := send(t, in.Addr, "user@itest.test", []string{"mbox@itest.test"}, body)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	files := in.WaitMaildir("itest.test/user", 1, 15*time.Second)
	raw, _ := os.ReadFile(files[0])
	if !strings.HasPrefix(string(raw), "Return-Path: <>\n") {
		t.Errorf("bounce not from the null sender:\n%s", raw)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if s := msg.Header.Get("Subject"); s != "Undelivered Mail Returned to Sender" {
		t.Errorf("subject %q", s)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("content type %q %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var status string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, p.Header.Get("Content-Type"))
		b, _ := io.ReadAll(p)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "message/delivery-status") {
			status = string(b)
		}
	}
	if len(types) != 3 {
		t.Fatalf("parts %v", types)
	}
	for _, want := range []string{"Final-Recipient: rfc822; mbox@itest.test", "Action: failed", "Status: 5.2.2"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
	if !in.WaitLog(id+": sender non-delivery notification: ", 5*time.Second) || !in.WaitLog(id+": removed", 5*time.Second) {
		t.Errorf("log:\n%s", in.Log())
	}
}

// fullMboxCf and fillMbox make deliveries to mbox@itest.test fail
// permanently (5.2.2, File too large) while Maildir deliveries, bounces
// included, fit: virtual_mailbox_limit bounds the mbox file, which
// fillMbox fills nearly to the limit, and each maildir file.
const fullMboxCf = "virtual_mailbox_limit = 20000"

func fillMbox(t *testing.T, in *Instance) {
	t.Helper()
	dir := filepath.Join(in.Mail, "itest.test")
	if err := os.MkdirAll(dir, 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mbox"), []byte(strings.Repeat("x", 19990)+"\n"), 0600); err != nil {
		t.Fatal(err)
	}
}

// virtual_mailbox_limit bounds each maildir file, as Postfix's virtual(8)
// does: a message whose delivered file would be larger bounces with 5.2.2
// and leaves nothing in the Maildir; a smaller one is delivered.
func TestMaildirFileLimit(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "virtual_mailbox_limit = 1500\nmessage_size_limit = 1600"})
	if _, err := send(t, in.Addr, "", []string{"user@itest.test"}, "Subject: small\r\n\r\nfits\r\n"); err != nil {
		t.Fatal(err)
	}
	in.WaitMaildir("itest.test/user", 1, 15*time.Second)
	// Under 1600 bytes with smtpd's Received: header; the delivered file
	// adds Return-Path and Delivered-To and passes 1500.
	if _, err := send(t, in.Addr, "", []string{"user@itest.test"}, "Subject: big\r\n\r\n"+strings.Repeat("z", 1230)+"\r\n"); err != nil {
		t.Fatal(err)
	}
	want := "dsn=5.2.2, status=bounced (maildir delivery failed: error writing message: File too large)"
	if !in.WaitLog(want, 15*time.Second) {
		t.Fatalf("want %q in\n%s", want, in.Log())
	}
	if n := countMaildir(in, "itest.test/user"); n != 1 {
		t.Errorf("%d messages in the Maildir, want 1", n)
	}
}

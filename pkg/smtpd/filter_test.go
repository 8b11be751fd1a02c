package smtpd

import (
	"strings"
	"testing"

	"postern/pkg/config"
	"postern/pkg/queue"
)

// TestReceiveOverride: with no_unknown_recipient_checks an unknown
// recipient of a virtual mailbox domain is accepted (the re-injection
// listener after a content filter); content_filter is recorded in the
// queue file.
func TestReceiveOverride(t *testing.T) {
	addr, qdir, _ := testServer(t, "content_filter = smtp:[127.0.0.1]:10024\nreceive_override_options = no_unknown_recipient_checks, no_header_body_checks\n")
	d := dial(t, addr)
	d.reply()
	d.cmd("EHLO client.example", "250-")
	d.cmd("MAIL FROM:<a@example.org>", "250 ")
	d.cmd("RCPT TO:<nobody@itest.test>", "250 ")
	d.cmd("DATA", "354 ")
	r := d.cmd("Subject: t\r\n\r\nbody\r\n.", "250 ")
	id := strings.TrimPrefix(r, "250 2.0.0 Ok: queued as ")
	m, err := queue.NewStore(qdir).Open(queue.Incoming, queue.ID(id))
	if err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	defer m.Close()
	if f := m.Envelope.Attrs["filter"]; f != "smtp:[127.0.0.1]:10024" {
		t.Errorf("filter %q", f)
	}
	d.cmd("QUIT", "221 ")
}

func TestReceiveOverrideUnknown(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader("receive_override_options = no_such\n"), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(cfg, nil); err == nil || !strings.Contains(err.Error(), "no_such") {
		t.Errorf("unknown option: %v", err)
	}
}

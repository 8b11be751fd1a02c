package itest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVirtualAliasExpansion: a recipient that virtual_alias_maps maps to
// itself and another mailbox is delivered to both.
func TestVirtualAliasExpansion(t *testing.T) {
	in := NewInstance(t, Options{NoStart: true})
	in.write("valias", "user@itest.test user@itest.test, other@itest.test\n")
	in.AppendMainCf("virtual_alias_maps = texthash:" + filepath.Join(in.Conf, "valias") + "\n")
	in.Start()
	if _, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"}, "Subject: alias\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	in.WaitMaildir("itest.test/user", 1, 10*time.Second)
	in.WaitMaildir("itest.test/other", 1, 10*time.Second)
}

// TestCanonicalHeaders: sender_canonical_maps and masquerade_domains
// rewrite the envelope sender and the From: and To: headers of mail
// received over SMTP.
func TestCanonicalHeaders(t *testing.T) {
	in := NewInstance(t, Options{NoStart: true})
	in.write("scanon", "jdoe@example.org john.doe@example.org\n")
	in.AppendMainCf("sender_canonical_maps = texthash:" + filepath.Join(in.Conf, "scanon") + "\nmasquerade_domains = example.net\n")
	in.Start()
	body := "From: John <jdoe@example.org>\r\nTo: user@itest.test, x@mx.example.net\r\nSubject: canon\r\n\r\nbody\r\n"
	if _, err := send(t, in.Addr, "jdoe@example.org", []string{"user@itest.test"}, body); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(in.WaitMaildir("itest.test/user", 1, 10*time.Second)[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"From: John <john.doe@example.org>\n", "To: user@itest.test, x@example.net\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	if !in.WaitLog("from=<john.doe@example.org>", 5*time.Second) {
		t.Errorf("envelope sender not rewritten:\n%s", in.Log())
	}
}

// TestHeaderBodyChecks: header_checks REJECT refuses the message at the
// end of DATA with 5.7.1 and logs Postfix's line; HOLD puts it in hold/;
// body_checks REPLACE rewrites a line; Bcc: is dropped
// (message_drop_headers).
func TestHeaderBodyChecks(t *testing.T) {
	in := NewInstance(t, Options{NoStart: true})
	in.write("header_checks", "/^Subject: .*viagra/ REJECT\n/^Subject: hold me/ HOLD\n")
	in.write("body_checks", "/^password: / REPLACE password: [removed]\n")
	in.AppendMainCf("header_checks = regexp:" + filepath.Join(in.Conf, "header_checks") +
		"\nbody_checks = regexp:" + filepath.Join(in.Conf, "body_checks") + "\n")
	in.Start()
	_, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"}, "Subject: cheap viagra\r\n\r\nbody\r\n")
	if err == nil || !strings.Contains(err.Error(), "message content rejected") {
		t.Errorf("reject: got %v", err)
	}
	if !in.WaitLog("reject: header Subject: cheap viagra from localhost[127.0.0.1]; from=<sender@example.org> to=<user@itest.test> proto=ESMTP helo=<client.itest.test>: 5.7.1 message content rejected", 5*time.Second) {
		t.Errorf("no reject line:\n%s", in.Log())
	}
	text, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"}, "Subject: hold me\r\n\r\nbody\r\n")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(in.Dir, "queue", "hold", id)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in hold/\n%s", id, in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"}, "Subject: ok\r\nBcc: hidden@example.org\r\n\r\npassword: hunter2\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(in.WaitMaildir("itest.test/user", 1, 10*time.Second)[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "Bcc:") || strings.Contains(string(got), "hunter2") || !strings.Contains(string(got), "password: [removed]\n") {
		t.Errorf("delivered:\n%s", got)
	}
}

// TestVirtualAliasLoop: an alias loop is refused temporarily at the end
// of DATA (451 4.7.1) with Postfix's warning in the log.
func TestVirtualAliasLoop(t *testing.T) {
	in := NewInstance(t, Options{NoStart: true})
	in.write("valias", "user@itest.test other@itest.test\nother@itest.test user@itest.test\n")
	in.AppendMainCf("virtual_alias_maps = texthash:" + filepath.Join(in.Conf, "valias") + "\nvirtual_alias_recursion_limit = 10\n")
	in.Start()
	_, err := send(t, in.Addr, "sender@example.org", []string{"user@itest.test"}, "Subject: loop\r\n\r\nbody\r\n")
	if err == nil || !strings.Contains(err.Error(), "451") {
		t.Errorf("loop: got %v", err)
	}
	if !in.WaitLog("unreasonable virtual_alias_maps map nesting for user@itest.test -- message not accepted", 5*time.Second) {
		t.Errorf("no warning:\n%s", in.Log())
	}
}

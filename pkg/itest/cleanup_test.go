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

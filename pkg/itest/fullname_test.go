package itest

import (
	"os"
	"strings"
	"testing"
	"time"
)

// sendmail -F names the sender in the From: header cleanup adds.
func TestSendmailFullName(t *testing.T) {
	in := newSendmailInstance(t, Options{})
	r := in.Sendmail("sendmail", "Subject: named\n\nbody\n", nil, "-F", "Ann Smith", "-f", "ann@itest.test", "user@itest.test")
	if r.Code != 0 {
		t.Fatalf("sendmail: exit %d: %s", r.Code, r.Stderr)
	}
	got, _ := os.ReadFile(in.WaitMaildir("itest.test/user", 1, 10*time.Second)[0])
	if !strings.Contains(string(got), "\nFrom: Ann Smith <ann@itest.test>\n") {
		t.Errorf("no From: with the full name:\n%s", got)
	}
}

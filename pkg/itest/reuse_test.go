package itest

import (
	"fmt"
	"testing"
	"time"
)

// TestReloadWithPooledCleanup: smtpd keeps its connection to cleanup
// between messages (handoff.Pool); after a reload the old cleanup still
// stops promptly (no kept connection holds it for server.GracefulTimeout)
// and the next messages reach the new cleanup without an error.
func TestReloadWithPooledCleanup(t *testing.T) {
	in := NewInstance(t, Options{})
	for i := 0; i < 3; i++ {
		if _, err := send(t, in.Addr, "a@example.org", []string{"user@itest.test"}, fmt.Sprintf("Subject: before %d\r\n\r\nbody\r\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	in.WaitMaildir("itest.test/user", 3, 10*time.Second)
	var cleanup int
	for pid, name := range in.Children() {
		if name == "cleanup" {
			cleanup = pid
		}
	}
	if cleanup == 0 {
		t.Fatalf("no cleanup among %v", in.Children())
	}
	in.AppendMainCf("smtpd_banner = $myhostname ESMTP reloaded")
	if out, err := in.Postern("reload"); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for alive(cleanup) {
		if time.Now().After(deadline) {
			t.Fatalf("old cleanup %d still running 15 s after reload:\n%s", cleanup, in.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		if _, err := send(t, in.Addr, "a@example.org", []string{"user@itest.test"}, fmt.Sprintf("Subject: after %d\r\n\r\nbody\r\n", i)); err != nil {
			t.Fatalf("send after reload: %v", err)
		}
	}
	in.WaitMaildir("itest.test/user", 6, 10*time.Second)
}

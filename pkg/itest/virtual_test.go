package itest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A virtual_gid_maps entry of 0 is refused as Postfix's virtual(8) does:
// the delivery defers with "mail system configuration error" and a
// warning names the table.
func TestVirtualGIDZero(t *testing.T) {
	in := NewInstance(t, Options{NoStart: true})
	in.AppendMainCf("virtual_gid_maps = static:0")
	in.Start()
	if _, err := send(t, in.Addr, "", []string{"user@itest.test"}, "Subject: gid 0\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	if !in.WaitLog("warning: recipient user@itest.test: bad gid 0 in virtual_gid_maps", 15*time.Second) {
		t.Fatalf("no warning:\n%s", in.Log())
	}
	if line := grepLines(in.Log(), "to=<user@itest.test>"); !strings.Contains(line, "dsn=4.3.5, status=deferred (mail system configuration error)") {
		t.Errorf("delivery: %s", line)
	}
}

// New mail beyond qmgr_message_active_limit waits in incoming/ and is
// taken in as room frees up, without a further wake-up from cleanup:
// twenty messages committed at once with a limit of 2 are all delivered
// long before qmgr's periodic scan.
func TestIncomingBeyondActiveLimit(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "qmgr_message_active_limit = 2"})
	const n = 20
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			_, err := send(t, in.Addr, "a@example.org", []string{"user@itest.test"}, fmt.Sprintf("Subject: m%d\r\n\r\nbody\r\n", i))
			errs <- err
		}(i)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	in.WaitMaildir("itest.test/user", n, 30*time.Second)
}

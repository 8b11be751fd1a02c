package itest

import (
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

package itest

import (
	"path/filepath"
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

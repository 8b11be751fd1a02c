package resolve

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKnownLocal(t *testing.T) {
	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases")
	if err := os.WriteFile(aliases, []byte("postmaster: root\nlist: a, b\n"), 0644); err != nil {
		t.Fatal(err)
	}
	r := testResolver(t, "recipient_delimiter = +\nalias_maps = hash:"+aliases+"\nlocal_recipient_maps = proxy:unix:passwd.byname $alias_maps\n")
	for rcpt, want := range map[string]bool{
		"root@mx.example.com":       true,
		"ROOT@localhost":            true,
		"root+tag@mx.example.com":   true,
		"postmaster@mx.example.com": true,
		"list@localhost":            true,
		"list+x@localhost":          true,
		"nosuchuser@localhost":      false,
		"nosuchuser@virt.example":   false,
		"nosuchuser@relay.example":  true,
	} {
		if got, err := r.Known(rcpt); got != want || err != nil {
			t.Errorf("Known(%s) = %v, %v; want %v", rcpt, got, err, want)
		}
	}
}

func TestKnownLocalEmptyMaps(t *testing.T) {
	r := testResolver(t, "local_recipient_maps =\n")
	if ok, err := r.Known("nosuchuser@localhost"); !ok || err != nil {
		t.Errorf("Known with empty local_recipient_maps = %v, %v", ok, err)
	}
}

// A missing alias file makes local lookups fail temporarily (smtpd answers
// 4xx) without stopping the resolver from being built.
func TestKnownLocalMissingAliases(t *testing.T) {
	r := testResolver(t, "alias_maps = hash:"+t.TempDir()+"/none\n")
	if _, err := r.Known("root@localhost"); err == nil {
		t.Error("Known with a missing alias file: no error")
	}
	if ok, err := r.Known("user@virt.example"); !ok || err != nil {
		t.Errorf("virtual lookup with a missing alias file = %v, %v", ok, err)
	}
}

package local

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"postern/pkg/config"
	"postern/pkg/table"
)

func testUnixAgent(t *testing.T, aliases, extra string) *unixAgent {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "aliases")
	if err := os.WriteFile(p, []byte(aliases), 0644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(strings.NewReader("myorigin = host.example\nrecipient_delimiter = +\nalias_maps = hash:"+p+".db\n"+strings.NewReplacer("$dir", dir, "$file", p).Replace(extra)), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	u, err := newUnixAgent(cfg, false, table.Options{NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestLookupAlias(t *testing.T) {
	u := testUnixAgent(t, "list: a, b\nlist+x: c\nowner-list: d\nPostmaster: root\n", "")
	for _, c := range []struct {
		local, value string
		found        bool
	}{
		{"list", "a, b", true},
		{"list+x", "c", true},
		{"list+y", "a, b", true},
		{"postmaster", "root", true},
		{"owner-list", "d", true},
	} {
		v, spec, found, err := u.lookupAlias(c.local)
		if err != nil || found != c.found || v != c.value || !strings.HasPrefix(spec, "hash:") {
			t.Errorf("lookupAlias(%q) = %q %q %v %v", c.local, v, spec, found, err)
		}
	}
	if _, _, found, err := u.lookupAlias("nobody-here"); found || err != nil {
		t.Errorf("lookupAlias(nobody-here) = %v %v", found, err)
	}
	// A missing table: a name not in the tables before it is a temporary
	// failure, not an unknown user.
	u = testUnixAgent(t, "list: a\n", "alias_maps = hash:$file, hash:$dir/missing\n")
	if _, _, found, err := u.lookupAlias("list"); !found || err != nil {
		t.Errorf("lookupAlias(list) before a missing table = %v %v", found, err)
	}
	if _, _, _, err := u.lookupAlias("nobody-here"); err == nil {
		t.Error("lookup through a missing alias table did not fail")
	}
}

func TestExpandAliasEntries(t *testing.T) {
	u := testUnixAgent(t, "x: y\n", "allow_mail_to_commands = forward\nallow_mail_to_files = alias\n")
	j := &recipientJob{u: u, addr: "joe@host.example", local: "joe", user: "joe"}
	self := j.expandList(table.SplitAliasValue(`a@example.org, "|/bin/true", \joe, b`), identity{uid: 1, gid: 1}, "alias", 0)
	if !self {
		t.Error("\\joe not seen as the recipient itself")
	}
	if !reflect.DeepEqual(j.forward, []string{"a@example.org", "b"}) {
		t.Errorf("forward = %q", j.forward)
	}
	if len(j.out) != 1 || j.out[0].DSN != "5.7.1" || j.out[0].Text != "mail to command is restricted" {
		t.Errorf("outcomes = %+v", j.out)
	}
}

func TestSourceOwner(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "aliases")
	os.WriteFile(p, nil, 0644)
	if got := sourceOwner("proxy:hash:" + p + ".db"); got != os.Getuid() {
		t.Errorf("sourceOwner = %d, want %d", got, os.Getuid())
	}
	if got := sourceOwner("inline:{a=b}"); got != 0 {
		t.Errorf("sourceOwner(inline) = %d", got)
	}
}

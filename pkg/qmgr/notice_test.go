package qmgr

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWantsNotice(t *testing.T) {
	for _, c := range []struct {
		notify, kind string
		want         bool
	}{
		{"", "FAILURE", true},
		{"", "DELAY", true},
		{"", "SUCCESS", false},
		{"NEVER", "FAILURE", false},
		{"NEVER", "DELAY", false},
		{"SUCCESS", "SUCCESS", true},
		{"SUCCESS", "FAILURE", false},
		{"success,delay", "DELAY", true},
		{"FAILURE, DELAY", "DELAY", true},
		{"FAILURE", "DELAY", false},
	} {
		if got := wantsNotice(c.notify, c.kind); got != c.want {
			t.Errorf("wantsNotice(%q, %s) = %v", c.notify, c.kind, got)
		}
	}
}

func TestSplitReason(t *testing.T) {
	for _, c := range []struct{ nexthop, def, code, text string }{
		{"5.1.2 No such domain", "5.0.0", "5.1.2", "No such domain"},
		{"No such domain", "5.0.0", "5.0.0", "No such domain"},
		{"4.3.2 busy", "5.0.0", "5.0.0", "4.3.2 busy"},
		{"4.3.2 busy", "4.0.0", "4.3.2", "busy"},
		{"2.0.0 fine", "5.0.0", "5.0.0", "2.0.0 fine"},
		{"5.1.1000 x", "5.0.0", "5.0.0", "5.1.1000 x"},
		{"", "5.0.0", "5.0.0", "Address is undeliverable"},
		{"5.7.1", "5.0.0", "5.0.0", "5.7.1"},
	} {
		code, text := splitReason(c.nexthop, c.def)
		if code != c.code || text != c.text {
			t.Errorf("splitReason(%q, %s) = %s %q, want %s %q", c.nexthop, c.def, code, text, c.code, c.text)
		}
	}
}

func TestRelayAgents(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "master.cf"), []byte(`smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
slow      unix  -       -       n       -       1       smtp
lmtp      unix  -       -       n       -       -       lmtp
virtual   unix  -       n       n       -       -       virtual
local     unix  -       n       n       -       -       local
smtp      inet  n       -       n       -       -       smtpd
`), 0644)
	m := relayAgents(dir, 100)
	for name, want := range map[string]bool{"smtp": true, "relay": true, "slow": true, "lmtp": true, "virtual": false, "local": false} {
		if m[name] != want {
			t.Errorf("%s: relayed %v, want %v", name, m[name], want)
		}
	}
	// Without master.cf the stock names stand in.
	m = relayAgents(filepath.Join(dir, "none"), 100)
	if !m["smtp"] || !m["relay"] || !m["lmtp"] || m["virtual"] {
		t.Errorf("fallback %v", m)
	}
}

package resolve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postern/pkg/config"
	"postern/pkg/table"
)

func testResolver(t *testing.T, extra string) *Resolver {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vmailbox"), []byte("user@virt.example virt.example/user/\n"), 0644)
	main := `myhostname = mx.example.com
mydomain = example.com
inet_interfaces = 127.0.0.1
virtual_mailbox_domains = virt.example
virtual_mailbox_maps = texthash:` + dir + `/vmailbox
virtual_alias_domains = alias.example
relay_domains = relay.example
` + extra
	cfg, err := config.Parse(strings.NewReader(main), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	cache := table.NewCache(table.Options{NoWatch: true})
	t.Cleanup(func() { cache.Close() })
	r, err := New(cfg, cache.Open)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolve(t *testing.T) {
	r := testResolver(t, "")
	for _, c := range []struct {
		rcpt               string
		class              Class
		transport, nexthop string
	}{
		{"root@mx.example.com", Local, "local", "mx.example.com"},
		{"root@localhost", Local, "local", "mx.example.com"},
		{"root@[127.0.0.1]", Local, "local", "mx.example.com"},
		{"root@[192.0.2.1]", Default, "smtp", "[192.0.2.1]"},
		{"user@Virt.Example", VirtualMailbox, "virtual", "virt.example"},
		{"x@alias.example", VirtualAlias, "error", "5.1.1 User unknown in virtual alias table"},
		{"x@relay.example", Relay, "relay", "relay.example"},
		{"x@elsewhere.example", Default, "smtp", "elsewhere.example"},
	} {
		res, err := r.Resolve(c.rcpt)
		if err != nil {
			t.Fatal(err)
		}
		if res.Class != c.class || res.Transport != c.transport || res.Nexthop != c.nexthop {
			t.Errorf("Resolve(%s) = %v %s:%s; want %v %s:%s", c.rcpt, res.Class, res.Transport, res.Nexthop, c.class, c.transport, c.nexthop)
		}
	}
}

func TestRelayhostAndTransports(t *testing.T) {
	r := testResolver(t, "relayhost = [smarthost.example]:587\nvirtual_transport = lmtp:unix:private/dovecot-lmtp\n")
	for rcpt, want := range map[string]string{
		"x@elsewhere.example": "smtp [smarthost.example]:587",
		"x@relay.example":     "relay [smarthost.example]:587",
		"user@virt.example":   "lmtp unix:private/dovecot-lmtp",
		"root@localhost":      "local mx.example.com",
	} {
		res, _ := r.Resolve(rcpt)
		if got := res.Transport + " " + res.Nexthop; got != want {
			t.Errorf("%s: %s, want %s", rcpt, got, want)
		}
	}
}

func TestAuthorizedAndKnown(t *testing.T) {
	r := testResolver(t, "")
	for rcpt, want := range map[string]bool{
		"a@mx.example.com":         true,
		"a@virt.example":           true,
		"a@relay.example":          true,
		"a@elsewhere.example":      false,
		"a%b@relay.example":        false,
		"a@elsewhere@virt.example": false,
	} {
		if got, _ := r.Authorized(rcpt); got != want {
			t.Errorf("Authorized(%s) = %v", rcpt, got)
		}
	}
	for rcpt, want := range map[string]bool{
		"user@virt.example":   true,
		"USER@virt.example":   true,
		"other@virt.example":  false,
		"x@alias.example":     false,
		"x@elsewhere.example": true,
	} {
		if got, err := r.Known(rcpt); got != want || err != nil {
			t.Errorf("Known(%s) = %v, %v", rcpt, got, err)
		}
	}
}

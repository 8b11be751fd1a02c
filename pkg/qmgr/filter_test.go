package qmgr

import (
	"strings"
	"testing"

	"postern/pkg/config"
	"postern/pkg/queue"
	"postern/pkg/resolve"
	"postern/pkg/table"
)

func TestFilterRoute(t *testing.T) {
	for _, c := range []struct {
		filter, addr, def       string
		transport, nexthop, err string
	}{
		{"smtp:[127.0.0.1]:10024", "a@example.org", "", "smtp", "[127.0.0.1]:10024", ""},
		{"lmtp:unix:/var/run/amavis.sock", "a@example.org", "", "lmtp", "unix:/var/run/amavis.sock", ""},
		{"amavis:", "a@Example.org", "", "amavis", "Example.org", ""},
		{"amavis", "a@example.org", "", "amavis", "example.org", ""},
		{"amavis:", "a@example.org", "[127.0.0.1]:10024", "amavis", "[127.0.0.1]:10024", ""},
		{"amavis:", "postmaster", "", "amavis", "mx.example.com", ""},
		{":[127.0.0.1]", "a@example.org", "", "", "", "no transport"},
	} {
		res, err := filterRoute(c.filter, c.addr, c.def, "mx.example.com")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.filter, err, c.err)
			}
			continue
		}
		if err != nil || res.Transport != c.transport || res.Nexthop != c.nexthop || res.Recipient != c.addr {
			t.Errorf("%s for %s: %+v %v, want %s %s", c.filter, c.addr, res, err, c.transport, c.nexthop)
		}
	}
}

// TestRouteFilterOverridesResolver: with a filter every recipient, local,
// virtual or remote, goes to it; without one the resolver decides.
func TestRouteFilterOverridesResolver(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader("myhostname = mx.example.com\nmydestination = example.com\nrelayhost = [relay.example.net]\n"), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	res, err := resolve.New(cfg, func(spec string) (table.Table, error) { return table.NewCache(table.Options{}).Open(spec) })
	if err != nil {
		t.Fatal(err)
	}
	q := &Qmgr{cfg: cfg, resolver: res}
	filtered := &queue.Envelope{Attrs: map[string]string{"filter": "smtp:[127.0.0.1]:10024"}}
	for _, addr := range []string{"user@example.com", "x@elsewhere.example"} {
		r, err := q.route(filtered, addr)
		if err != nil || r.Transport != "smtp" || r.Nexthop != "[127.0.0.1]:10024" {
			t.Errorf("%s filtered: %+v %v", addr, r, err)
		}
	}
	r, err := q.route(&queue.Envelope{}, "user@example.com")
	if err != nil || r.Transport != "local" {
		t.Errorf("unfiltered local: %+v %v", r, err)
	}
	r, err = q.route(&queue.Envelope{}, "x@elsewhere.example")
	if err != nil || r.Transport != "smtp" || r.Nexthop != "[relay.example.net]" {
		t.Errorf("unfiltered remote: %+v %v", r, err)
	}
}

package resolve

import (
	"os"
	"path/filepath"
	"testing"
)

// TestResolveFromSenderRelayhost: sender_dependent_relayhost_maps names
// the next hop of the relay and default classes for listed senders, over
// relayhost and the recipient domain; a transport's own next hop and
// transport_maps win over it, other classes ignore it (Postfix
// trivial-rewrite resolve.c).
func TestResolveFromSenderRelayhost(t *testing.T) {
	dir := t.TempDir()
	sdr := filepath.Join(dir, "sdr")
	tm := filepath.Join(dir, "transport")
	os.WriteFile(sdr, []byte("@special.example [sdr.example]:587\nnull@special.example DUNNO\n<> [bounces.example]\n"), 0o644)
	os.WriteFile(tm, []byte("pinned.example smtp:[pinned-relay.example]\n"), 0o644)
	base := "sender_dependent_relayhost_maps = texthash:" + sdr + "\ntransport_maps = texthash:" + tm + "\n"
	for _, c := range []struct {
		extra, sender, rcpt, nexthop string
	}{
		{"relayhost = [rh.example]\n", "a@special.example", "x@far.example", "[sdr.example]:587"},
		{"relayhost = [rh.example]\n", "a+tag@special.example", "x@relay.example", "[sdr.example]:587"},
		{"relayhost = [rh.example]\n", "a@plain.example", "x@far.example", "[rh.example]"},
		{"relayhost = [rh.example]\n", "null@special.example", "x@far.example", "[rh.example]"},
		{"relayhost = [rh.example]\n", "", "x@far.example", "[bounces.example]"},
		{"", "a@special.example", "x@far.example", "[sdr.example]:587"},
		{"", "a@plain.example", "x@far.example", "far.example"},
		{"relayhost = [rh.example]\n", "a@special.example", "x@pinned.example", "[pinned-relay.example]"},
		{"default_transport = smtp:[own.example]\n", "a@special.example", "x@far.example", "[own.example]"},
		{"", "a@special.example", "root@mx.example.com", "mx.example.com"},
		{"", "a@special.example", "user@virt.example", "virt.example"},
		{"empty_address_relayhost_maps_lookup_key = null@special.example\n", "", "x@far.example", "far.example"},
	} {
		r := testResolver(t, base+c.extra)
		res, err := r.ResolveFrom(c.sender, c.rcpt)
		if err != nil {
			t.Fatal(err)
		}
		if res.Nexthop != c.nexthop {
			t.Errorf("%sResolveFrom(%q, %q) next hop %q; want %q", c.extra, c.sender, c.rcpt, res.Nexthop, c.nexthop)
		}
		// Resolve without a sender never looks at the table.
		if res, _ := r.Resolve(c.rcpt); res.Nexthop == "[sdr.example]:587" {
			t.Errorf("Resolve(%q) used sender_dependent_relayhost_maps", c.rcpt)
		}
	}
}

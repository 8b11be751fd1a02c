package smtpd

import (
	"net/netip"
	"strings"
	"testing"

	"postern/pkg/config"
	"postern/pkg/matchlist"
	"postern/pkg/table"
)

// TestLocalHeaderRewriteClients: which clients get local header rewriting
// for each form of local_header_rewrite_clients.
func TestLocalHeaderRewriteClients(t *testing.T) {
	open := func(spec string) (table.Table, error) { return table.Open(spec, table.Options{NoWatch: true}) }
	nets, err := matchlist.Hosts([]string{"192.0.2.0/24"}, func(spec string) (matchlist.Lookuper, error) { return open(spec) })
	if err != nil {
		t.Fatal(err)
	}
	ifaces := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	for _, c := range []struct {
		value string
		local []string // clients rewritten as local; the others are not
	}{
		{"permit_inet_interfaces", []string{"127.0.0.1"}},
		{"permit_mynetworks", []string{"192.0.2.7"}},
		{"permit_inet_interfaces, permit_mynetworks", []string{"127.0.0.1", "192.0.2.7"}},
		{"check_address_map inline:{198.51.100.1=whatever}", []string{"198.51.100.1"}},
		{"static:all", []string{"127.0.0.1", "192.0.2.7", "198.51.100.1", "203.0.113.9"}},
		{"permit_sasl_authenticated", nil},
		{"", nil},
	} {
		cfg, err := config.Parse(strings.NewReader("local_header_rewrite_clients = "+c.value+"\n"), "main.cf")
		if err != nil {
			t.Fatal(err)
		}
		rc, err := parseRewriteClients(cfg.List("local_header_rewrite_clients"), open)
		if err != nil {
			t.Fatalf("%q: %v", c.value, err)
		}
		s := &Server{rewriteClients: rc, ifaces: ifaces, mynetworks: nets}
		for _, ip := range []string{"127.0.0.1", "192.0.2.7", "198.51.100.1", "203.0.113.9"} {
			want := false
			for _, l := range c.local {
				want = want || l == ip
			}
			if got := s.localClient(netip.MustParseAddr(ip)); got != want {
				t.Errorf("%q: client %s local = %v, want %v", c.value, ip, got, want)
			}
		}
	}
	for _, bad := range []string{"permit_everyone", "check_address_map"} {
		if _, err := parseRewriteClients(strings.Fields(bad), open); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

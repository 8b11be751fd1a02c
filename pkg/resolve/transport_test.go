package resolve

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTransportMaps(t *testing.T) {
	dir := t.TempDir()
	transport := `# transport(5) examples
joe+list@ext.example   relay:[lists.example]
joe@ext.example        smtp:[joe-gw.example]:2525
ext.example            slow:
.ext.example           :[sub-gw.example]
keep.example           :
.keep.example          :
virt.example           lmtp:unix:private/lmtp
dead.example           error:5.1.2 No such domain here
gone.example           error:
later.example          retry:4.3.2 Try later
mx.example.com         :
alias.example          smtp:should.not.apply
*                      smtp:[outbound.example]
`
	os.WriteFile(filepath.Join(dir, "transport"), []byte(transport), 0644)
	os.WriteFile(filepath.Join(dir, "transport.re"), []byte("/^special@/ local:\n/^nothing\\.test$/ smtp:[domain-key-sent-to-pattern-table]\n/@pattern\\.test$/ relay:\n"), 0644)
	r := testResolver(t, "recipient_delimiter = +\nrelayhost = [smarthost.example]\n"+
		"transport_maps = regexp:"+dir+"/transport.re texthash:"+dir+"/transport\n")
	for _, c := range []struct{ rcpt, want string }{
		// Full address, then user@domain without the extension.
		{"joe+list@ext.example", "relay [lists.example]"},
		{"joe+other@ext.example", "smtp [joe-gw.example]:2525"},
		{"JOE@Ext.Example", "smtp [joe-gw.example]:2525"},
		// domain: a transport without nexthop resets it to the domain,
		// not to relayhost.
		{"ann@ext.example", "slow ext.example"},
		// .domain matches subdomains only; an empty transport keeps the
		// class's and takes the nexthop.
		{"ann@a.b.ext.example", "smtp [sub-gw.example]"},
		// ":" changes nothing: relayhost stays.
		{"ann@keep.example", "smtp [smarthost.example]"},
		{"ann@x.keep.example", "smtp [smarthost.example]"},
		{"user@virt.example", "lmtp unix:private/lmtp"},
		{"ann@dead.example", "error 5.1.2 No such domain here"},
		{"ann@gone.example", "error Address is undeliverable"},
		{"ann@later.example", "retry 4.3.2 Try later"},
		{"root@mx.example.com", "local mx.example.com"},
		// The virtual alias class keeps its error result.
		{"x@alias.example", "error 5.1.1 User unknown in virtual alias table"},
		// The wildcard.
		{"ann@elsewhere.test", "smtp [outbound.example]"},
		{"root@localhost", "smtp [outbound.example]"},
		// A pattern table is searched with the full address only.
		{"special@elsewhere.test", "local elsewhere.test"},
		{"ann@pattern.test", "relay pattern.test"},
		{"ann@nothing.test", "smtp [outbound.example]"},
	} {
		res, err := r.Resolve(c.rcpt)
		if err != nil {
			t.Fatalf("%s: %v", c.rcpt, err)
		}
		if got := res.Transport + " " + res.Nexthop; got != c.want {
			t.Errorf("%s: %q, want %q", c.rcpt, got, c.want)
		}
	}
}

func TestTransportMapsPatternSpec(t *testing.T) {
	for spec, want := range map[string]bool{
		"hash:/etc/postfix/transport":                false,
		"texthash:/x":                                false,
		"regexp:/x":                                  true,
		"proxy:pcre:/x":                              true,
		"cidr:/x":                                    true,
		"unionmap:{texthash:/a, regexp:/b}":          true,
		"unionmap:{texthash:/a, texthash:/b}":        false,
		"inline:{ example.com=smtp:[gw], *=relay: }": false,
	} {
		if got := patternSpec(spec); got != want {
			t.Errorf("patternSpec(%s) = %v", spec, got)
		}
	}
}

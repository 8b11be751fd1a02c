package table

import (
	"testing"
)

func TestRegexp(t *testing.T) {
	src := `# access map
/[%!@].*[%!@]/       550 Sender-specified routing rejected
/^postmaster@/       OK
if !/^owner-/
/^(.*)-outgoing@(.*)$/  550 Use ${1}@${2} instead
endif
/^CaseSensitive$/i   exact case
/^(a)|(b)$/          one=$1 two=$(2) dollar=$$ $ end
!/@/                 no at sign
/^multi
  line@/             joined
/x\/y/               slash
` + ",^xay," + `               comma delimited
/^(\w+)\.example$/   $1
`
	p := writeFile(t, "access", src)
	for _, typ := range []string{"regexp", "pcre"} {
		tb, err := Open(typ+":"+p, Options{NoWatch: true})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if !isPattern(tb) {
			t.Errorf("%s is not a pattern table", typ)
		}
		checkQueries(t, tb, []query{
			{"a@b@c", "550 Sender-specified routing rejected", true},
			{"POSTMASTER@example.com", "OK", true},
			{"list-outgoing@example.com", "550 Use list@example.com instead", true},
			{"owner-list-outgoing@example.com", "", false},
			{"CaseSensitive", "exact case", true},
			{"casesensitive", "no at sign", true},
			{"b", "one= two=b dollar=$ $ end", true},
			{"multi  line@x", "joined", true},
			{"x/y@h", "slash", true},
			{"xay@a", "comma delimited", true},
			{"nothing@here", "", false},
		})
		tb.Close()
	}
}

func TestRegexpFlags(t *testing.T) {
	tests := []struct {
		typ  string
		rule string
		qs   []query
	}{
		{"regexp", "/^a.b$/ r", []query{{"A\nB", "r", true}}},
		{"regexp", "/^a.b$/m r", []query{{"a\nb", "", false}, {"x\naxb\ny", "r", true}}},
		{"pcre", "/^a.b$/ r", []query{{"a\nb", "r", true}}},
		{"pcre", "/^a.b$/s r", []query{{"a\nb", "", false}}},
		{"pcre", "/^b$/m r", []query{{"a\nb", "r", true}}},
		{"pcre", "/b/A r", []query{{"ab", "", false}, {"ba", "r", true}}},
		{"pcre", "/a.*b/U r$0", []query{{"aXbYb", "raXb", true}}},
		{"pcre", "/ a \\  b [ ] # comment/x r", []query{{"a b ", "r", true}, {"a  b ", "", false}, {"ab ", "", false}}},
		{"pcre", "/\\Qa.b\\E/ r", []query{{"a.b", "r", true}, {"axb", "", false}}},
		{"pcre", "/^\\d+$/EX r", []query{{"123", "r", true}}},
		{"regexp", "/^[[:digit:]]+$/ r", []query{{"123", "r", true}}},
	}
	for _, tt := range tests {
		tb, err := Open(tt.typ+":{ {"+tt.rule+"} }", Options{})
		if err != nil {
			t.Errorf("%s %s: %v", tt.typ, tt.rule, err)
			continue
		}
		t.Run(tt.typ+" "+tt.rule, func(t *testing.T) { checkQueries(t, tb, tt.qs) })
	}
}

func TestRegexpErrors(t *testing.T) {
	tests := []struct {
		typ string
		src string
		err []string
	}{
		{"pcre", "/(a)\\1/ x\n", []string{`f:1: pattern "(a)\\1" is not supported by the RE2 engine: invalid escape sequence`}},
		{"pcre", "/a(?=b)/ x\n", []string{`f:1: pattern "a(?=b)" is not supported by the RE2 engine`}},
		{"pcre", "/a(?<!b)/ x\n", []string{`f:1: pattern "a(?<!b)" is not supported`}},
		{"pcre", "/a*+/ x\n", []string{`f:1: pattern "a*+" is not supported`}},
		{"regexp", "/a/x x\n", []string{"f:1: basic (non-extended) regular expressions"}},
		{"regexp", "/a/s x\n", []string{`f:1: unknown regexp flag 's'`}},
		{"pcre", "/a/q x\n", []string{`f:1: unknown pcre flag 'q'`}},
		{"pcre", "/a/\n", []string{"f:1: missing result after pattern"}},
		{"pcre", "/a x\n", []string{`f:1: missing closing '/' after pattern`}},
		{"pcre", "abc x\n", []string{"f:1: pattern must start with a non-alphanumeric delimiter"}},
		{"pcre", "!/(a)/ $1\n", []string{"f:1: $1 substitution in the result of a negated pattern"}},
		{"pcre", "/(a)/ $2\n", []string{"f:1: substitution $2 but the pattern has 1 subexpressions"}},
		{"pcre", "/(a)/ $1abc\n", []string{"f:1: unsupported substitution $1abc"}},
		{"pcre", "/(a)/ ${1\n", []string{"f:1: unterminated ${ in result"}},
		{"pcre", "if /a/\n/b/ c\n", []string{"f:1: if without endif"}},
		{"pcre", "endif\n", []string{"f:1: endif without if"}},
		{"pcre", "if /a/ extra\nendif\n", []string{`f:1: text after if pattern: "extra"`}},
		{"pcre", "if /a(/\n/b/ c\nendif\n", []string{`f:1: pattern "a(" is not supported`}},
		{"pcre", "if /a/\nendif x\n", []string{`f:2: text after endif: "x"`}},
	}
	for _, tt := range tests {
		_, err := parseRx(rxDialect{name: tt.typ, pcre: tt.typ == "pcre"}, "f", tt.src)
		t.Run(tt.src, func(t *testing.T) { checkErrs(t, err, tt.err) })
	}
}

func TestRegexpNested(t *testing.T) {
	src := "if /@example\\.com$/\nif !/^admin/\n/^(.*)@/ user $1\nendif\n/./ admin\nendif\n/./ other\n"
	rules, err := parseRx(rxDialect{name: "pcre", pcre: true}, "f", src)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []query{
		{"joe@example.com", "user joe", true},
		{"admin@example.com", "admin", true},
		{"joe@example.org", "other", true},
	} {
		if v, ok := rxSearch(rules, q.key); v != q.value || ok != q.found {
			t.Errorf("%q: %q %v, want %q", q.key, v, ok, q.value)
		}
	}
}

func TestCIDR(t *testing.T) {
	src := `# client access
192.168.1.1             OK
192.168.0.0/16          REJECT
2001:db8::1             OK
[2001:db8::]/32         REJECT
if 10.0.0.0/8
10.1.0.0/16             ten-one
!10.2.0.0/16            ten-not-two
endif
if !172.16.0.0/12
0.0.0.0/0               v4-outside
endif
::/0                    v6
`
	p := writeFile(t, "client.cidr", src)
	tb, err := Open("cidr:"+p, Options{NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	checkQueries(t, tb, []query{
		{"192.168.1.1", "OK", true},
		{"[192.168.1.1]", "OK", true},
		{"192.168.1.2", "REJECT", true},
		{"2001:db8::1", "OK", true},
		{"2001:DB8:0:0:0:0:0:1", "OK", true},
		{"2001:db8::2", "REJECT", true},
		{"10.1.2.3", "ten-one", true},
		{"10.3.2.3", "ten-not-two", true},
		{"10.2.2.3", "v4-outside", true},
		{"172.16.1.1", "", false},
		{"::ffff:192.168.1.1", "OK", true},
		{"fe80::1", "v6", true},
		{"not-an-address", "", false},
		{"", "", false},
	})
}

func TestCIDRErrors(t *testing.T) {
	tests := []struct {
		src string
		err []string
	}{
		{"10.0.0.1/8 x\n", []string{`f:1: non-null host address bits in "10.0.0.1/8", perhaps you should use "10.0.0.0/8" instead`}},
		{"10.0.0.0/33 x\n", []string{`f:1: bad network prefix "10.0.0.0/33"`}},
		{"example.com x\n", []string{`f:1: bad network address "example.com"`}},
		{"010.0.0.0/8 x\n", []string{`f:1: bad network address "010.0.0.0"`}},
		{"10.0.0.0/8\n", []string{`f:1: missing result after "10.0.0.0/8"`}},
		{"if 10.0.0.0/8\n", []string{"f:1: if without endif"}},
		{"endif\n", []string{"f:1: endif without if"}},
		{"if 10.0.0.0/8 x\nendif\n", []string{`f:1: text after if pattern: "x"`}},
	}
	for _, tt := range tests {
		_, err := parseCIDR("f", tt.src)
		t.Run(tt.src, func(t *testing.T) { checkErrs(t, err, tt.err) })
	}
}

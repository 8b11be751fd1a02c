package table

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// recorder is a Table that answers from a map and records each query, so
// tests can check the order of queries.
type recorder struct {
	m       map[string]string
	queries []string
	pat     bool
}

func (r *recorder) Lookup(k string) (string, bool, error) {
	r.queries = append(r.queries, k)
	v, ok := r.m[k]
	return v, ok, nil
}
func (r *recorder) Close() error  { return nil }
func (r *recorder) pattern() bool { return r.pat }

func TestLookupAddressOrder(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		o       AddressOptions
		pattern bool
		queries []string
	}{
		{"extension, remote", "user+ext@example.com", AddressOptions{Delimiter: "+"}, false,
			[]string{"user+ext@example.com", "user@example.com", "@example.com"}},
		{"extension, local", "user+ext@example.com", AddressOptions{Delimiter: "+", LocalDomain: true}, false,
			[]string{"user+ext@example.com", "user@example.com", "user+ext", "user", "@example.com"}},
		{"no extension, local", "user@example.com", AddressOptions{Delimiter: "+", LocalDomain: true}, false,
			[]string{"user@example.com", "user", "@example.com"}},
		{"no delimiter set", "user+ext@example.com", AddressOptions{LocalDomain: true}, false,
			[]string{"user+ext@example.com", "user+ext", "@example.com"}},
		{"several delimiters, first found splits", "a-b+c@d", AddressOptions{Delimiter: "+-"}, false,
			[]string{"a-b+c@d", "a@d", "@d"}},
		{"owner- is not split", "owner-list@d", AddressOptions{Delimiter: "-"}, false,
			[]string{"owner-list@d", "@d"}},
		{"-request is not split", "list-request@d", AddressOptions{Delimiter: "-"}, false,
			[]string{"list-request@d", "@d"}},
		{"owner- split when special is off", "owner-list@d", AddressOptions{Delimiter: "-", NoOwnerRequestSpecial: true}, false,
			[]string{"owner-list@d", "owner@d", "@d"}},
		{"postmaster is not split", "Postmaster@d", AddressOptions{Delimiter: "t"}, false,
			[]string{"Postmaster@d", "@d"}},
		{"mailer-daemon is not split", "mailer-daemon@d", AddressOptions{Delimiter: "-", NoOwnerRequestSpecial: true}, false,
			[]string{"mailer-daemon@d", "@d"}},
		{"leading delimiter is not split", "+ext@d", AddressOptions{Delimiter: "+"}, false,
			[]string{"+ext@d", "@d"}},
		{"no domain", "user+ext", AddressOptions{Delimiter: "+"}, false,
			[]string{"user+ext", "user"}},
		{"pattern table: full address only", "user+ext@example.com", AddressOptions{Delimiter: "+", LocalDomain: true}, true,
			[]string{"user+ext@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{pat: tt.pattern}
			if _, ok, err := LookupAddress(r, tt.addr, tt.o); ok || err != nil {
				t.Fatalf("found %v, err %v", ok, err)
			}
			if !reflect.DeepEqual(r.queries, tt.queries) {
				t.Errorf("queries %q, want %q", r.queries, tt.queries)
			}
		})
	}
}

func TestLookupAddressExt(t *testing.T) {
	r := &recorder{m: map[string]string{"user@d": "u", "other": "o", "@d": "catch", "full+x@d": "f"}}
	tests := []struct {
		addr, value, ext string
		found            bool
	}{
		{"user+foo@d", "u", "+foo", true},
		{"full+x@d", "f", "", true},
		{"other+y@d", "o", "+y", true},
		{"nobody+z@d", "catch", "", true},
		{"x@e", "", "", false},
	}
	for _, tt := range tests {
		v, ext, ok, err := LookupAddressExt(r, tt.addr, AddressOptions{Delimiter: "+", LocalDomain: true})
		if err != nil || v != tt.value || ext != tt.ext || ok != tt.found {
			t.Errorf("%s: %q %q %v %v; want %q %q %v", tt.addr, v, ext, ok, err, tt.value, tt.ext, tt.found)
		}
	}
}

func TestLookupLocal(t *testing.T) {
	r := &recorder{m: map[string]string{"user": "u", "list-request": "lr"}}
	tests := []struct {
		local, delim, value string
		found               bool
		queries             []string
	}{
		{"user+ext", "+", "u", true, []string{"user+ext", "user"}},
		{"user", "+", "u", true, []string{"user"}},
		{"list-request", "-", "lr", true, []string{"list-request"}},
		{"x-request", "-", "", false, []string{"x-request"}},
		{"nobody+x", "+", "", false, []string{"nobody+x", "nobody"}},
	}
	for _, tt := range tests {
		r.queries = nil
		v, ok, err := LookupLocal(r, tt.local, tt.delim)
		if err != nil || v != tt.value || ok != tt.found || !reflect.DeepEqual(r.queries, tt.queries) {
			t.Errorf("%s: %q %v %v queries %q; want %q %v %q", tt.local, v, ok, err, r.queries, tt.value, tt.found, tt.queries)
		}
	}
}

func TestLookupAddressRealTables(t *testing.T) {
	p := writeFile(t, "virtual", "joe@example.com joe@elsewhere\n@example.com catchall@elsewhere\njoe local-joe\n")
	tb, err := Open("hash:"+p, Options{NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	rx, err := Open("pcre:{ {/^joe\\+(.*)@/ joe-$1} }", Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := Open("unionmap:{ pcre:{ {/^joe/ rx} }, inline:{ joe@example.com=fixed } }", Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		t     Table
		addr  string
		local bool
		want  string
		found bool
	}{
		{tb, "Joe+Sales@Example.COM", false, "joe@elsewhere", true},
		{tb, "ann@example.com", false, "catchall@elsewhere", true},
		{tb, "joe+x@example.org", true, "local-joe", true},
		{tb, "joe+x@example.org", false, "", false},
		{rx, "joe+sales@example.com", false, "joe-sales", true},
		{rx, "joe@example.com", false, "", false},
		{u, "joe@example.com", false, "rx,fixed", true},
		{u, "joe+x@example.com", false, "rx", true},
	}
	for _, tt := range tests {
		v, ok, err := LookupAddress(tt.t, tt.addr, AddressOptions{Delimiter: "+", LocalDomain: tt.local})
		if err != nil || v != tt.want || ok != tt.found {
			t.Errorf("%s: %q %v %v, want %q %v", tt.addr, v, ok, err, tt.want, tt.found)
		}
	}
}

func TestSplitAliasValue(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"a, b,c", []string{"a", "b", "c"}},
		{`"|/usr/bin/prog a, b", /var/mail/x`, []string{"|/usr/bin/prog a, b", "/var/mail/x"}},
		{`"a b"@example.com, c`, []string{`"a b"@example.com`, "c"}},
		{`"quote \" inside", x`, []string{`quote " inside`, "x"}},
		{`:include:/etc/postfix/list, ,  ,`, []string{":include:/etc/postfix/list"}},
		{`""`, []string{""}},
		{``, nil},
		{`"open, x`, []string{`"open, x`}},
	}
	for _, tt := range tests {
		if got := SplitAliasValue(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitAliasValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestReadInclude(t *testing.T) {
	p := writeFile(t, "list", "# members\na@example.com, b@example.com\nc@example.com,\n  d@example.com\n\n\"|/bin/cmd x\"\n")
	got, err := ReadInclude(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com", "|/bin/cmd x"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	bad := writeFile(t, "bad", "ok\n\"open\n")
	if _, err := ReadInclude(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":2: unbalanced") {
		t.Errorf("bad include: %v", err)
	}
	if _, err := ReadInclude(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Errorf("missing include: %v", err)
	}
}

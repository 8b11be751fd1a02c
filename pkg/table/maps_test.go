package table

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitSpecs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"hash:/etc/aliases, nis:mail.aliases", []string{"hash:/etc/aliases", "nis:mail.aliases"}, false},
		{"  inline:{ a=b, { c = d e } }\tregexp:/x ,", []string{"inline:{ a=b, { c = d e } }", "regexp:/x"}, false},
		{"", nil, false},
		{"inline:{a=b", nil, true},
	}
	for _, tt := range tests {
		got, err := SplitSpecs(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitSpecs(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestMaps(t *testing.T) {
	p := writeFile(t, "virtual", "joe@example.com from-hash\n@example.com hash-catchall\n")
	m, err := OpenMaps("pcre:{ {/^joe\\+/ from-pcre} }, hash:"+p+" inline:{ ann=from-inline }", Options{NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n := len(m.Tables()); n != 3 {
		t.Fatalf("%d tables", n)
	}
	tests := []struct {
		addr, want string
		local      bool
	}{
		// The full address goes to every table in order first.
		{"joe+x@example.com", "from-pcre", false},
		// Then user@domain (fixed tables only).
		{"joe+y@example.com", "from-pcre", false},
		{"joe@example.com", "from-hash", false},
		// user goes to the inline table only when the domain is local;
		// @domain comes last.
		{"ann+z@example.com", "hash-catchall", false},
		{"ann+z@example.org", "from-inline", true},
	}
	for _, tt := range tests {
		v, ok, err := LookupAddress(m, tt.addr, AddressOptions{Delimiter: "+", LocalDomain: tt.local})
		if err != nil || !ok || v != tt.want {
			t.Errorf("%s: %q %v %v, want %q", tt.addr, v, ok, err, tt.want)
		}
	}

	// Partial forms reach only the fixed members of a Maps.
	pat := &recorder{pat: true}
	fixed := &recorder{}
	LookupAddress(NewMaps(pat, fixed), "a+b@c", AddressOptions{Delimiter: "+"})
	if want := []string{"a+b@c"}; !reflect.DeepEqual(pat.queries, want) {
		t.Errorf("pattern member got %q, want %q", pat.queries, want)
	}
	if want := []string{"a+b@c", "a@c", "@c"}; !reflect.DeepEqual(fixed.queries, want) {
		t.Errorf("fixed member got %q, want %q", fixed.queries, want)
	}

	empty, err := OpenMaps("", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := LookupAddress(empty, "a@b", AddressOptions{}); ok || err != nil {
		t.Errorf("empty maps: %v %v", ok, err)
	}
	if _, err := OpenMaps("static:a, nosuch:b", Options{}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("bad member: %v", err)
	}
	if _, _, err := NewMaps(&recorder{}, NewMaps(failTable{"x"})).Lookup("k"); err == nil {
		t.Error("error from a member was not returned")
	}
}

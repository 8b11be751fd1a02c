package address

import "testing"

func TestSplitAndExtension(t *testing.T) {
	for _, c := range []struct{ in, local, domain string }{
		{"user@example.com", "user", "example.com"},
		{"\"a@b\"@example.com", "\"a@b\"", "example.com"},
		{"user", "user", ""},
		{"", "", ""},
	} {
		l, d := Split(c.in)
		if l != c.local || d != c.domain {
			t.Errorf("Split(%q) = %q, %q; want %q, %q", c.in, l, d, c.local, c.domain)
		}
	}
	if got := Domain("U@Example.COM."); got != "example.com" {
		t.Errorf("Domain = %q", got)
	}
	for _, c := range []struct{ in, delims, base, ext string }{
		{"user+foo", "+", "user", "foo"},
		{"user-foo+bar", "+-", "user", "foo+bar"},
		{"+foo", "+", "+foo", ""},
		{"user", "+", "user", ""},
		{"user+foo", "", "user+foo", ""},
	} {
		b, e := StripExtension(c.in, c.delims)
		if b != c.base || e != c.ext {
			t.Errorf("StripExtension(%q, %q) = %q, %q", c.in, c.delims, b, e)
		}
	}
}

func TestValid(t *testing.T) {
	for in, want := range map[string]bool{
		"a@b.c":         true,
		"postmaster":    true,
		"a b@c":         false,
		"@b":            false,
		"a@":            false,
		"a\r\n@b":       false,
		"<a@b>":         false,
		"":              true,
		"x@[127.0.0.1]": true,
	} {
		if got := Valid(in); got != want {
			t.Errorf("Valid(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestDupFilter(t *testing.T) {
	f := NewDupFilter(2)
	for _, c := range []struct {
		addr string
		seen bool
	}{
		{"a@x", false}, {"A@X", true}, {"b@x", false},
		{"c@x", false}, {"c@x", false}, // full: c is not remembered
		{"b@x", true},
	} {
		if got := f.Seen(c.addr); got != c.seen {
			t.Errorf("Seen(%q) = %v, want %v", c.addr, got, c.seen)
		}
	}
	u := NewDupFilter(0)
	for i := 0; i < 3; i++ {
		if u.Seen("same@x") != (i > 0) {
			t.Errorf("unlimited filter, call %d", i)
		}
	}
}

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

package sendmail

import (
	"slices"
	"strings"
	"testing"
)

func TestAddresses(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"user@example.org", []string{"user@example.org"}},
		{"a@x, b@y", []string{"a@x", "b@y"}},
		{"Joe <joe@example.org>", []string{"joe@example.org"}},
		{`"Doe, John" <john@example.org>, ann`, []string{"john@example.org", "ann"}},
		{"joe@example.org (Joe Q. Public)", []string{"joe@example.org"}},
		{"(comment, with comma) joe@example.org", []string{"joe@example.org"}},
		{"(nested (comment)) a@b", []string{"a@b"}},
		{"team: a@x, Bee <b@y>;, c@z", []string{"a@x", "b@y", "c@z"}},
		{"undisclosed-recipients:;", nil},
		{"<>", nil},
		{"", nil},
		{`"a b"@example.org`, []string{"a b@example.org"}},
		{`"a\"q"@x`, []string{`a"q@x`}},
		{"<@relay1,@relay2:user@example.org>", []string{"user@example.org"}},
		{"user@[192.0.2.1]", []string{"user@[192.0.2.1]"}},
		{"Joe <joe@x> <second@y>", []string{"joe@x"}},
		{"a@x,,b@y", []string{"a@x", "b@y"}},
		{"  spaced @ example.org  ", []string{"spaced@example.org"}},
		{"unterminated <a@x", []string{"a@x"}},
		{`"unterminated quote`, []string{"unterminated quote"}},
	}
	for _, tt := range tests {
		if got := Addresses(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Addresses(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzAddresses(f *testing.F) {
	for _, s := range []string{"a@b", "Joe <j@x>, g: a, b;", `"q\"x"@y (c (d))`, "<@r:u@d>", "[1.2.3.4]", "(((", `"`, "<"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, a := range Addresses(s) {
			if a == "" {
				t.Fatalf("empty address from %q", s)
			}
			if strings.ContainsAny(a, "<>,;") && !strings.Contains(s, `"`) && !strings.Contains(s, "[") {
				t.Fatalf("address %q from %q keeps a special outside quotes", a, s)
			}
		}
	})
}

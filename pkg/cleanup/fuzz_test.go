package cleanup

import "testing"

// FuzzRewriteAddrList: header values come from the network. Rewriting
// with the identity keeps the value; nothing panics.
func FuzzRewriteAddrList(f *testing.F) {
	for _, s := range []string{" a@b, c@d", ` "x, y" <a@b> (c)`, " g: a, <b>;", " <@r:u@h>", " <", ` "\`, " (((", " a\n\tb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got := rewriteAddrList(s, func(a string) string { return a }); got != s {
			t.Fatalf("identity changed %q to %q", s, got)
		}
		rewriteAddrList(s, func(a string) string { return "x@" + a })
		mediaType("Content-Type:" + s)
	})
}

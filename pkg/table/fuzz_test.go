package table

import (
	"reflect"
	"strings"
	"testing"
)

// Each fuzz target feeds arbitrary text to one parser and checks that it
// either reports an error or yields a table that answers lookups.

func FuzzPostmapSource(f *testing.F) {
	f.Add("key value\n")
	f.Add("# c\nFoo@Example.com a,\n  b\n@example.com c\n")
	f.Add("\"a b\"@x y\n\"q\\\"\" z\n")
	f.Add(" orphan\nk\nk: v\n\"open v\n")
	f.Fuzz(func(t *testing.T, src string) {
		e, _, err := parseText("f", src, Options{})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Errorf("error without file:line: %v", err)
			}
			return
		}
		if len(e.keys) != len(e.m) {
			t.Fatalf("%d keys, %d entries", len(e.keys), len(e.m))
		}
		for _, k := range e.keys {
			if k != strings.ToLower(k) {
				t.Errorf("key %q not folded", k)
			}
			if e.m[k] == "" {
				t.Errorf("key %q: empty value", k)
			}
		}
		// Writing the entries out and reading them back gives the same.
		var b strings.Builder
		for _, k := range e.keys {
			b.WriteString(k + " " + e.m[k] + "\n")
		}
		again, _, err := parseText("g", b.String(), Options{})
		if err != nil {
			t.Fatalf("re-reading %q: %v", b.String(), err)
		}
		if !reflect.DeepEqual(again.m, e.m) {
			t.Fatalf("round trip: %q became %q", e.m, again.m)
		}
	})
}

func FuzzAliasesSource(f *testing.F) {
	f.Add("root: admin\n")
	f.Add("\"my list\": a, \"|/bin/x y\",\n  :include:/etc/l\nempty: \"\"\n")
	f.Add("a@b: c\nx,y: z\nnocolon\n\"q\\\"x\": y\n")
	f.Fuzz(func(t *testing.T, src string) {
		e, _, err := parseText("f", src, Options{Aliases: true})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Errorf("error without file:line: %v", err)
			}
			return
		}
		for _, k := range e.keys {
			if k == "" || k != strings.TrimSpace(k) {
				t.Errorf("bad name %q", k)
			}
			SplitAliasValue(e.m[k])
		}
		var b strings.Builder
		for _, k := range e.keys {
			q := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(k)
			b.WriteString(`"` + q + `": ` + e.m[k] + "\n")
		}
		again, _, err := parseText("g", b.String(), Options{Aliases: true})
		if err != nil {
			t.Fatalf("re-reading %q: %v", b.String(), err)
		}
		if !reflect.DeepEqual(again.m, e.m) {
			t.Fatalf("round trip: %q became %q", e.m, again.m)
		}
	})
}

func fuzzRx(f *testing.F, d rxDialect) {
	f.Add("/^(.*)@example\\.com$/ ${1}@example.net\n", "joe@example.com")
	f.Add("if !/^owner-/\n/^(.*)-out@(.*)$/ $1 $(2) $$\nendif\n", "a-out@b")
	f.Add("!/@/ x\n/a.b/ims y\n#x\n /z/ w\n", "a\nb")
	f.Add("/ a \\  b [ #] # c/x r\n/\\Qa.b\\E/A $0\n", "a b ")
	f.Fuzz(func(t *testing.T, src, key string) {
		rules, err := parseRx(d, "f", src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Errorf("error without file:line: %v", err)
			}
			return
		}
		rxSearch(rules, key)
	})
}

func FuzzRegexpSource(f *testing.F) { fuzzRx(f, rxDialect{name: "regexp"}) }
func FuzzPCRESource(f *testing.F)   { fuzzRx(f, rxDialect{name: "pcre", pcre: true}) }

func FuzzCIDRSource(f *testing.F) {
	f.Add("192.168.0.0/16 REJECT\n2001:db8::1 OK\n", "192.168.1.1")
	f.Add("if !10.0.0.0/8\n!0.0.0.0/0 v6\nendif\n[::1] lo\n", "::1")
	f.Add("10.0.0.1/8 x\n", "[10.0.0.1]")
	f.Fuzz(func(t *testing.T, src, key string) {
		rules, err := parseCIDR("f", src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Errorf("error without file:line: %v", err)
			}
			return
		}
		if a, err := parseCIDRAddr(key); err == nil {
			cidrSearch(rules, a)
		}
	})
}

// FuzzInlineSpecs opens specs whose contents are all in the spec: inline,
// static, unionmap and pipemap of those, and inline regexp, pcre and cidr.
// File-backed types are left out so the fuzzer cannot open arbitrary files.
func FuzzInlineSpecs(f *testing.F) {
	f.Add("inline:", "{ a=b, { k = v w } }", "k")
	f.Add("static:", "{ text with spaces }", "x")
	f.Add("unionmap:", "{inline:{a=1}, static:s, pipemap:{inline:{a=b}, inline:{b=c}}}", "a")
	f.Add("regexp:", "{ {/^(.*)$/ $1}, {/x/ y} }", "x")
	f.Add("cidr:", "{ {10.0.0.0/8 a}, {if ::/0}, {::1 b}, {endif} }", "::1")
	f.Fuzz(func(t *testing.T, typ, name, key string) {
		switch typ {
		case "inline:", "static:", "regexp:", "pcre:", "cidr:":
		case "unionmap:", "pipemap:":
			elems, err := bracedList(name)
			if err != nil {
				return
			}
			for _, e := range elems {
				if !strings.HasPrefix(e, "inline:") && !strings.HasPrefix(e, "static:") &&
					!strings.HasPrefix(e, "fail:") && !strings.HasPrefix(e, "pipemap:{") && !strings.HasPrefix(e, "unionmap:{") {
					return
				}
				if strings.Contains(e, "hash:") || strings.Contains(e, "texthash:") || strings.Contains(e, "btree:") ||
					strings.Contains(e, "lmdb:") || strings.Contains(e, "cdb:") || strings.Contains(e, "unix:") ||
					strings.Contains(e, "proxy:") || strings.Contains(e, "regexp:") || strings.Contains(e, "pcre:") ||
					strings.Contains(e, "cidr:") {
					return
				}
			}
		default:
			return
		}
		if (typ == "regexp:" || typ == "pcre:" || typ == "cidr:") && !strings.HasPrefix(strings.TrimSpace(name), "{") {
			return
		}
		tb, err := Open(typ+name, Options{NoWatch: true})
		if err != nil {
			return
		}
		defer tb.Close()
		tb.Lookup(key)
		LookupAddress(tb, key, AddressOptions{Delimiter: "+-", LocalDomain: true})
		LookupLocal(tb, key, "+")
	})
}

func FuzzSplitAliasValue(f *testing.F) {
	f.Add(`a, "|/bin/x y, z", "a b"@c, "q\"x"`)
	f.Add("a@b,\n  c@d\n# x\n\"|cmd\"\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, e := range SplitAliasValue(s) {
			if e != strings.TrimSpace(e) && !strings.HasPrefix(strings.TrimSpace(e), `"`) {
				// Unquoted elements are trimmed; a quoted string may keep
				// inner white space at its ends.
				if !strings.Contains(s, `"`) {
					t.Errorf("element %q not trimmed", e)
				}
			}
		}
		parseInclude("f", s)
	})
}

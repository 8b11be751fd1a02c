package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary main.cf text through the parser, expansion,
// the typed getters, Check and an EditFile round trip: nothing may panic
// or hang, and an edited file must parse again with the new value.
func FuzzParse(f *testing.F) {
	f.Add("a = b\n  c\n# x\nd = ${a?{x}:{y}} $$ $(a) ${{1}<{2}?{l}}\n")
	f.Add("myhostname = $mydomain\nmydomain = $myhostname\n")
	f.Add("x = ${x:{${x}}}\ny = ${{$x}==level{3}}\n")
	f.Add("smtpd_relay_restrictions = inline:{ a=b, {c} } ,reject\n")
	if data, err := os.ReadFile("testdata/bench-main.cf"); err == nil {
		f.Add(string(data))
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(strings.NewReader(text), "main.cf")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "main.cf:") {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		for _, n := range c.Explicit() {
			c.Get(n)
			c.List(n)
			c.Duration(n)
			c.Size(n)
			c.Int(n)
			c.Bool(n)
		}
		c.Get("mydomain")
		c.Check(nil)

		dir := t.TempDir()
		path := filepath.Join(dir, "main.cf")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := EditFile(path, map[string]string{"fuzz_param": "v"}, []string{"a"}); err != nil {
			t.Fatal(err)
		}
		e, err := Load(dir)
		if err != nil {
			t.Fatalf("edited file does not parse: %v", err)
		}
		if v, _ := e.Raw("fuzz_param"); v != "v" {
			t.Fatalf("fuzz_param = %q after edit", v)
		}
		if _, set := e.Raw("a"); set {
			t.Fatal("a still set after remove")
		}
	})
}

// FuzzExpand expands arbitrary text against a small configuration.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"$x", "${x?{a}:{b}}", "$(x:y)", "${{a} <level {3.6} ? {o} : {n}}", "$$", "${", "$"} {
		f.Add(s)
	}
	c, err := Parse(strings.NewReader("x = X\ne =\nl = $l\n"), "main.cf")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := c.Expand(s)
		if err == nil && !strings.Contains(s, "$") && out != s {
			t.Fatalf("Expand(%q) = %q without any $", s, out)
		}
		SplitList(s)
		ParseDuration(s, 's')
		ParseSize(s)
	})
}

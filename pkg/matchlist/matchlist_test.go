package matchlist

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

type mapTable map[string]string

func (m mapTable) Lookup(k string) (string, bool, error) { v, ok := m[k]; return v, ok, nil }

func TestDomains(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "domains")
	os.WriteFile(file, []byte("# comment\nfile.example, other.example\n"), 0644)
	open := func(spec string) (Lookuper, error) { return mapTable{"table.example": "x"}, nil }
	l, err := Domains([]string{"Example.COM", ".sub.example", "!bad.sub.example", file, "hash:/x"}, open)
	if err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{
		"example.com":     true,
		"EXAMPLE.com.":    true,
		"a.example.com":   false,
		"x.sub.example":   true,
		"sub.example":     false,
		"bad.sub.example": true, // ".sub.example" comes first and wins
		"other.example":   true,
		"table.example":   true,
		"nowhere.example": false,
	} {
		got, err := l.MatchDomain(d)
		if err != nil || got != want {
			t.Errorf("MatchDomain(%q) = %v, %v; want %v", d, got, err, want)
		}
	}
	l2, _ := Domains([]string{"!bad.sub.example", ".sub.example"}, nil)
	if ok, _ := l2.MatchDomain("bad.sub.example"); ok {
		t.Error("negation first should refuse")
	}
	if _, err := Domains([]string{"hash:/x"}, nil); err == nil {
		t.Error("table without opener accepted")
	}
}

func TestHosts(t *testing.T) {
	l, err := Hosts([]string{"127.0.0.0/8", "[::1]/128", "192.0.2.7", "!10.1.0.0/16", "10.0.0.0/8"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{
		"127.0.0.1":        true,
		"::ffff:127.0.0.2": true,
		"::1":              true,
		"192.0.2.7":        true,
		"192.0.2.8":        false,
		"10.1.2.3":         false,
		"10.2.2.3":         true,
	} {
		got, err := l.MatchAddr(netip.MustParseAddr(a))
		if err != nil || got != want {
			t.Errorf("MatchAddr(%s) = %v, %v; want %v", a, got, err, want)
		}
	}
	if _, err := Hosts([]string{"10.0.0.1/8"}, nil); err == nil {
		t.Error("host bits accepted")
	}
	if _, err := Hosts([]string{"nonsense"}, nil); err == nil {
		t.Error("nonsense accepted")
	}
}

func FuzzCompile(f *testing.F) {
	f.Add("127.0.0.0/8 [::1]/128 !x.example .example.com")
	f.Fuzz(func(t *testing.T, s string) {
		var pats []string
		for _, p := range splitSpace(s) {
			if len(p) > 0 && p[0] == '/' {
				continue
			}
			pats = append(pats, p)
		}
		if l, err := Hosts(pats, nil); err == nil {
			l.MatchAddr(netip.MustParseAddr("127.0.0.1"))
		}
		if l, err := Domains(pats, nil); err == nil {
			l.MatchDomain("a.example.com")
		}
	})
}

func splitSpace(s string) []string {
	var out []string
	cur := ""
	for _, r := range s {
		if r == ' ' || r == ',' {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += string(r)
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

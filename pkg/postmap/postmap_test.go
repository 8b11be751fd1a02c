package postmap

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMain_(t *testing.T) {
	dir := t.TempDir()
	virtual := write(t, dir, "virtual", "# virtual\nJoe@Example.com joe@elsewhere\n@example.com catchall\nann@example.com ann1\nann@example.com ann2\n")
	aliases := write(t, dir, "aliases", "postmaster: root\nroot: admin@example.com,\n  \"|/usr/bin/prog x\"\n")
	broken := write(t, dir, "broken", "good 1\nbad\n\"open x\n")
	brokenAliases := write(t, dir, "broken-aliases", "root admin\n")
	rx := write(t, dir, "checks", "/^(.*)@example\\.org$/ $1\n")
	badRx := write(t, dir, "badrx", "/(a)\\1/ x\n")

	tests := []struct {
		name    string
		args    []string
		stdin   string
		code    int
		stdout  string
		stderr  []string // substrings
		noStder bool
	}{
		{name: "validate ok", args: []string{"postern map", "hash:" + virtual}, code: 0,
			stderr: []string{`warning: ` + virtual + `:5: duplicate entry: "ann@example.com"`}},
		{name: "validate quiet with -w", args: []string{"postern map", "-w", "hash:" + virtual}, code: 0, noStder: true},
		{name: "validate without type", args: []string{"postern map", virtual}, code: 0},
		{name: "validate broken", args: []string{"postern map", "hash:" + broken}, code: 1,
			stderr: []string{"error: " + broken + ":2: expected format: key whitespace value", "error: " + broken + `:3: unbalanced '"'`}},
		{name: "validate regexp", args: []string{"postern map", "regexp:" + rx, "pcre:" + rx}, code: 0, noStder: true},
		{name: "validate bad pcre", args: []string{"postern map", "pcre:" + badRx}, code: 1,
			stderr: []string{badRx + `:1: pattern "(a)\\1" is not supported by the RE2 engine`}},
		{name: "missing file", args: []string{"postern map", "hash:" + filepath.Join(dir, "nope")}, code: 1,
			stderr: []string{"no such file"}},
		{name: "query found", args: []string{"postern map", "-q", "JOE@example.COM", "hash:" + virtual}, code: 0,
			stdout: "joe@elsewhere\n"},
		{name: "query not found", args: []string{"postern map", "-q", "nobody@example.org", "hash:" + virtual}, code: 1},
		{name: "query is one key, not the address search", args: []string{"postern map", "-q", "x@example.com", "hash:" + virtual}, code: 1},
		{name: "query first table wins", args: []string{"postern map", "-q", "joe@example.org", "inline:{joe@example.org=first}", "regexp:" + rx}, code: 0,
			stdout: "first\n"},
		{name: "query second table", args: []string{"postern map", "-qjoe@example.org", "hash:" + virtual, "regexp:" + rx}, code: 0,
			stdout: "joe\n"},
		{name: "query stdin", args: []string{"postern map", "-q", "-", "hash:" + virtual}, stdin: "joe@example.com\nnobody\n@example.com\r\n", code: 0,
			stdout: "joe@example.com\tjoe@elsewhere\n@example.com\tcatchall\n"},
		{name: "query stdin none found", args: []string{"postern map", "-q", "-", "hash:" + virtual}, stdin: "x\ny\n", code: 1},
		{name: "query json", args: []string{"postern map", "-j", "-q", "joe@example.com", "hash:" + virtual}, code: 0,
			stdout: `{"joe@example.com":"joe@elsewhere"}` + "\n"},
		{name: "show", args: []string{"postern map", "-s", "-w", "hash:" + virtual}, code: 0,
			stdout: "joe@example.com\tjoe@elsewhere\n@example.com\tcatchall\nann@example.com\tann1\n"},
		{name: "show no fold", args: []string{"postern map", "-sfw", "hash:" + virtual}, code: 0,
			stdout: "Joe@Example.com\tjoe@elsewhere\n@example.com\tcatchall\nann@example.com\tann1\n"},
		{name: "show unlistable", args: []string{"postern map", "-s", "regexp:" + rx}, code: 1,
			stderr: []string{"cannot be listed"}},
		{name: "aliases with -a", args: []string{"postern map", "-a", "-q", "ROOT", "hash:" + aliases}, code: 0,
			stdout: "admin@example.com,  \"|/usr/bin/prog x\"\n"},
		{name: "aliases by program name", args: []string{"/usr/sbin/postalias", "-s", aliases}, code: 0,
			stdout: "postmaster:\troot\nroot:\tadmin@example.com,  \"|/usr/bin/prog x\"\n"},
		{name: "aliases source read as postmap", args: []string{"postern map", "hash:" + aliases}, code: 0,
			stderr: []string{"warning: " + aliases + `:1: record is in "key: value" format`}},
		{name: "postmap source read as aliases", args: []string{"postalias", brokenAliases}, code: 1,
			stderr: []string{"postalias: error: " + brokenAliases + ":1: need name:value pair"}},
		{name: "static and inline", args: []string{"postern map", "-q", "x", "static:{ a b }"}, code: 0, stdout: "a b\n"},
		{name: "lookup error", args: []string{"postern map", "-q", "x", "fail:test"}, code: 1, stderr: []string{"lookup failed"}},
		{name: "unknown type", args: []string{"postern map", "nosuch:x"}, code: 1, stderr: []string{`unsupported type "nosuch"`}},
		{name: "no table", args: []string{"postern map", "-q", "x"}, code: 1, stderr: []string{"no table given", "usage:"}},
		{name: "unknown option", args: []string{"postern map", "-Z", "x"}, code: 1, stderr: []string{"unknown option -Z"}},
		{name: "delete refused", args: []string{"postern map", "-d", "k", "hash:" + virtual}, code: 1, stderr: []string{"edit that file"}},
		{name: "-q and -s", args: []string{"postern map", "-s", "-q", "k", "hash:" + virtual}, code: 1, stderr: []string{"cannot be used together"}},
		{name: "ignored options", args: []string{"postern map", "-c", dir, "-vNnopruUw", "hash:" + virtual}, code: 0, noStder: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(tt.args, strings.NewReader(tt.stdin), &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, errb.String())
			}
			if out.String() != tt.stdout {
				t.Errorf("stdout %q, want %q", out.String(), tt.stdout)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr %q lacks %q", errb.String(), s)
				}
			}
			if tt.noStder && errb.Len() > 0 {
				t.Errorf("unexpected stderr %q", errb.String())
			}
		})
	}
}

func TestMainAlias(t *testing.T) {
	dir := t.TempDir()
	aliases := write(t, dir, "aliases", "root: admin\n")
	var out, errb bytes.Buffer
	// MainAlias implies -a whatever the program is called.
	if code := run([]string{"newaliases-test", "-q", "root", aliases}, strings.NewReader(""), &out, &errb, true); code != 0 || out.String() != "admin\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

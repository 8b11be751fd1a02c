package table

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// writeFile writes a table source into a temporary directory.
func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer is a bytes.Buffer safe for a logger used from the reload
// goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type query struct {
	key   string
	value string
	found bool
}

func checkQueries(t *testing.T, tb Table, qs []query) {
	t.Helper()
	for _, q := range qs {
		v, ok, err := tb.Lookup(q.key)
		if err != nil {
			t.Errorf("Lookup(%q): %v", q.key, err)
			continue
		}
		if ok != q.found || v != q.value {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", q.key, v, ok, q.value, q.found)
		}
	}
}

func TestLogicalLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []logicalLine
		err  string
	}{
		{"simple", "a b\nc d\n", []logicalLine{{1, "a b"}, {2, "c d"}}, ""},
		{"no final newline", "a b", []logicalLine{{1, "a b"}}, ""},
		{"continuation", "abc\n def\n", []logicalLine{{1, "abc def"}}, ""},
		{"comment inside continuation", "abc\n#x\n ghi", []logicalLine{{1, "abc ghi"}}, ""},
		{"indented comment inside continuation", "abc\n #x\n ghi", []logicalLine{{1, "abc ghi"}}, ""},
		{"blank inside continuation", "abc\n\n \n ghi\nj", []logicalLine{{1, "abc ghi"}, {5, "j"}}, ""},
		{"crlf", "a b\r\n c\r\n", []logicalLine{{1, "a b c"}}, ""},
		{"comments and blanks", "# c\n\n   \n\t# d\nk v\n", []logicalLine{{5, "k v"}}, ""},
		{"orphan continuation", " abc\nk v\n", []logicalLine{{2, "k v"}}, "f:1: logical line must not start"},
		{"empty", "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := logicalLines("f", tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.err)) {
				t.Errorf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestBracedList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"{a, b c}", []string{"a", "b", "c"}, false},
		{"{ a=b, { k = v w } }", []string{"a=b", "{ k = v w }"}, false},
		{"{inline:{a=b}, static:{x y}}", []string{"inline:{a=b}", "static:{x y}"}, false},
		{"{}", nil, false},
		{"a, b", nil, true},
		{"{a{}", nil, true},
		{"{a}}", nil, true},
	}
	for _, tt := range tests {
		got, err := bracedList(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("bracedList(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestPostmapSource(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		want  map[string]string
		warns []string
		err   []string
	}{
		{
			name: "basic",
			src:  "# virtual\nFoo@Example.COM   bar@example.net,\n\tbaz@example.net\n@example.com catchall\n",
			want: map[string]string{"foo@example.com": "bar@example.net,\tbaz@example.net", "@example.com": "catchall"},
		},
		{
			name: "quoted key keeps its quotes",
			src:  `"a b"@example.com  x` + "\n" + `"q\"uote" y` + "\n",
			want: map[string]string{`"a b"@example.com`: "x", `"q\"uote"`: "y"},
		},
		{
			name:  "duplicate: first wins",
			src:   "a 1\nA 2\n",
			want:  map[string]string{"a": "1"},
			warns: []string{`f:2: duplicate entry: "a" (first at line 1 wins)`},
		},
		{
			name:  "alias format warning",
			src:   "root: admin\n",
			want:  map[string]string{"root:": "admin"},
			warns: []string{`f:1: record is in "key: value" format`},
		},
		{
			name: "errors",
			src:  " orphan\nok 1\nnovalue\n\"open quote x\nkey: \n",
			err:  []string{"f:1: logical line must not start", "f:3: expected format: key whitespace value", `f:4: unbalanced '"' in key`, "f:5: expected format: key whitespace value; the record is in \"key: value\""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, warns, err := parseText("f", tt.src, Options{})
			checkErrs(t, err, tt.err)
			if len(warns) != len(tt.warns) {
				t.Errorf("warnings %v, want %v", warns, tt.warns)
			}
			for i := range min(len(warns), len(tt.warns)) {
				if !strings.HasPrefix(warns[i].Error(), tt.warns[i]) {
					t.Errorf("warning %q, want prefix %q", warns[i], tt.warns[i])
				}
			}
			if tt.err != nil {
				return
			}
			if !reflect.DeepEqual(e.m, tt.want) {
				t.Errorf("entries %q, want %q", e.m, tt.want)
			}
		})
	}
}

// checkErrs checks that err holds exactly the wanted messages (by prefix).
func checkErrs(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("errors:\n%s\nwant %d: %q", err, len(want), want)
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %q, want prefix %q", got[i], want[i])
		}
	}
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Errorf("error %v holds no *SyntaxError", err)
	}
}

func TestAliasesSource(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want map[string]string
		err  []string
	}{
		{
			name: "basic",
			src:  "# aliases\nPostmaster: root\nroot:\tadmin@example.com,\n   \"|/usr/bin/prog arg\"\n\"my list\": a, b\nempty: \"\"\nq\\:x: y\n",
			want: map[string]string{
				"postmaster": "root",
				"root":       "admin@example.com,   \"|/usr/bin/prog arg\"",
				"my list":    "a, b",
				"empty":      `""`,
				"q:x":        "y",
			},
		},
		{
			name: "quoted special characters in name",
			src:  "\"a@b:c\": x\n",
			want: map[string]string{"a@b:c": "x"},
		},
		{
			name: "errors",
			src:  "no colon here\nuser@example.com: x\na,b: c\nnovalue:\n: x\n\"open: x\n",
			err: []string{
				"f:1: need name:value pair (no ':')",
				"f:2: name must be local and have no domain",
				"f:3: need name:value pair (comma in name)",
				"f:4: need name:value pair (empty value",
				"f:5: need name:value pair (empty name)",
				"f:6: unbalanced '\"' in name",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _, err := parseText("f", tt.src, Options{Aliases: true})
			checkErrs(t, err, tt.err)
			if tt.err == nil && !reflect.DeepEqual(e.m, tt.want) {
				t.Errorf("entries %q, want %q", e.m, tt.want)
			}
		})
	}
}

func TestOpenText(t *testing.T) {
	p := writeFile(t, "virtual", "User@Example.com u1\nother v\n")
	for _, typ := range []string{"texthash", "hash", "btree", "lmdb", "cdb"} {
		for _, suffix := range []string{"", ".db", ".cdb", ".lmdb"} {
			tb, err := Open(typ+":"+p+suffix, Options{NoWatch: true})
			if err != nil {
				t.Fatalf("%s%s: %v", typ, suffix, err)
			}
			checkQueries(t, tb, []query{
				{"user@example.com", "u1", true},
				{"USER@EXAMPLE.COM", "u1", true},
				{"OTHER", "v", true},
				{"missing", "", false},
			})
			tb.Close()
		}
	}
	tb, err := Open("hash:"+p, Options{NoWatch: true, NoFold: true})
	if err != nil {
		t.Fatal(err)
	}
	checkQueries(t, tb, []query{{"User@Example.com", "u1", true}, {"user@example.com", "", false}})
	var got []string
	tb.(Walker).Walk(func(k, v string) bool { got = append(got, k+"="+v); return true })
	if want := []string{"User@Example.com=u1", "other=v"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Walk: %q, want %q", got, want)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, "bad", "ok 1\nbroken\n")
	tests := []struct {
		spec string
		want string
	}{
		{"hash:" + filepath.Join(dir, "missing"), "no such file"},
		{"nosuch:/etc/x", `unsupported type "nosuch" (supported: btree, cdb, cidr,`},
		{"/etc/postfix/virtual", "expected type:name"},
		{"hash:", "missing file name"},
		{"hash:" + bad, bad + ":2: expected format"},
		{"inline:{a}", "inline:{a}:1: expected key=value"},
		{"inline:a=b", "expected { ... }"},
		{"unionmap:{}", "no tables listed"},
		{"pipemap:{static:x, nosuch:y}", "unsupported type"},
		{"regexp:{ {/a(/ x} }", `regexp:{ {/a(/ x} }:1: pattern "a(" is not supported`},
		{"cidr:{ {10.0.0.1/8 x} }", "non-null host address bits"},
		{"unix:shadow.byname", "unknown unix table"},
	}
	for _, tt := range tests {
		_, err := Open(tt.spec, Options{NoWatch: true})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%q) = %v, want error containing %q", tt.spec, err, tt.want)
		}
	}
}

func TestTypes(t *testing.T) {
	for _, typ := range Types() {
		if typ != "proxy" && openerFor(typ) == nil {
			t.Errorf("Types lists %q but Open has no opener", typ)
		}
	}
}

func TestSimpleTables(t *testing.T) {
	tests := []struct {
		spec string
		qs   []query
	}{
		{"static:OK", []query{{"anything", "OK", true}}},
		{"static:{ text with spaces }", []query{{"x", "text with spaces", true}}},
		{"inline:{ Key1=v1, key2=v2 { key3 = value with spaces } }", []query{
			{"key1", "v1", true}, {"KEY2", "v2", true}, {"key3", "value with spaces", true}, {"key4", "", false},
		}},
		{"inline:{example.com=reject_unverified_recipient}", []query{{"example.com", "reject_unverified_recipient", true}}},
		{"unionmap:{inline:{a=1, b=2}, inline:{a=3}, static:s}", []query{{"a", "1,3,s", true}, {"b", "2,s", true}}},
		{"unionmap:{inline:{a=1}, inline:{a=3}}", []query{{"x", "", false}}},
		{"pipemap:{inline:{a=b}, inline:{b=c}}", []query{{"a", "c", true}, {"b", "", false}}},
		{"proxy:inline:{a=b}", []query{{"A", "b", true}}},
		{"regexp:{ {/^(.*)@example\\.com$/ ${1}@example.net}, {/x/ y} }", []query{{"Joe@Example.COM", "Joe@example.net", true}}},
		{"cidr:{ {10.0.0.0/8 internal}, {::1 loopback} }", []query{{"10.1.2.3", "internal", true}, {"[::1]", "loopback", true}}},
	}
	for _, tt := range tests {
		tb, err := Open(tt.spec, Options{NoWatch: true})
		if err != nil {
			t.Errorf("Open(%q): %v", tt.spec, err)
			continue
		}
		t.Run(tt.spec, func(t *testing.T) { checkQueries(t, tb, tt.qs) })
		tb.Close()
	}
}

func TestFail(t *testing.T) {
	for _, spec := range []string{"fail:x", "unionmap:{static:a, fail:y}", "pipemap:{static:a, fail:y}"} {
		tb, err := Open(spec, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tb.Lookup("k"); err == nil {
			t.Errorf("%s: lookup did not fail", spec)
		}
		if _, _, err := LookupAddress(tb, "a+b@c", AddressOptions{Delimiter: "+"}); err == nil {
			t.Errorf("%s: LookupAddress did not fail", spec)
		}
	}
}

func TestUnix(t *testing.T) {
	tb, err := Open("proxy:unix:passwd.byname", Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, ok, err := tb.Lookup("root")
	if err != nil || !ok || !strings.HasPrefix(v, "root:") {
		t.Errorf("Lookup(root) = %q, %v, %v", v, ok, err)
	}
	if _, ok, err := tb.Lookup("no-such-user-postern"); ok || err != nil {
		t.Errorf("Lookup(no-such-user) = %v, %v", ok, err)
	}
	gt, _ := Open("unix:group.byname", Options{})
	if v, ok, err := gt.Lookup("root"); err != nil || !ok || !strings.HasPrefix(v, "root:") {
		t.Errorf("group Lookup(root) = %q, %v, %v", v, ok, err)
	}
}

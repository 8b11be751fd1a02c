package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse(strings.NewReader(text), "/etc/postern/main.cf")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestParseSyntax(t *testing.T) {
	tests := []struct {
		name, text string
		want       map[string]string // Raw values
		lines      map[string]int
	}{
		{"simple", "a = b\n", map[string]string{"a": "b"}, map[string]int{"a": 1}},
		{"no spaces", "a=b\n", map[string]string{"a": "b"}, nil},
		{"trailing ws", "a = b  \t\n", map[string]string{"a": "b"}, nil},
		{"empty value", "a =\n", map[string]string{"a": ""}, nil},
		{"equals in value", "a = b=c\n", map[string]string{"a": "b=c"}, nil},
		{"comments", "# x = y\n   # indented comment\n\na = 1\n", map[string]string{"a": "1"}, map[string]int{"a": 4}},
		{"continuation", "a = one,\n  two,\n\ttwo2\nb = 3\n", map[string]string{"a": "one,  two,\ttwo2", "b": "3"}, map[string]int{"a": 1, "b": 4}},
		{"comment inside continuation", "a = one\n# c\n two\n", map[string]string{"a": "one two"}, nil},
		{"blank inside continuation", "a = one\n\n two\n", map[string]string{"a": "one two"}, nil},
		{"last wins", "a = 1\nb = x\na = 2\n", map[string]string{"a": "2", "b": "x"}, map[string]int{"a": 3}},
		{"crlf", "a = 1\r\nb = 2\r\n", map[string]string{"a": "1", "b": "2"}, nil},
		{"no final newline", "a = 1", map[string]string{"a": "1"}, nil},
		{"space before equals", "a   = 1\n", map[string]string{"a": "1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.text)
			for n, want := range tt.want {
				got, ok := c.Raw(n)
				if !ok || got != want {
					t.Errorf("Raw(%q) = %q, %v; want %q", n, got, ok, want)
				}
			}
			if got := c.Explicit(); len(got) != len(tt.want) {
				t.Errorf("Explicit() = %v, want %d names", got, len(tt.want))
			}
			for n, want := range tt.lines {
				if f, l := c.Line(n); l != want || f != "/etc/postern/main.cf" {
					t.Errorf("Line(%q) = %s:%d, want line %d", n, f, l, want)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{" a = 1\n", "main.cf:1: logical line must not start with white space"},
		{"a = 1\nfoo\n", "main.cf:2: missing '=' after attribute name"},
		{"\n\nbad-name = 1\n", "main.cf:3: bad parameter name"},
		{"= 1\n", "main.cf:1: bad parameter name"},
	}
	for _, tt := range tests {
		_, err := Parse(strings.NewReader(tt.text), "main.cf")
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want prefix %q", tt.text, err, tt.want)
		}
	}
}

func TestExpand(t *testing.T) {
	c := mustParse(t, `
e =
x = X
y = $x$x
nested = ${y}-$(x)
loop1 = $loop2
loop2 = $loop1
self = a $self
`)
	tests := []struct {
		in, want string
		err      bool
	}{
		{"plain", "plain", false},
		{"$x", "X", false},
		{"${x}", "X", false},
		{"$(x)", "X", false},
		{"[$x$e.]", "[X.]", false},
		{"$nested", "XX-X", false},
		{"$$x", "$x", false},
		{"$$$x", "$X", false},
		{"${undefined_name}", "", false},
		{"$undefined_name", "", false},
		{"[${x?{ a }}]", "[ a ]", false},
		{"[${x? a }]", "[ a ]", false},
		{"[${e? a }]", "[]", false},
		{"[${e:{ b }}]", "[ b ]", false},
		{"[${x:b}]", "[]", false},
		{"[${x?{v1}:{v2}}]", "[v1]", false},
		{"[${e?{v1}:{v2}}]", "[v2]", false},
		{"[${e?{v1}: v2 }]", "[ v2 ]", false},
		{"[${x?{a}:b c}]", "[a]", false},
		{"[${x:a}b}]", "[b}]", false},
		{"[$(x?a)]", "[a]", false},
		{"[${x?$(e:z)}]", "[z]", false},
		{"${x?${y}}", "XX", false},
		{"[${{1} < {10} ? {lt} : {ge}}]", "[lt]", false},
		{"[${{10} < {9} ? {y} : {n}}]", "[n]", false},
		{"[${{a10} < {a9} ? {y} : {n}}]", "[y]", false},
		{"[${{abc} == {abc}?{eq}}]", "[eq]", false},
		{"[${{2} != {2}:{same}}]", "[same]", false},
		{"[${{ 1 } == {1}?{y}:{n}}]", "[n]", false},
		{"[${{a}=={a}}]", "[true]", false},
		{"[${{a}!={a}}]", "[false]", false},
		{"[${{3.6} <level {3.10} ? {older}:{newer}}]", "[older]", false},
		{"[${{3.6} >=level {3} ? {y}:{n}}]", "[y]", false},
		{"[${{$x} == {X} ? {yes} : {no}}]", "[yes]", false},
		{"[${{007} == {7} ? {num} : {str}}]", "[num]", false},
		{"$loop1", "", true},
		{"$self", "a ", true},
		{"[$-]", "[$-]", true},
		{"[$]", "[$]", true},
		{"[${x]", "[${x]", true},
		{"[${x?a{b}]", "[${x?a{b}]", true},
		{"[${x?{a}b}]", "[]", true},
		{"[${x:{a}:{b}}]", "[]", true},
		{"[${x!a}]", "[]", true},
		{"[${{a} ~ {b}}]", "[]", true},
		{"[${{a}}]", "[]", true},
		{"[${{x} <level {3}}]", "[]", true},
	}
	for _, tt := range tests {
		got, err := c.Expand(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("Expand(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestExpandBlowupBounded(t *testing.T) {
	var b strings.Builder
	names := "abcdefghijklmnopqrstuvwxyz"
	for i := 0; i < len(names)-1; i++ {
		n, next := names[i:i+1], names[i+1:i+2]
		b.WriteString("p" + n + " = $p" + next + " $p" + next + " $p" + next + "\n")
	}
	b.WriteString("pz = zzzzzzzzzzzzzzzzzzzzzzzz\n")
	c := mustParse(t, b.String())
	start := time.Now()
	if _, err := c.GetErr("pa"); err == nil {
		t.Error("exponential expansion: no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("expansion took %v", d)
	}
}

func TestExpandWith(t *testing.T) {
	c := mustParse(t, "recipient_delimiter = +\n")
	vars := func(n string) (string, bool) {
		switch n {
		case "home":
			return "/home/u", true
		case "extension":
			return "$weird", true // attribute values are never expanded
		}
		return "", false
	}
	got, err := c.ExpandWith(c.Get("forward_path"), vars)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/home/u/.forward+$weird, /home/u/.forward"; got != want {
		t.Errorf("forward_path = %q, want %q", got, want)
	}
	if raw := c.Get("forward_path"); !strings.Contains(raw, "$home") {
		t.Errorf("Get(forward_path) expanded a NoExpand parameter: %q", raw)
	}
}

func TestPrecedence(t *testing.T) {
	c := mustParse(t, "myhostname = mail.example.org\nmail_name = FromFile\n")
	tests := []struct{ name, want string }{
		{"myhostname", "mail.example.org"},
		{"mydomain", "example.org"},
		{"myorigin", "mail.example.org"},
		{"mydestination", "mail.example.org, localhost.example.org, localhost"},
		{"smtpd_banner", "mail.example.org ESMTP FromFile"},
		{"syslog_name", "postern"},
		{"mail_owner", "postern"},
		{"setgid_group", "posterndrop"},
		{"queue_directory", "/var/spool/postern"},
		{"data_directory", "/var/lib/postern"},
		{"config_directory", "/etc/postern"},
		{"relay_domains", ""},
		{"mynetworks", ""},
		{"mynetworks_style", "host"},
		{"inet_interfaces", "all"},
		{"inet_protocols", "all"},
		{"smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"},
		{"message_size_limit", "10240000"},
		{"default_process_limit", "100"},
		{"smtputf8_enable", "yes"},
		{"compatibility_level", "3.6"},
		{"dns_resolver_address", ""},
		{"smtpd_timeout", "300s"},
		{"no_such_parameter", ""},
	}
	for _, tt := range tests {
		if got := c.Get(tt.name); got != tt.want {
			t.Errorf("Get(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}

	o := c.Clone()
	o.Set("mail_name", "Override")
	o.Set("stress", "yes")
	if got := o.Get("smtpd_banner"); got != "mail.example.org ESMTP Override" {
		t.Errorf("override: smtpd_banner = %q", got)
	}
	if got := o.Duration("smtpd_timeout"); got != 10*time.Second {
		t.Errorf("stress: smtpd_timeout = %v", got)
	}
	if got := c.Get("smtpd_banner"); got != "mail.example.org ESMTP FromFile" {
		t.Errorf("Clone shares overrides: %q", got)
	}
	if raw, ok := o.Raw("mail_name"); !ok || raw != "Override" {
		t.Errorf("Raw(mail_name) = %q, %v", raw, ok)
	}
	if _, ok := c.Raw("myorigin"); ok {
		t.Error("Raw(myorigin) reports a default as set")
	}
}

func TestComputedDefaults(t *testing.T) {
	c := DefaultFor("/some/dir")
	h := c.Get("myhostname")
	if !strings.Contains(h, ".") {
		t.Errorf("myhostname %q has no dot", h)
	}
	if d := c.Get("mydomain"); d != domainOf(h) {
		t.Errorf("mydomain = %q for myhostname %q", d, h)
	}
	if got := c.Get("config_directory"); got != "/some/dir" {
		t.Errorf("config_directory = %q", got)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if got := c.Get("daemon_directory"); got != filepath.Dir(exe) {
		t.Errorf("daemon_directory = %q, want %q", got, filepath.Dir(exe))
	}
	// A myhostname that refers back to mydomain must not loop forever.
	l := mustParse(t, "myhostname = mail.$mydomain\n")
	if got := l.Get("mydomain"); got != domainOf(h) {
		t.Errorf("self-referring mydomain = %q", got)
	}
	for _, tt := range []struct{ host, want string }{
		{"a.b.c", "b.c"}, {"host.example", "example"}, {"host", "localdomain"}, {"host.", "localdomain"},
	} {
		if got := domainOf(tt.host); got != tt.want {
			t.Errorf("domainOf(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}

func TestTypedGetters(t *testing.T) {
	c := mustParse(t, `
smtputf8_enable = NO
biff = True
max_use = 7
smtpd_recipient_limit = lots
maximal_queue_lifetime = 2
minimal_backoff_time = 5m
queue_run_delay = 1w
bounce_queue_lifetime = 3h
message_size_limit = 10m
header_size_limit = 1000
relay_domains = a.example, b.example c.example,,
smtpd_recipient_restrictions = check_client_access inline:{1.2.3.4=REJECT, 5.6.7.8 = OK}, { permit_mynetworks },reject
`)
	if c.Bool("smtputf8_enable") || !c.Bool("biff") {
		t.Error("Bool")
	}
	if c.Int("max_use") != 7 {
		t.Error("Int max_use")
	}
	if c.Int("smtpd_recipient_limit") != 1000 {
		t.Errorf("Int of a bad value = %d, want the default 1000", c.Int("smtpd_recipient_limit"))
	}
	durs := map[string]time.Duration{
		"maximal_queue_lifetime": 48 * time.Hour, // default unit d
		"minimal_backoff_time":   5 * time.Minute,
		"queue_run_delay":        7 * 24 * time.Hour,
		"bounce_queue_lifetime":  3 * time.Hour,
		"maximal_backoff_time":   4000 * time.Second,
		"ipc_timeout":            3600 * time.Second,
	}
	for n, want := range durs {
		if got := c.Duration(n); got != want {
			t.Errorf("Duration(%q) = %v, want %v", n, got, want)
		}
	}
	if got := c.Size("message_size_limit"); got != 10240000 {
		t.Errorf("Size with a suffix (not Postfix syntax) = %d, want the default", got)
	}
	if got := c.Size("header_size_limit"); got != 1000 {
		t.Errorf("Size = %d", got)
	}
	if got, want := c.List("relay_domains"), []string{"a.example", "b.example", "c.example"}; !reflect.DeepEqual(got, want) {
		t.Errorf("List = %q", got)
	}
	want := []string{"check_client_access", "inline:{1.2.3.4=REJECT, 5.6.7.8 = OK}", "{ permit_mynetworks }", "reject"}
	if got := c.List("smtpd_recipient_restrictions"); !reflect.DeepEqual(got, want) {
		t.Errorf("List with groups = %q, want %q", got, want)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		unit byte
		want time.Duration
		err  bool
	}{
		{"10", 's', 10 * time.Second, false},
		{"10", 'd', 240 * time.Hour, false},
		{"10s", 'd', 10 * time.Second, false},
		{"2m", 's', 2 * time.Minute, false},
		{"1h", 's', time.Hour, false},
		{"1d", 's', 24 * time.Hour, false},
		{"1w", 's', 7 * 24 * time.Hour, false},
		{"0", 's', 0, false},
		{" 5s ", 's', 5 * time.Second, false},
		{"", 's', 0, true},
		{"s", 's', 0, true},
		{"-1s", 's', 0, true},
		{"+1s", 's', 0, true},
		{"1x", 's', 0, true},
		{"1.5h", 's', 0, true},
		{"1h30m", 's', 0, true},
		{"99999999999999w", 's', 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in, tt.unit)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("ParseDuration(%q, %c) = %v, %v", tt.in, tt.unit, got, err)
		}
	}
}

func TestSplitList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"a", []string{"a"}},
		{"a,b c\td\ne", []string{"a", "b", "c", "d", "e"}},
		{"hash:/etc/aliases, nis:mail.aliases", []string{"hash:/etc/aliases", "nis:mail.aliases"}},
		{"inline:{ a=b, c=d } x", []string{"inline:{ a=b, c=d }", "x"}},
		{"{a {b c}} d", []string{"{a {b c}}", "d"}},
		{"a} b", []string{"a}", "b"}},
		{"{unclosed a b", []string{"{unclosed a b"}},
	}
	for _, tt := range tests {
		if got := SplitList(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDir(t *testing.T) {
	t.Setenv("MAIL_CONFIG", "")
	if Dir("") != DefaultDir {
		t.Error("Dir without anything")
	}
	t.Setenv("MAIL_CONFIG", "/env/dir")
	if Dir("") != "/env/dir" || Dir("/flag") != "/flag" {
		t.Error("Dir precedence")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil {
		t.Error("Load without main.cf: no error")
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = $config_directory/q\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Dir() != dir || c.Get("queue_directory") != dir+"/q" {
		t.Errorf("Dir = %q, queue_directory = %q", c.Dir(), c.Get("queue_directory"))
	}
}

func TestLoadBenchConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/bench-main.cf")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(strings.NewReader(string(data)), "testdata/bench-main.cf")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Get("relayhost"); got != "[127.0.0.1]:2526" {
		t.Errorf("relayhost = %q", got)
	}
	if got := c.List("mydestination"); len(got) != 0 {
		t.Errorf("mydestination = %q", got)
	}
	for _, p := range c.Check(nil) {
		if p.Severity == SeverityError {
			t.Errorf("bench main.cf: %s", p)
		}
	}
}

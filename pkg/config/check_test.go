package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	c := mustParse(t, `myhostname = mail.example.org
smtputf8_enable = maybe
max_use = ten
smtpd_timeout = 30x
message_size_limit = 10m
queue_run_delay = 300
no_such_thing = 1
smtp_header_checks = regexp:/x
relay_transport_rate_delay = 1q
helper = a
mydestination = $helper, $myhostname
loopy = $loopy
smtp_body_checks = regexp:/etc/postern/body_checks
default_rbl_reply = $rbl_code Service unavailable
`)
	c.Set("smtpd_recipient_limit", "many")
	isTransport := func(n string) bool { return n == "relay" }
	extra := func(n string) bool { return TransportParam(n, isTransport) }
	got := map[string]bool{}
	for _, p := range c.Check(extra) {
		got[p.String()] = true
	}
	want := []string{
		"/etc/postern/main.cf:2: error: bad boolean value for parameter smtputf8_enable: \"maybe\"",
		"/etc/postern/main.cf:3: error: bad numerical value for parameter max_use: \"ten\"",
		"/etc/postern/main.cf:4: error: bad time value for parameter smtpd_timeout: \"30x\"",
		"/etc/postern/main.cf:5: error: bad size value for parameter message_size_limit: \"10m\"",
		"/etc/postern/main.cf:7: warning: unknown parameter no_such_thing",
		"/etc/postern/main.cf:8: warning: parameter smtp_header_checks is not supported by Postern and is ignored",
		"/etc/postern/main.cf:9: error: bad time value for parameter relay_transport_rate_delay: \"1q\"",
		"/etc/postern/main.cf:12: error: parameter loopy: loop in $name expansion: loopy -> loopy",
		"/etc/postern/main.cf:13: warning: parameter smtp_body_checks is not supported by Postern and is ignored",
		"/etc/postern/main.cf:14: warning: parameter default_rbl_reply is not supported by Postern and is ignored",
		"override: error: bad numerical value for parameter smtpd_recipient_limit: \"many\"",
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing problem %q", w)
		}
		delete(got, w)
	}
	for p := range got {
		t.Errorf("unexpected problem %q", p)
	}
}

func TestCheckOrder(t *testing.T) {
	c := mustParse(t, "zz = 1\naa = 2\n")
	probs := c.Check(nil)
	if len(probs) != 2 || probs[0].Line != 1 || probs[1].Line != 2 {
		t.Errorf("problems not in line order: %v", probs)
	}
}

func TestRegistry(t *testing.T) {
	params := Params()
	if len(params) < 150 {
		t.Errorf("only %d parameters registered", len(params))
	}
	for i, p := range params {
		if i > 0 && params[i-1].Name >= p.Name {
			t.Errorf("Params not sorted at %s", p.Name)
		}
		if p.Doc == "" {
			t.Errorf("%s: no doc", p.Name)
		}
		if p.Kind == Time && strings.IndexByte("smhdw", p.Unit) < 0 {
			t.Errorf("%s: bad unit %q", p.Name, p.Unit)
		}
	}
	for _, n := range supported {
		if p, ok := Lookup(n); !ok || !p.Supported {
			t.Errorf("%s: not registered as supported", n)
		}
	}
	if p, ok := Lookup("dns_resolver_address"); !ok || !p.PosternOnly || !p.Supported {
		t.Errorf("dns_resolver_address = %+v", p)
	}
	if p, _ := Lookup("smtp_body_checks"); p.Supported {
		t.Error("smtp_body_checks marked supported")
	}
	// Every default must be valid for its kind (after expansion).
	c := DefaultFor("/etc/postern")
	for _, p := range params {
		if p.NoExpand {
			continue
		}
		v, err := c.GetErr(p.Name)
		if err != nil {
			t.Errorf("%s: default does not expand: %v", p.Name, err)
			continue
		}
		if msg := validate(p.Kind, p.Unit, v); msg != "" {
			t.Errorf("%s: default %q is not a valid %s", p.Name, v, msg)
		}
	}
	if probs := c.Check(nil); len(probs) != 0 {
		t.Errorf("Check of defaults: %v", probs)
	}
}

func TestTransportParam(t *testing.T) {
	isT := func(n string) bool { return n == "relay" || n == "my-pipe" }
	tests := map[string]bool{
		"relay_destination_concurrency_limit": true,
		"my-pipe_time_limit":                  true,
		"relay_recipient_limit":               true,
		"smtp_destination_concurrency_limit":  false, // smtp is not a transport here
		"relay_bogus_limit":                   false,
		"_destination_concurrency_limit":      false,
	}
	for n, want := range tests {
		if got := TransportParam(n, isT); got != want {
			t.Errorf("TransportParam(%q) = %v", n, got)
		}
	}
	if k, u, ok := TransportKind("relay_time_limit"); !ok || k != Time || u != 's' {
		t.Errorf("TransportKind(relay_time_limit) = %v %c %v", k, u, ok)
	}
}

func TestEditFile(t *testing.T) {
	orig := `# Header comment
myhostname = old.example
mydestination = a,
    b,
  # comment inside
    c
# keep me
relayhost = [x]
myhostname = dup.example
inet_interfaces = all
`
	tests := []struct {
		name   string
		set    map[string]string
		remove []string
		want   string
	}{
		{"replace first and drop later", map[string]string{"myhostname": "new.example"}, nil,
			"# Header comment\nmyhostname = new.example\nmydestination = a,\n    b,\n  # comment inside\n    c\n# keep me\nrelayhost = [x]\ninet_interfaces = all\n"},
		{"replace continued", map[string]string{"mydestination": "x"}, nil,
			"# Header comment\nmyhostname = old.example\nmydestination = x\n# keep me\nrelayhost = [x]\nmyhostname = dup.example\ninet_interfaces = all\n"},
		{"append sorted", map[string]string{"zz_new": "1", "aa_new": ""}, nil,
			orig + "aa_new =\nzz_new = 1\n"},
		{"remove", nil, []string{"relayhost", "mydestination"},
			"# Header comment\nmyhostname = old.example\n# keep me\nmyhostname = dup.example\ninet_interfaces = all\n"},
		{"remove all copies", nil, []string{"myhostname"},
			"# Header comment\nmydestination = a,\n    b,\n  # comment inside\n    c\n# keep me\nrelayhost = [x]\ninet_interfaces = all\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "main.cf")
			if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := EditFile(path, tt.set, tt.remove); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
				t.Errorf("mode = %v", st.Mode())
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Errorf("temporary files left: %v", ents)
			}
			if _, err := Parse(strings.NewReader(string(got)), path); err != nil {
				t.Errorf("edited file does not parse: %v", err)
			}
		})
	}
}

func TestEditFileCreateAndErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "main.cf")
	if err := EditFile(path, map[string]string{"a": "1"}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "a = 1\n" {
		t.Errorf("created %q", got)
	}
	if err := os.WriteFile(path, []byte("a = 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := EditFile(path, map[string]string{"b": "2"}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "a = 1\nb = 2\n" {
		t.Errorf("no final newline: %q", got)
	}
	if err := EditFile(path, map[string]string{"bad name": "1"}, nil); err == nil {
		t.Error("bad name accepted")
	}
	if err := EditFile(path, map[string]string{"a": "x\ny"}, nil); err == nil {
		t.Error("newline in value accepted")
	}
}

func TestCheckMailboxLimitBelowMessageLimit(t *testing.T) {
	c, err := Parse(strings.NewReader("message_size_limit = 1000\nvirtual_mailbox_limit = 100\nmailbox_size_limit = 0\n"), "/etc/postern/main.cf")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.Check(nil) {
		got = append(got, p.String())
	}
	want := "/etc/postern/main.cf:2: warning: virtual_mailbox_limit (100) is smaller than message_size_limit (1000): larger mail is accepted, then bounced"
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want [%q]", got, want)
	}
}

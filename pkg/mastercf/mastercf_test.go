package mastercf

import (
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"postern/pkg/config"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func parse(t *testing.T, text string) ([]Service, []config.Problem) {
	t.Helper()
	s, w, err := Parse(strings.NewReader(text), "master.cf", 100)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s, w
}

func TestParseEntry(t *testing.T) {
	tests := []struct {
		name, text string
		want       Service
	}{
		{"defaults", "smtp inet - - - - - smtpd\n", Service{Name: "smtp", Type: "inet", Private: false, Unpriv: true, Chroot: false, Maxproc: 100, Command: "smtpd", Line: 1}},
		{"unix defaults", "cleanup unix - - - - 0 cleanup\n", Service{Name: "cleanup", Type: "unix", Private: true, Unpriv: true, Maxproc: 0, Command: "cleanup", Line: 1}},
		{"explicit", "pickup unix n n y 60 1 pickup\n", Service{Name: "pickup", Type: "unix", Unpriv: false, Chroot: true, Wakeup: 60 * time.Second, Maxproc: 1, Command: "pickup", Line: 1}},
		{"wakeup if used", "tlsmgr unix - - n 1000? 1 tlsmgr\n", Service{Name: "tlsmgr", Type: "unix", Private: true, Unpriv: true, Wakeup: 1000 * time.Second, WakeupIfUsed: true, Maxproc: 1, Command: "tlsmgr", Line: 1}},
		{"host:port", "127.0.0.1:2525 inet n - n - - smtpd\n", Service{Name: "127.0.0.1:2525", Type: "inet", Unpriv: true, Maxproc: 100, Command: "smtpd", Line: 1}},
		{"ipv6", "[::1]:25 inet n - n - - smtpd\n", Service{Name: "[::1]:25", Type: "inet", Unpriv: true, Maxproc: 100, Command: "smtpd", Line: 1}},
		{"unix-dgram", "postlog unix-dgram n - n - 1 postlogd\n", Service{Name: "postlog", Type: "unix-dgram", Unpriv: true, Maxproc: 1, Command: "postlogd", Line: 1}},
		{"fifo and pass", "q fifo n - n 300 1 qmgr\n", Service{Name: "q", Type: "fifo", Unpriv: true, Wakeup: 300 * time.Second, Maxproc: 1, Command: "qmgr", Line: 1}},
		{"overrides", "submission inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n  -o smtpd_tls_security_level=encrypt\n  -osmtpd_sasl_auth_enable=yes\n  -o { smtpd_reject_footer = hello  world }\n  -o empty=\n",
			Service{Name: "submission", Type: "inet", Unpriv: true, Maxproc: 100, Command: "smtpd", Line: 1, Overrides: []Override{
				{"syslog_name", "postfix/submission"}, {"smtpd_tls_security_level", "encrypt"},
				{"smtpd_sasl_auth_enable", "yes"}, {"smtpd_reject_footer", "hello  world"}, {"empty", ""}}}},
		{"options and getopt stop", "x unix - - n - - smtpd -v -t unix -o a=b { two words } -o c=d -oe=f\n",
			Service{Name: "x", Type: "unix", Private: true, Unpriv: true, Maxproc: 100, Command: "smtpd", Line: 1,
				Args: []string{"-v", "-t", "unix", "two words", "-o", "c=d", "-oe=f"}, Overrides: []Override{{"a", "b"}}}},
		{"pipe argv", "maildrop  unix  -       n       n       -       -       pipe\n  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n",
			Service{Name: "maildrop", Type: "unix", Private: true, Unpriv: false, Maxproc: 100, Command: "pipe", Line: 1,
				Args: []string{"flags=DRXhu", "user=vmail", "argv=/usr/bin/maildrop", "-d", "${recipient}"}}},
		{"double dash", "x unix - - n - - prog -- -o a=b\n", Service{Name: "x", Type: "unix", Private: true, Unpriv: true, Maxproc: 100, Command: "prog", Line: 1, Args: []string{"--", "-o", "a=b"}}},
		{"comment between", "# c\n\nx unix - - n - - prog\n# inside\n  -o a=b\n", Service{Name: "x", Type: "unix", Private: true, Unpriv: true, Maxproc: 100, Command: "prog", Line: 3, Overrides: []Override{{"a", "b"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := parse(t, tt.text)
			if len(got) != 1 {
				t.Fatalf("got %d services", len(got))
			}
			g := got[0]
			g.cols = [5]string{}
			tt.want.File = "master.cf"
			if !reflect.DeepEqual(g, tt.want) {
				t.Errorf("got  %+v\nwant %+v", g, tt.want)
			}
			// Format must parse back to the same service.
			again, _ := parse(t, got[0].Format()+"\n")
			a := again[0]
			a.cols = [5]string{}
			a.Line = tt.want.Line
			if !reflect.DeepEqual(a, tt.want) {
				t.Errorf("Format round trip %q:\ngot  %+v\nwant %+v", got[0].Format(), a, tt.want)
			}
			folded, _ := parse(t, got[0].FormatFolded()+"\n")
			if !reflect.DeepEqual(folded[0].Overrides, got[0].Overrides) || !reflect.DeepEqual(folded[0].Args, got[0].Args) {
				t.Errorf("FormatFolded round trip %q", got[0].FormatFolded())
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"smtp inet n - n - - \n", "master.cf:1: expected 8 or more fields, found 7"},
		{"\nsmtp tcp n - n - - smtpd\n", "master.cf:2: bad transport type: tcp"},
		{"smtp inet x - n - - smtpd\n", "master.cf:1: bad private field: x"},
		{"smtp inet n yes n - - smtpd\n", "master.cf:1: bad unprivileged field: yes"},
		{"smtp inet n - maybe - - smtpd\n", "master.cf:1: bad chroot field: maybe"},
		{"smtp inet n - n 5m - smtpd\n", "master.cf:1: bad wakeup time field: 5m"},
		{"smtp inet n - n ? - smtpd\n", "master.cf:1: bad wakeup time field: ?"},
		{"smtp inet n - n - -1 smtpd\n", "master.cf:1: bad process limit field: -1"},
		{"smtp inet n - n - many smtpd\n", "master.cf:1: bad process limit field: many"},
		{"smtp inet n - n - - smtpd -o\n", "master.cf:1: option -o requires"},
		{"smtp inet n - n - - smtpd -o novalue\n", "master.cf:1: bad -o argument"},
		{"smtp inet n - n - - smtpd -o =x\n", "master.cf:1: bad -o argument"},
		{"smtp inet n - n - - smtpd -o {a = b\n", "master.cf:1: missing '}'"},
		{"smtp inet n - n - - smtpd }\n", "master.cf:1: unbalanced '}'"},
		{"smtp inet n - n - - smtpd {a}b\n", "master.cf:1: text after '}'"},
		{"a/b unix n - n - - smtpd\n", "master.cf:1: bad service name"},
		{":25 inet n - n - - smtpd\n", "master.cf:1: bad inet service name"},
		{"::1:25 inet n - n - - smtpd\n", "master.cf:1: bad inet service name"},
		{" smtp inet n - n - - smtpd\n", "master.cf:1: logical line must not start with white space"},
		{"{smtp} inet n - n - - smtpd\n", "master.cf:1: field 1 must not be a {...} group"},
	}
	for _, tt := range tests {
		_, _, err := Parse(strings.NewReader(tt.text), "master.cf", 100)
		var ce *config.Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want prefix %q", tt.text, err, tt.want)
		}
	}
}

func TestDuplicatesAndWarnings(t *testing.T) {
	services, warns := parse(t, "a unix - - n - - one\nb unix - - n - - two\na unix - - n - - three\na inet y - n - - four\n")
	var keys []string
	for _, s := range services {
		keys = append(keys, s.Key()+"="+s.Command)
	}
	if want := []string{"b/unix=two", "a/unix=three", "a/inet=four"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("services = %v, want %v", keys, want)
	}
	want := []string{
		"master.cf:3: warning: duplicate service a/unix (also at line 1); this entry replaces it",
		"master.cf:4: warning: service a/inet: inet services cannot be private; treated as n",
	}
	var got []string
	for _, w := range warns {
		got = append(got, w.String())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings = %q, want %q", got, want)
	}
}

func TestServiceHelpers(t *testing.T) {
	services, _ := parse(t, "relay unix - - n - - smtp -o a=1 -o b=2 -o a=3\nsmtp inet n - n - - smtpd\nsmtp unix - - n - - smtp\n")
	r := services[0]
	if v, ok := r.Override("a"); !ok || v != "3" {
		t.Errorf("Override(a) = %q, %v", v, ok)
	}
	if _, ok := r.Override("zz"); ok {
		t.Error("Override(zz) found")
	}
	c := config.DefaultFor("/etc/postern")
	r.Apply(c)
	if c.Get("a") != "3" || c.Get("b") != "2" {
		t.Errorf("Apply: a=%q b=%q", c.Get("a"), c.Get("b"))
	}
	m, un := Select(services, []string{"smtp", "relay/unix", "/inet", "nosuch/unix"})
	if len(m) != 3 || !reflect.DeepEqual(un, []string{"nosuch/unix"}) {
		t.Errorf("Select = %d services, unmatched %v", len(m), un)
	}
	m, _ = Select(services, []string{"smtp/unix"})
	if len(m) != 1 || m[0].Key() != "smtp/unix" {
		t.Errorf("Select(smtp/unix) = %v", m)
	}
	names := ParamNames(services)
	for n, want := range map[string]bool{"relay_destination_concurrency_limit": true, "b": true, "smtp_time_limit": true, "other_time_limit": false, "zz": false} {
		if names(n) != want {
			t.Errorf("ParamNames(%q) = %v", n, !want)
		}
	}
	if got := Names(services); !reflect.DeepEqual(got, []string{"relay/unix", "smtp/inet", "smtp/unix"}) {
		t.Errorf("Names = %v", got)
	}
}

func TestFormatCodeBuilt(t *testing.T) {
	s := Service{Name: "x", Type: "unix", Private: true, Unpriv: false, Wakeup: 60 * time.Second, WakeupIfUsed: true, Maxproc: 5, Command: "qmgr",
		Overrides: []Override{{"a", "b c"}}, Args: []string{"-v", "", "{x"}}
	want := "x          unix  y       n       n       60?     5       qmgr -o { a=b c } -v {  } { {x }"
	if got := s.Format(); got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
}

// TestStockFiles parses Postfix's stock master.cf: the benchmark's copy
// (checked against postconf -M output as the golden file) and Debian's,
// when installed.
func TestStockFiles(t *testing.T) {
	services, warns, err := Load("testdata/../testdata", 100)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load without master.cf: %v", err)
	}
	f, err := os.Open("testdata/bench-master.cf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	services, warns, err = Parse(f, "testdata/bench-master.cf", 100)
	if err != nil || len(warns) != 0 {
		t.Fatalf("bench master.cf: %v %v", err, warns)
	}
	var b strings.Builder
	for _, s := range services {
		b.WriteString(s.Format() + "\n")
	}
	golden := "testdata/bench-master.cf.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("postconf -M output differs:\n%s\nwant:\n%s", b.String(), want)
	}
	relay, _ := Select(services, []string{"relay/unix"})
	if v, _ := relay[0].Override("syslog_name"); v != "postfix/$service_name" {
		t.Errorf("relay syslog_name = %q", v)
	}

	const debian = "/usr/share/postfix/master.cf.dist"
	d, err := os.Open(debian)
	if err != nil {
		t.Skipf("%s not installed", debian)
	}
	defer d.Close()
	services, warns, err = Parse(d, debian, 100)
	if err != nil || len(warns) != 0 {
		t.Fatalf("%s: %v %v", debian, err, warns)
	}
	m, _ := Select(services, []string{"maildrop/unix", "smtp/inet"})
	if len(m) != 2 || m[1].Command != "pipe" || !reflect.DeepEqual(m[1].Args[len(m[1].Args)-2:], []string{"-d", "${recipient}"}) {
		t.Errorf("Debian entries: %+v", m)
	}
}

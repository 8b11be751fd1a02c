package postconf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testMain = `# test instance
myhostname = mail.example.org
mail_name = Test
helper = h
mydestination = $myhostname, $helper
relay_destination_concurrency_limit = 3
`

const testMaster = `smtp inet n - n - - smtpd
relay unix - - n - - smtp
  -o syslog_name=postfix/$service_name
  -o smtp_helo_timeout=5s
cleanup unix n - n - 0 cleanup
`

func instance(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(testMain), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(testMaster), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	rc := Main(args, &out, &errb)
	return rc, out.String(), errb.String()
}

func TestCommand(t *testing.T) {
	dir := instance(t)
	t.Setenv("MAIL_CONFIG", "")
	tests := []struct {
		name    string
		args    []string
		rc      int
		stdout  string // exact, unless contains is set
		lines   []string
		stderr  string
		noLines []string
	}{
		{name: "explicit", args: []string{"-c", dir, "-n"}, stdout: "helper = h\nmail_name = Test\nmydestination = $myhostname, $helper\nmyhostname = mail.example.org\nrelay_destination_concurrency_limit = 3\n"},
		{name: "explicit values only", args: []string{"-nh", "-c", dir, "mail_name", "myorigin"}, stdout: "Test\n"},
		{name: "named", args: []string{"-c" + dir, "mydestination", "myorigin", "helper"}, stdout: "mydestination = $myhostname, $helper\nmyorigin = $myhostname\nhelper = h\n"},
		{name: "expanded", args: []string{"-x", "-c", dir, "mydestination", "smtpd_banner", "mydomain"}, stdout: "mydestination = mail.example.org, h\nsmtpd_banner = mail.example.org ESMTP Test\nmydomain = example.org\n"},
		{name: "defaults", args: []string{"-d", "-c", dir, "mail_name", "relay_domains", "dns_resolver_address", "config_directory"},
			stdout: "mail_name = Postern\nrelay_domains =\ndns_resolver_address = # Postern only\nconfig_directory = " + dir + "\n"},
		{name: "defaults values", args: []string{"-dh", "-c", dir, "mydestination"}, stdout: "$myhostname, localhost.$mydomain, localhost\n"},
		{name: "unknown", args: []string{"-c", dir, "no_such_param", "mail_name"}, stdout: "mail_name = Test\n", stderr: "postern conf: warning: no_such_param: unknown parameter\n"},
		{name: "all", args: []string{"-c", dir}, lines: []string{"mail_name = Test", "myorigin = $myhostname", "queue_directory = /var/spool/postern", "helper = h", "relay_destination_concurrency_limit = 3"}},
		{name: "all expanded", args: []string{"-xc", dir}, lines: []string{"myorigin = mail.example.org", "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"}},
		{name: "all defaults", args: []string{"-d", "-c", dir}, lines: []string{"mail_name = Postern", "dns_resolver_address = # Postern only"}, noLines: []string{"helper = h"}},
		{name: "master", args: []string{"-c", dir, "-M"}, stdout: "smtp       inet  n       -       n       -       -       smtpd\nrelay      unix  -       -       n       -       -       smtp -o syslog_name=postfix/$service_name -o smtp_helo_timeout=5s\ncleanup    unix  n       -       n       -       0       cleanup\n"},
		{name: "master select", args: []string{"-c", dir, "-Mf", "relay/unix", "nosuch/inet"}, stdout: "relay      unix  -       -       n       -       -       smtp\n    -o syslog_name=postfix/$service_name\n    -o smtp_helo_timeout=5s\n", stderr: "postern conf: warning: unmatched request: \"nosuch/inet\"\n"},
		{name: "fold", args: []string{"-f", "-c", dir, "smtpd_relay_restrictions"}, stdout: "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated,\n    defer_unauth_destination\n"},
		{name: "bad option", args: []string{"-q"}, rc: 1, lines: nil, stderr: "postern conf: unknown option -q\n"},
		{name: "missing -c value", args: []string{"-c"}, rc: 1, stderr: "postern conf: option -c requires a directory\n"},
		{name: "missing main.cf", args: []string{"-c", filepath.Join(dir, "nonexistent")}, rc: 1},
		{name: "conflicting modes", args: []string{"-e", "-M", "a=b"}, rc: 1},
		{name: "edit needs args", args: []string{"-c", dir, "-e"}, rc: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, out, errOut := run(tt.args...)
			if rc != tt.rc {
				t.Errorf("exit %d, want %d (stderr %q)", rc, tt.rc, errOut)
			}
			if tt.stdout != "" && out != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tt.stdout)
			}
			got := map[string]bool{}
			for _, l := range strings.Split(out, "\n") {
				got[l] = true
			}
			for _, l := range tt.lines {
				if !got[l] {
					t.Errorf("missing line %q", l)
				}
			}
			for _, l := range tt.noLines {
				if got[l] {
					t.Errorf("unexpected line %q", l)
				}
			}
			if tt.stderr != "" && !strings.HasPrefix(errOut, tt.stderr) {
				t.Errorf("stderr %q, want prefix %q", errOut, tt.stderr)
			}
			if tt.stderr == "" && tt.rc == 0 && errOut != "" {
				t.Errorf("unexpected stderr %q", errOut)
			}
		})
	}
}

func TestEditAndRemove(t *testing.T) {
	dir := instance(t)
	if rc, _, e := run("-c", dir, "-e", "mail_name=Edited", "relayhost = [smart.example]:587", "new_one=1"); rc != 0 {
		t.Fatalf("-e: %d %s", rc, e)
	}
	_, out, _ := run("-c", dir, "-h", "mail_name", "relayhost")
	if out != "Edited\n[smart.example]:587\n" {
		t.Errorf("after -e: %q", out)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "main.cf"))
	if !strings.HasPrefix(string(data), "# test instance\nmyhostname = mail.example.org\nmail_name = Edited\n") {
		t.Errorf("comment or order lost:\n%s", data)
	}
	if rc, _, e := run("-c", dir, "-X", "relayhost", "helper", "never_set"); rc != 0 {
		t.Fatalf("-X: %d %s", rc, e)
	}
	_, out, _ = run("-c", dir, "-n")
	if strings.Contains(out, "relayhost") || strings.Contains(out, "helper =") {
		t.Errorf("after -X:\n%s", out)
	}
	if rc, _, _ := run("-c", dir, "-e", "novalue"); rc != 1 {
		t.Error("-e without = accepted")
	}

	empty := t.TempDir()
	if rc, _, e := run("-c", empty, "-e", "myhostname=x.example"); rc != 0 {
		t.Fatalf("-e creating main.cf: %d %s", rc, e)
	}
	if rc, _, _ := run("-c", filepath.Join(empty, "nope"), "-X", "a"); rc != 1 {
		t.Error("-X without main.cf succeeded")
	}
}

func TestMailConfigEnv(t *testing.T) {
	dir := instance(t)
	t.Setenv("MAIL_CONFIG", dir)
	_, out, _ := run("-h", "mail_name")
	if out != "Test\n" {
		t.Errorf("MAIL_CONFIG ignored: %q", out)
	}
}

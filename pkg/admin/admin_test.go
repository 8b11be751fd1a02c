package admin

import (
	"bytes"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// The postern command hands each subcommand its arguments as that
// subcommand expects them.
func TestDispatch(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = mx.example.com\n"), 0644)
	os.WriteFile(filepath.Join(dir, "vmailbox"), []byte("a@example.com example.com/a/\n"), 0644)
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(args, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("map", "-q", "a@example.com", "texthash:"+filepath.Join(dir, "vmailbox")); code != 0 || out != "example.com/a/\n" {
		t.Errorf("map -q: %d %q", code, out)
	}
	if code, out := run("-c", dir, "map", "-q", "b@example.com", "texthash:"+filepath.Join(dir, "vmailbox")); code != 1 || out != "" {
		t.Errorf("map -q (not found): %d %q", code, out)
	}
	if code, out := run("-c", dir, "conf", "-h", "myhostname"); code != 0 || out != "mx.example.com\n" {
		t.Errorf("conf -h: %d %q", code, out)
	}
	if code, out := run("version"); code != 0 || !strings.HasPrefix(out, "postern ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _ := run("frobnicate"); code != 64 {
		t.Errorf("unknown command: exit %d", code)
	}
}

// postern check names the file and line of each problem.
func TestCheckReportsFileLine(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+filepath.Join(dir, "q")+"\nsmtputf8_enable = maybe\nno_such_parameter = 1\n"), 0644)
	os.WriteFile(filepath.Join(dir, "master.cf"), []byte("smtp inet n - n - - smtpd\n"), 0644)
	var out, errb bytes.Buffer
	if code := Check(dir, &out, &errb); code != 1 {
		t.Errorf("check exit %d, want 1", code)
	}
	for _, want := range []string{"main.cf:2: error: bad boolean value for parameter smtputf8_enable", "main.cf:3: warning: unknown parameter no_such_parameter"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errb.String())
		}
	}
	// As root the accounts must exist: use nobody and its group, which a
	// fresh machine has (the postern account comes with make install).
	owner := "mail_owner = nobody\n"
	if u, err := user.Lookup("nobody"); err == nil {
		if g, err := user.LookupGroupId(u.Gid); err == nil {
			owner += "setgid_group = " + g.Name + "\n"
		}
	}
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+filepath.Join(dir, "q")+"\ndata_directory = "+filepath.Join(dir, "d")+"\n"+owner), 0644)
	os.WriteFile(filepath.Join(dir, "master.cf"), []byte("smtp inet n - n - - smtpd\nbroken unix\n"), 0644)
	errb.Reset()
	if code := Check(dir, &out, &errb); code != 1 || !strings.Contains(errb.String(), "master.cf:2: ") {
		t.Errorf("broken master.cf: exit %d, %s", code, errb.String())
	}
	os.WriteFile(filepath.Join(dir, "master.cf"), []byte("smtp inet n - n - - smtpd\n"), 0644)
	errb.Reset()
	if code := Check(dir, &out, &errb); code != 0 {
		t.Fatalf("valid instance: exit %d, %s", code, errb.String())
	}
	if fi, err := os.Stat(filepath.Join(dir, "q", "incoming")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("queue not created: %v %v", fi, err)
	}
}

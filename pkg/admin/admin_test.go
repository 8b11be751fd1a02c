package admin

import (
	"bytes"
	"os"
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

package local

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/pkg/deliver"
)

func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	c := &childRunner{}
	out := filepath.Join(dir, "out")
	msg := func(w io.Writer) error { _, err := io.WriteString(w, "Subject: x\n\nbody\n"); return err }
	env := commandEnv(nil, [][2]string{{"RECIPIENT", "joe@example.org"}, {"EXTENSION", "a;b"}}, "abcdefghijklmnopqrstuvwxyz@.")
	for _, tc := range []struct {
		cmd    string
		status deliver.Status
		dsn    string
		text   string
	}{
		{"cat > " + out + "; echo \"$RECIPIENT $EXTENSION\" >> " + out, deliver.Sent, "2.0.0", "delivered to command: "},
		{"exit 75", deliver.Defer, "4.3.0", "Command died with status 75: "},
		{"exit 67", deliver.Bounce, "5.1.1", "Command died with status 67: "},
		{"echo 5.2.2 mailbox full; exit 1", deliver.Bounce, "5.2.2", "Command output: mailbox full"},
		{"echo 4.2.1 try later; exit 1", deliver.Defer, "4.2.1", "Command output: try later"},
		{"exit 1", deliver.Bounce, "5.3.0", "Command died with status 1: "},
		{"sleep 5", deliver.Defer, "4.3.0", "Command time limit exceeded"},
	} {
		res := c.runCommand(commandSpec{command: tc.cmd, env: env, timeout: 500 * time.Millisecond}, msg)
		if res.Status != tc.status || res.DSN != tc.dsn || !strings.Contains(res.Text, tc.text) {
			t.Errorf("%q: %+v, want %s %s %q", tc.cmd, res, tc.status, tc.dsn, tc.text)
		}
	}
	got, _ := os.ReadFile(out)
	if string(got) != "Subject: x\n\nbody\njoe@example.org a_b\n" {
		t.Errorf("command wrote %q", got)
	}
}

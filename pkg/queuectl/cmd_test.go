package queuectl

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/pkg/queue"
)

// testConfig writes a main.cf for a queue in a temporary directory.
func testConfig(t *testing.T) (string, *queue.Store) {
	t.Helper()
	s := testQueue(t)
	conf := filepath.Join(filepath.Dir(s.Dir()), "conf")
	os.MkdirAll(conf, 0o755)
	mainCf := fmt.Sprintf("queue_directory = %s\nmaillog_file = %s/maillog\nmaillog_file_prefixes = %s\ntrigger_timeout = 1s\n",
		s.Dir(), filepath.Dir(s.Dir()), filepath.Dir(s.Dir()))
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf, s
}

func run(conf, stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	env := Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, UID: os.Getuid(), Loc: time.UTC}
	var rc int
	if len(args) > 0 && args[0] == "flush" {
		rc = RunFlush(env, conf, args[1:])
	} else {
		rc = Run(env, conf, args)
	}
	return rc, out.String(), errb.String()
}

func TestRunSuperFromStdin(t *testing.T) {
	conf, s := testConfig(t)
	a, b, c := simple(t, s, queue.Deferred), simple(t, s, queue.Deferred), simple(t, s, queue.Hold)
	rc, _, stderr := run(conf, string(a)+"\n"+string(b)+"\nbogus!\n", "delete", "-", "deferred")
	if rc != 0 {
		t.Fatalf("exit %d\n%s", rc, stderr)
	}
	want := fmt.Sprintf("postsuper: %s: removed\npostsuper: %s: removed\npostsuper: warning: invalid mail queue id: bogus!\npostsuper: Deleted: 2 messages\n", a, b)
	if stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
	if !exists(s, queue.Hold, c) {
		t.Error("message outside the named queue deleted")
	}
	// The per-message lines are in the mail log as postsuper's.
	log, _ := os.ReadFile(filepath.Join(filepath.Dir(s.Dir()), "maillog"))
	if !strings.Contains(string(log), "/postsuper[") || !strings.Contains(string(log), "]: "+string(a)+": removed\n") {
		t.Errorf("maillog:\n%s", log)
	}
}

func TestRunExitCodes(t *testing.T) {
	conf, s := testConfig(t)
	id := simple(t, s, queue.Hold)
	for _, tc := range []struct {
		args   []string
		rc     int
		stderr string
	}{
		{[]string{"flush"}, 69, "postqueue: fatal: Cannot flush mail queue - mail system is down"},
		{[]string{"flush", "x"}, 64, "postqueue: fatal: usage"},
		{[]string{"-x"}, 64, "postqueue: fatal: usage"},
		{[]string{"frobnicate"}, 64, "unknown queue command"},
		{[]string{"show", "0123456789AB"}, 1, "postcat: fatal: open queue file 0123456789AB: No such file or directory"},
		{[]string{"show", "../etc/passwd"}, 1, "postcat: fatal: bad mail queue ID: ../etc/passwd"},
		{[]string{"show"}, 1, "postcat: fatal: usage"},
		{[]string{"delete"}, 1, "postsuper: fatal: usage"},
		{[]string{"release", "ALL"}, 0, "postsuper: Released from hold: 1 message\n"},
		{[]string{"list"}, 0, ""},
	} {
		rc, _, stderr := run(conf, "", tc.args...)
		if rc != tc.rc || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", tc.args, rc, stderr, tc.rc, tc.stderr)
		}
	}
	// release could not wake qmgr: a warning, still exit 0.
	if !exists(s, queue.Deferred, id) {
		t.Error("release ALL did not release")
	}
}

func TestRunListAndShow(t *testing.T) {
	conf, s := testConfig(t)
	rc, out, _ := run(conf, "")
	if rc != 0 || out != "Mail queue is empty\n" {
		t.Errorf("empty queue: exit %d, %q", rc, out)
	}
	id := simple(t, s, queue.Deferred)
	rc, out, _ = run(conf, "", "-j")
	if rc != 0 || !strings.HasPrefix(out, `{"queue_name": "deferred", "queue_id": "`+string(id)+`"`) {
		t.Errorf("-j: exit %d, %q", rc, out)
	}
	rc, out, _ = run(conf, "", "show", "-bh", string(id))
	if rc != 0 || out != "Subject: x\n\nbody\n" {
		t.Errorf("show -bh: exit %d, %q", rc, out)
	}
}

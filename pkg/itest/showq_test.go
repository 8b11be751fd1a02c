package itest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// showqMasterCf is the showq line of Postfix's stock master.cf.
const showqMasterCf = "showq     unix  n       -       n       -       -       showq"

// queueUser returns credentials of a user who is neither root nor the
// mail_owner, with the given group and no supplementary groups.
func (in *Instance) queueUser(gid int) *syscall.Credential {
	uid := 65534 // nobody
	if uid == in.UID {
		uid = 65533 // nobody is the mail_owner here
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

// setgidGID is the group of public/: setgid_group.
func (in *Instance) setgidGID(t *testing.T) int {
	t.Helper()
	fi, err := os.Stat(filepath.Join(in.Dir, "queue", "public"))
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Gid)
}

// PosternAs runs the postern command against this instance with the
// given credentials.
func (in *Instance) PosternAs(cred *syscall.Credential, args ...string) Run {
	in.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "postern"), append([]string{"-c", in.Conf}, args...)...)
	return in.run(cmd, cred, "postern")
}

// TestShowqMailq: a user who may not read the queue directories lists
// the queue through the showq daemon, byte for byte as root's direct
// listing, as mailq and as `postern queue -j`; with the instance down the
// user's mailq exits 69 "mail system is down" while root's still works.
func TestShowqMailq(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mailq must run as a user who cannot read the queue (a throwaway uid via SysProcAttr.Credential)")
	}
	in := NewInstance(t, Options{MainCf: "minimal_backoff_time = 1h\nmaximal_backoff_time = 2h", MasterCf: showqMasterCf})
	// The user reaches public/ as Postfix's postqueue does, with the
	// setgid_group (here as its real group rather than through a
	// set-group-ID binary; see TestShowqRelay for that step).
	user := in.queueUser(in.setgidGID(t))
	in.block("user")
	deferred := in.sendDeferred("user@itest.test", "deferred")
	held := in.sendDeferred("user@itest.test", "held")
	in.mustPostern("queue", "hold", held)
	in.waitQueued("hold", held)

	root := in.Sendmail("mailq", "", nil)
	if root.Code != 0 || !strings.Contains(root.Stdout, deferred+" ") || !strings.Contains(root.Stdout, held+"!") ||
		!strings.HasSuffix(root.Stdout, "in 2 Requests.\n") {
		t.Fatalf("root's mailq: exit %d\n%s%s", root.Code, root.Stdout, root.Stderr)
	}
	got := in.Sendmail("mailq", "", user)
	if got.Code != 0 || got.Stdout != root.Stdout || got.Stderr != "" {
		t.Errorf("mailq as uid %d: exit %d, stderr %q\n%s\nwant:\n%s", user.Uid, got.Code, got.Stderr, got.Stdout, root.Stdout)
	}
	if bp := in.Sendmail("sendmail", "", user, "-bp"); bp.Code != 0 || bp.Stdout != root.Stdout {
		t.Errorf("sendmail -bp as uid %d: exit %d, %q\n%s", user.Uid, bp.Code, bp.Stderr, bp.Stdout)
	}
	rootJSON := in.PosternAs(&syscall.Credential{}, "queue", "-j")
	userJSON := in.PosternAs(user, "queue", "-j")
	if rootJSON.Code != 0 || strings.Count(rootJSON.Stdout, "\n") != 2 || userJSON.Code != 0 || userJSON.Stdout != rootJSON.Stdout {
		t.Errorf("postern queue -j: root exit %d %q\n%s\nuser exit %d %q\n%s",
			rootJSON.Code, rootJSON.Stderr, rootJSON.Stdout, userJSON.Code, userJSON.Stderr, userJSON.Stdout)
	}
	if !in.childRunning("showq") {
		t.Errorf("no showq process: %v", in.Children())
	}

	// authorized_mailq_users is the client's check, as postqueue's.
	in.AppendMainCf("authorized_mailq_users = root")
	if r := in.Sendmail("mailq", "", user); r.Code != 77 || !strings.Contains(r.Stderr, "is not allowed to view the mail queue") || r.Stdout != "" {
		t.Errorf("refused mailq: exit %d, %q\n%s", r.Code, r.Stderr, r.Stdout)
	}
	in.AppendMainCf("authorized_mailq_users = static:anyone")

	in.Stop()
	r := in.Sendmail("mailq", "", user)
	if r.Code != 69 || !strings.HasPrefix(r.Stderr, "mailq: fatal: Queue report unavailable - mail system is down (") || r.Stdout != "" {
		t.Errorf("mailq as uid %d, instance down: exit %d, %q\n%s", user.Uid, r.Code, r.Stderr, r.Stdout)
	}
	if r := in.PosternAs(user, "queue"); r.Code != 69 || !strings.HasPrefix(r.Stderr, "postqueue: fatal: Queue report unavailable - mail system is down (") {
		t.Errorf("postern queue as uid %d, instance down: exit %d, %q", user.Uid, r.Code, r.Stderr)
	}
	if r := in.Sendmail("mailq", "", nil); r.Code != 0 || r.Stdout != root.Stdout {
		t.Errorf("root's mailq, instance down: exit %d, %q\n%s", r.Code, r.Stderr, r.Stdout)
	}
}

// childRunning reports whether a child of the master runs program.
func (in *Instance) childRunning(program string) bool {
	for _, p := range in.Children() {
		if p == program {
			return true
		}
	}
	return false
}

// TestShowqRelay: a user outside setgid_group cannot open public/ and
// goes through postdrop showq. Without a set-group-ID postdrop that fails
// with a message that says so (69); with one, postdrop applies
// Postfix's rule for a set-group-ID program and refuses a configuration
// directory that the default main.cf does not list (75).
func TestShowqRelay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mailq must run as a user who cannot read the queue (a throwaway uid via SysProcAttr.Credential)")
	}
	in := NewInstance(t, Options{MasterCf: showqMasterCf})
	gid := in.setgidGID(t)
	other := 65533
	if other == gid {
		other = 65532
	}
	user := in.queueUser(other)
	r := in.Sendmail("mailq", "", user)
	if r.Code != 69 || !strings.HasPrefix(r.Stderr, "mailq: fatal: Queue report unavailable - cannot reach ") ||
		!strings.Contains(r.Stderr, "permission denied") || !strings.Contains(r.Stderr, "is postdrop set-group-ID") {
		t.Errorf("mailq outside setgid_group, plain postdrop: exit %d, %q\n%s", r.Code, r.Stderr, r.Stdout)
	}

	cmdDir := filepath.Join(in.Dir, "cmd")
	if err := os.Mkdir(cmdDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(binDir, "postdrop"))
	if err != nil {
		t.Fatal(err)
	}
	postdrop := filepath.Join(cmdDir, "postdrop")
	if err := os.WriteFile(postdrop, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(postdrop, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(postdrop, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	in.AppendMainCf("command_directory = " + cmdDir)
	r = in.Sendmail("mailq", "", user)
	if r.Code != 75 || !strings.Contains(r.Stderr, "untrusted configuration directory") || r.Stdout != "" {
		t.Errorf("mailq through a set-group-ID postdrop, untrusted config: exit %d, %q\n%s", r.Code, r.Stderr, r.Stdout)
	}
}

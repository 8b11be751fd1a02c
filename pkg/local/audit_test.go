package local

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mailbox_delivery_lock = fcntl, dotlock: a mailbox another process has
// locked is not written, the step fails without TooLarge (so it defers),
// and it succeeds once the lock is gone. A dot-lock older than
// stale_lock_time is removed.
func TestChildMboxHonoursLocks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "joe")
	if err := os.WriteFile(path, nil, 0600); err != nil {
		t.Fatal(err)
	}
	req := &childRequest{Op: opMbox, Path: path, UID: os.Getuid(), GID: os.Getgid(), Locks: []string{"fcntl", "dotlock"},
		LockAttempts: 2, LockDelay: 10 * time.Millisecond, StaleLock: time.Minute}
	msg := func() *bytes.Buffer {
		var b bytes.Buffer
		fw := newFrameWriter(&b)
		fw.Write([]byte("From a  x\nbody\n\n"))
		fw.end()
		return &b
	}

	// An open file description lock conflicts with the classic fcntl lock
	// the child takes, even within this process (fcntl(2)).
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fl := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &fl); err != nil {
		t.Fatal(err)
	}
	if res := runChild(req, msg()); res.OK || res.TooLarge {
		t.Fatalf("delivery under an fcntl lock: %+v", res)
	}
	fl.Type = unix.F_UNLCK
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &fl); err != nil {
		t.Fatal(err)
	}

	lock := path + ".lock"
	if err := os.WriteFile(lock, nil, 0600); err != nil {
		t.Fatal(err)
	}
	if res := runChild(req, msg()); res.OK || res.TooLarge {
		t.Fatalf("delivery under a fresh dot-lock: %+v", res)
	}
	if got, _ := os.ReadFile(path); len(got) != 0 {
		t.Fatalf("mailbox written while locked: %q", got)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("someone else's dot-lock removed: %v", err)
	}
	old := time.Now().Add(-2 * time.Minute)
	os.Chtimes(lock, old, old)
	if res := runChild(req, msg()); !res.OK {
		t.Fatalf("delivery past a stale dot-lock: %+v", res)
	}
	if got, _ := os.ReadFile(path); string(got) != "From a  x\nbody\n\n" {
		t.Errorf("mailbox: %q", got)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Errorf("dot-lock left behind: %v", err)
	}
}

package local

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteDeliveredMbox(t *testing.T) {
	content := "Subject: hi\n\nFrom here on\n>From quoted already\nFrom\nlast line without newline"
	var b bytes.Buffer
	now := time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC)
	h := copyHeaders{sender: "", origTo: "joe@example.org", deliveredTo: "joe@example.org"}
	if err := writeDeliveredFrom(&b, strings.NewReader(content), h, copyMbox|copyDelivered, now); err != nil {
		t.Fatal(err)
	}
	want := "From MAILER-DAEMON  Tue Mar  5 07:08:09 2024\n" +
		"Return-Path: <>\nX-Original-To: joe@example.org\nDelivered-To: joe@example.org\n" +
		"Subject: hi\n\n>From here on\n>From quoted already\nFrom\nlast line without newline\n\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

func TestWriteDeliveredCommand(t *testing.T) {
	var b bytes.Buffer
	now := time.Date(2024, 3, 15, 7, 8, 9, 0, time.UTC)
	h := copyHeaders{sender: "a@b.example", origTo: "x@y", deliveredTo: "x@y"}
	if err := writeDeliveredFrom(&b, strings.NewReader("S: 1\n\nFrom body\n"), h, copyFrom|copyReturnPath|copyOrigTo, now); err != nil {
		t.Fatal(err)
	}
	// Commands get the From_ line but no quoting and no trailing blank line.
	want := "From a@b.example  Fri Mar 15 07:08:09 2024\nReturn-Path: <a@b.example>\nX-Original-To: x@y\nS: 1\n\nFrom body\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

func TestHeaderHasDeliveredTo(t *testing.T) {
	msg := "Received: x\nDelivered-To: Joe@Example.org\nSubject: s\n\nDelivered-To: body@example.org\n"
	for addr, want := range map[string]bool{"joe@example.org": true, "body@example.org": false, "x@example.org": false} {
		if got, err := headerHasDeliveredTo(strings.NewReader(msg), addr); got != want || err != nil {
			t.Errorf("%s: %v %v", addr, got, err)
		}
	}
}

// The child's mbox step, run in this process: framing, locks, the size
// limit with roll-back, and an input cut short being rolled back.
func TestChildMbox(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "joe")
	framed := func(s string, end bool) *bytes.Buffer {
		var b bytes.Buffer
		fw := newFrameWriter(&b)
		fw.Write([]byte(s))
		if end {
			fw.end()
		} else {
			fw.flush()
			fw.w.Flush()
		}
		return &b
	}
	req := &childRequest{Op: opMbox, Path: path, UID: os.Getuid(), GID: os.Getgid(), Locks: []string{"fcntl", "dotlock"},
		LockAttempts: 3, LockDelay: 10 * time.Millisecond, StrictOwner: true, Limit: 100}
	if res := runChild(req, framed("From a  x\nbody\n\n", true)); !res.OK {
		t.Fatalf("first delivery: %+v", res)
	}
	if res := runChild(req, framed("From b  x\ncut", false)); res.OK {
		t.Fatal("delivery of cut input succeeded")
	}
	if res := runChild(req, framed(strings.Repeat("x", 200), true)); res.OK || !res.TooLarge {
		t.Fatalf("delivery over the limit: %+v", res)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "From a  x\nbody\n\n" {
		t.Errorf("mailbox after failures: %q", got)
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dot-lock left behind: %v", err)
	}
	// A symbolic link in place of the mailbox is refused.
	os.Remove(path)
	os.Symlink(filepath.Join(dir, "elsewhere"), path)
	if res := runChild(req, framed("From a  x\n\n", true)); res.OK {
		t.Error("delivery through a symbolic link succeeded")
	}
}

func TestChildRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, ".forward")
	os.WriteFile(p, []byte("a@b\n"), 0600)
	if res := childRead(p); !res.OK || string(res.Data) != "a@b\n" || res.Owner != os.Getuid() {
		t.Errorf("read: %+v", res)
	}
	if res := childRead(filepath.Join(dir, "none")); res.OK || !res.NotFound {
		t.Errorf("read missing: %+v", res)
	}
}

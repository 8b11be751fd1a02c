package itest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"postern/pkg/ipc"
)

func greeting(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// alive reports whether a process exists and is not a zombie (the
// detached master's parent may be a container init that reaps late).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestStatusReloadStop(t *testing.T) {
	in := NewInstance(t, Options{})
	out, err := in.Postern("status")
	if err != nil || !strings.Contains(out, "the Postern mail system is running: PID: ") {
		t.Fatalf("status: %v %s", err, out)
	}
	if g := greeting(t, in.Addr); g != "220 mta.itest.test ESMTP Postern" {
		t.Errorf("greeting %q", g)
	}
	// A running session survives a reload; new sessions see the new value.
	old, err := net.Dial("tcp", in.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	old.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(old)
	r.ReadString('\n')
	in.AppendMainCf("smtpd_banner = $myhostname ESMTP reloaded")
	if out, err := in.Postern("reload"); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for greeting(t, in.Addr) != "220 mta.itest.test ESMTP reloaded" {
		if time.Now().After(deadline) {
			t.Fatalf("the new banner did not appear after reload:\n%s", in.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	old.Write([]byte("NOOP\r\n"))
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "250 ") {
		t.Errorf("session across reload: %q %v", l, err)
	}
	old.Write([]byte("QUIT\r\n"))
	if !in.WaitLog("reload -- version", 5*time.Second) {
		t.Error("no reload log line")
	}
	pid := in.MasterPID()
	kids := in.Children()
	in.Stop()
	for p := range kids {
		if alive(p) {
			t.Errorf("worker %d alive after stop", p)
		}
	}
	if alive(pid) {
		t.Errorf("master %d alive after stop", pid)
	}
	if out, err := in.Postern("status"); err == nil {
		t.Errorf("status after stop succeeded: %s", out)
	}
}

func TestKilledWorkerRestarted(t *testing.T) {
	in := NewInstance(t, Options{})
	// postern start returns once the listener accepts; the master may
	// still be starting the worker.
	var smtpd int
	for deadline := time.Now().Add(10 * time.Second); smtpd == 0; time.Sleep(20 * time.Millisecond) {
		for pid, name := range in.Children() {
			if name == "smtpd" {
				smtpd = pid
			}
		}
		if smtpd == 0 && time.Now().After(deadline) {
			t.Fatalf("no smtpd among %v", in.Children())
		}
	}
	syscall.Kill(smtpd, syscall.SIGKILL)
	if !in.WaitLog("killed by signal 9", 10*time.Second) {
		t.Fatalf("no warning about the killed worker:\n%s", in.Log())
	}
	if _, err := send(t, in.Addr, "a@example.org", []string{"user@itest.test"}, "Subject: after kill\r\n\r\nstill here\r\n"); err != nil {
		t.Fatalf("send after kill: %v", err)
	}
	in.WaitMaildir("itest.test/user", 1, 10*time.Second)
}

func TestDeferAndFlush(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "minimal_backoff_time = 1h\nmaximal_backoff_time = 2h"})
	// A plain file where the Maildir should be: delivery fails temporarily.
	os.MkdirAll(filepath.Join(in.Mail, "itest.test"), 0755)
	blocker := filepath.Join(in.Mail, "itest.test", "user")
	if err := os.WriteFile(blocker, []byte("in the way"), 0644); err != nil {
		t.Fatal(err)
	}
	text, err := send(t, in.Addr, "a@example.org", []string{"user@itest.test"}, "Subject: deferred\r\n\r\nlater\r\n")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	if !in.WaitLog(id+": to=<user@itest.test>, relay=virtual", 10*time.Second) || !strings.Contains(in.Log(), "status=deferred (maildir delivery failed") {
		t.Fatalf("no deferral logged:\n%s", in.Log())
	}
	qfile := filepath.Join(in.Dir, "queue", "deferred", id)
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := os.Stat(qfile)
		if err == nil {
			// The retry time is the file's mtime: at least the minimal back-off.
			if d := time.Until(fi.ModTime()); d < 59*time.Minute || d > 2*time.Hour {
				t.Errorf("next attempt in %v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in deferred/", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Clear the obstacle and flush, as sendmail -q and postern flush do.
	os.Remove(blocker)
	if err := ipc.Trigger(filepath.Join(in.Dir, "queue", "public", "qmgr"), 'F', 5*time.Second); err != nil {
		t.Fatal(err)
	}
	in.WaitMaildir("itest.test/user", 1, 10*time.Second)
	if !in.WaitLog(id+": removed", 5*time.Second) {
		t.Errorf("not removed after delivery:\n%s", in.Log())
	}
}

// A flush of more deferred mail than qmgr_message_active_limit goes on as
// room frees up, until the deferred queue is empty.
func TestFlushBeyondActiveLimit(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "qmgr_message_active_limit = 3\nminimal_backoff_time = 1h\nmaximal_backoff_time = 2h"})
	os.MkdirAll(filepath.Join(in.Mail, "itest.test"), 0755)
	blocker := filepath.Join(in.Mail, "itest.test", "user")
	if err := os.WriteFile(blocker, []byte("in the way"), 0644); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := 0; i < n; i++ {
		if _, err := send(t, in.Addr, "a@example.org", []string{"user@itest.test"}, "Subject: x\r\n\r\nx\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(in.Dir, "queue", "deferred"))
		if len(ents) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d deferred", len(ents), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.Remove(blocker)
	if out, err := in.Postern("flush"); err != nil {
		t.Fatalf("flush: %v %s", err, out)
	}
	in.WaitMaildir("itest.test/user", n, 20*time.Second)
}

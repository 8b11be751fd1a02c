package queuectl

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/pkg/config"
)

// TestFlushQueue: the triggers reach qmgr ('F') and pickup ('W'); a down
// qmgr is postqueue's 69; a caller for whom public/ is closed goes
// through "postdrop flush" (a stand-in script here) and gets its status.
func TestFlushQueue(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "q", "public")
	if err := os.MkdirAll(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	for _, name := range []string{"qmgr", "pickup"} {
		ln, err := net.Listen("unix", filepath.Join(pub, name))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 8)
				n, _ := c.Read(b)
				got <- name + ":" + string(b[:n])
				c.Close()
			}
		}()
	}
	script := "#!/bin/sh\necho \"$@\" > " + filepath.Join(dir, "args") + "\nif [ \"$3\" = /fail ]; then echo 'Cannot flush mail queue: no' >&2; exit 75; fi\n"
	if err := os.WriteFile(filepath.Join(dir, "postdrop"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(strings.NewReader("queue_directory = "+filepath.Join(dir, "q")+"\ncommand_directory = "+dir+"\n"), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	if err := FlushQueue(cfg, "", os.Getuid(), true); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"qmgr:F": true, "pickup:W": true}
	for range 2 {
		select {
		case s := <-got:
			if !want[s] {
				t.Errorf("unexpected trigger %q", s)
			}
			delete(want, s)
		case <-time.After(5 * time.Second):
			t.Fatalf("triggers missing: %v", want)
		}
	}

	// public/ closed to the caller: the relay runs with -c.
	if os.Geteuid() != 0 { // root reaches a mode-0 directory anyway
		os.Chmod(pub, 0)
		defer os.Chmod(pub, 0o755)
		if err := FlushQueue(cfg, "/conf", os.Getuid(), false); err != nil {
			t.Errorf("relay: %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "args")); string(b) != "flush -c /conf\n" {
			t.Errorf("postdrop run with %q", b)
		}
		var re *ReportError
		if err := FlushQueue(cfg, "/fail", os.Getuid(), false); !errors.As(err, &re) || re.Status != exTempFail || re.Text != "Cannot flush mail queue: no" {
			t.Errorf("failing relay: %#v", err)
		}
		os.Chmod(pub, 0o755)
	}

	// qmgr down.
	os.Remove(filepath.Join(pub, "qmgr"))
	var re *ReportError
	if err := FlushQueue(cfg, "", os.Getuid(), true); !errors.As(err, &re) || re.Status != exUnavailable || !strings.HasPrefix(re.Text, "Cannot flush mail queue - mail system is down") {
		t.Errorf("qmgr down: %#v", err)
	}
}

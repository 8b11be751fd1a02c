package itest

import (
	"fmt"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCrashSafety kills every process of the instance with SIGKILL while
// messages are in flight, restarts it, and checks that every message that
// got its 250 is delivered, and how many were delivered twice.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	in := NewInstance(t, Options{})
	const total, sessions = 300, 20
	var (
		mu    sync.Mutex
		acked = map[int]bool{}
		next  atomic.Int64
		sent  atomic.Int64
		wg    sync.WaitGroup
	)
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1))
				if n > total {
					return
				}
				body := fmt.Sprintf("Subject: crash %d\r\nMessage-ID: <crash-%d@itest>\r\n\r\nbody %d\r\n", n, n, n)
				if _, err := send(t, in.Addr, "a@example.org", []string{"user@itest.test"}, body); err == nil {
					mu.Lock()
					acked[n] = true
					mu.Unlock()
				}
				sent.Add(1)
			}
		}()
	}
	// Kill everything once about half the messages have been sent.
	deadline := time.Now().Add(60 * time.Second)
	for sent.Load() < total/2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	master := in.MasterPID()
	kids := in.Children()
	syscall.Kill(master, syscall.SIGKILL)
	for pid := range kids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	wg.Wait()
	for pid := range kids {
		for i := 0; i < 200 && alive(pid); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	in.Start()
	mu.Lock()
	nAcked := len(acked)
	mu.Unlock()
	// Wait until every acknowledged message has arrived.
	re := regexp.MustCompile(`(?m)^Message-ID: <crash-(\d+)@itest>`)
	var got map[int]int
	var files int
	deadline = time.Now().Add(60 * time.Second)
	for {
		got = map[int]int{}
		ents, _ := os.ReadDir(in.Mail + "/itest.test/user/new")
		files = len(ents)
		for _, e := range ents {
			b, _ := os.ReadFile(in.Mail + "/itest.test/user/new/" + e.Name())
			if m := re.FindSubmatch(b); m != nil {
				var n int
				fmt.Sscan(string(m[1]), &n)
				got[n]++
			}
		}
		missing := 0
		for n := range acked {
			if got[n] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never delivered\n%s", missing, nAcked, in.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	dups := 0
	for _, c := range got {
		if c > 1 {
			dups += c - 1
		}
	}
	unacked := len(got) - nAcked
	t.Logf("crash: %d sent, %d acknowledged and all delivered, %d delivered though not acknowledged (cut during DATA), %d duplicate deliveries, %d files", total, nAcked, max(unacked, 0), dups, files)
	// A duplicate is allowed only where the Maildir file was written but
	// the kill came before qmgr recorded the result in the queue file.
	if dups > sessions {
		t.Errorf("%d duplicates: more than the %d deliveries that can be in flight", dups, sessions)
	}
}

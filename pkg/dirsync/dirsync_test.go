package dirsync

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSharedAndOrdered: every caller's Sync returns after an fsync that
// started after its call, and concurrent callers share fsyncs.
func TestSharedAndOrdered(t *testing.T) {
	var g Group
	var mu sync.Mutex
	var fsyncs int
	var begun atomic.Int64 // fsync start times (ns), last one
	fsync := func(string) error {
		mu.Lock()
		fsyncs++
		mu.Unlock()
		begun.Store(time.Now().UnixNano())
		time.Sleep(2 * time.Millisecond)
		return nil
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			called := time.Now().UnixNano()
			if err := g.Sync("/d", fsync); err != nil {
				errs <- err.Error()
			}
			if begun.Load() < called {
				errs <- "returned before an fsync that began after the call"
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if fsyncs >= n || fsyncs == 0 {
		t.Errorf("%d fsyncs for %d callers: not shared", fsyncs, n)
	}
}

func TestFailureReachesWaiters(t *testing.T) {
	var g Group
	boom := errors.New("boom")
	if err := g.Sync("/d", func(string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	if err := g.Sync("/d", func(string) error { return nil }); err != nil {
		t.Fatalf("later sync: %v", err)
	}
	if err := Fsync(t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

// TestGatherAnnounced: a leader waits for the writers announced with
// Begin, so one directory fsync covers a writer that arrives after the
// leader; and each returns only after an fsync that began after its call.
func TestGatherAnnounced(t *testing.T) {
	defer func(d time.Duration) { MaxGather = d }(MaxGather)
	MaxGather = 10 * time.Second // never the reason the leader stops waiting here
	var g Group
	var fsyncs atomic.Int64
	var begun atomic.Int64
	fsync := func(string) error {
		fsyncs.Add(1)
		begun.Store(time.Now().UnixNano())
		return nil
	}
	const n = 5
	tickets := make([]*Ticket, n)
	for i := range tickets {
		tickets[i] = g.Begin("/d")
	}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// The writer's own file fsync: without gathering, the
			// first writer's directory fsync is long done when the
			// others arrive.
			time.Sleep(time.Duration(i) * 20 * time.Millisecond)
			called := time.Now().UnixNano()
			if err := tickets[i].Sync(fsync); err != nil {
				errs <- err.Error()
			}
			if begun.Load() < called {
				errs <- "returned before an fsync that began after the call"
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := fsyncs.Load(); got != 1 {
		t.Errorf("%d directory fsyncs for %d announced writers, want 1", got, n)
	}
}

// TestGatherBounded: an announced writer that never comes holds a leader
// back at most MaxGather, and Cancel ends the announcement.
func TestGatherBounded(t *testing.T) {
	var g Group
	lost := g.Begin("/d")
	start := time.Now()
	if err := g.Sync("/d", func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < MaxGather || d > MaxGather+time.Second {
		t.Errorf("leader waited %v, want about MaxGather (%v)", d, MaxGather)
	}
	lost.Cancel()
	lost.Cancel() // idempotent
	start = time.Now()
	if err := g.Sync("/d", func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= MaxGather {
		t.Errorf("leader waited %v with nobody announced", d)
	}
}

// TestTicketFailure: a failed fsync fails every ticket that needed it.
func TestTicketFailure(t *testing.T) {
	var g Group
	boom := errors.New("boom")
	a, b := g.Begin("/d"), g.Begin("/d")
	done := make(chan error, 1)
	go func() { done <- b.Sync(func(string) error { return boom }) }()
	if err := a.Sync(func(string) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("a: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Errorf("b: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b never returned")
	}
}

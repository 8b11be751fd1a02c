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

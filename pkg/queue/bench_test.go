package queue

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkCommit measures whole-message commits (Create, Envelope, 4 KiB
// of content, Commit) with 1 and 20 concurrent writers, for each SyncMode.
// It reports commits per second. Run it on the file system the queue will
// live on; on tmpfs every fsync is free and the figures mean nothing.
func BenchmarkCommit(b *testing.B) {
	content := testContent(4096)
	env := &Envelope{
		Sender:     "sender@example.org",
		ClientName: "mail.example.org",
		ClientAddr: "192.0.2.1",
		Recipients: []Recipient{{Addr: "a@example.com", Status: Pending}, {Addr: "b@example.com", Status: Pending}},
	}
	for _, mode := range []struct {
		name string
		m    SyncMode
	}{{"group", SyncGroup}, {"each", SyncEach}, {"fileonly", SyncFileOnly}} {
		for _, writers := range []int{1, 20} {
			b.Run(fmt.Sprintf("%s/writers=%d", mode.name, writers), func(b *testing.B) {
				s := newStore(b)
				s.SetSyncMode(mode.m)
				var dirSyncs int
				var mu sync.Mutex
				s.syncDir = func(dir string) error {
					mu.Lock()
					dirSyncs++
					mu.Unlock()
					return fsyncDir(dir)
				}
				commit := func() {
					w, err := s.Create(Incoming)
					if err != nil {
						b.Fatal(err)
					}
					w.Envelope(env)
					w.Write(content)
					if err := w.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				start := time.Now()
				var next sync.Mutex
				n := 0
				var wg sync.WaitGroup
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							next.Lock()
							if n >= b.N {
								next.Unlock()
								return
							}
							n++
							next.Unlock()
							commit()
						}
					}()
				}
				wg.Wait()
				el := time.Since(start)
				b.ReportMetric(float64(b.N)/el.Seconds(), "commits/s")
				b.ReportMetric(float64(dirSyncs)/float64(b.N), "dirsyncs/op")
			})
		}
	}
}

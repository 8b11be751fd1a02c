package queue

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// dirSyncer shares directory fsyncs between concurrent commits in one
// directory (group commit) without a goroutine of its own.
//
// Generations number the fsyncs: started is the last one begun, done the
// last one finished. A committer that has renamed its file needs a sync
// that begins after the rename, that is generation started+1 as seen under
// the lock after the rename. If no sync is running it runs that one
// itself (becoming the leader for everybody who arrived in the meantime);
// otherwise it waits for the running one to end and then either finds its
// generation done by a new leader or leads it. At most one fsync per
// directory runs at a time, and every waiter that arrived while one was
// running is covered by the next single fsync.
type dirSyncer struct {
	mu      sync.Mutex
	cond    sync.Cond
	running bool
	started uint64
	done    uint64
	// failed is the highest generation whose fsync failed, and err its
	// error. After a failed fsync of a directory the kernel may have
	// dropped the dirty state, so no later success can vouch for the
	// entries made before it: everyone who needed that generation fails.
	failed uint64
	err    error
}

func (s *Store) syncer(dir string) *dirSyncer {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.syncers[dir]
	if d == nil {
		d = &dirSyncer{}
		d.cond.L = &d.mu
		s.syncers[dir] = d
	}
	return d
}

// wait returns once an fsync of the directory that started after the call
// has finished, with that fsync's result.
func (d *dirSyncer) wait(dir string, fsync func(string) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	target := d.started + 1
	for d.done < target {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		gen := d.started
		d.mu.Unlock()
		err := fsync(dir)
		d.mu.Lock()
		d.running = false
		d.done = gen
		if err != nil {
			d.failed, d.err = gen, err
		}
		d.cond.Broadcast()
	}
	if d.failed >= target {
		return d.err
	}
	return nil
}

// errNoDirRead reports a directory the process may write but not read, so
// it cannot open it to fsync it: maildrop/ (mode 0730) for sendmail.
var errNoDirRead = errors.New("directory not readable")

// fsyncDir makes the entries of directory dir durable.
func fsyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("sync %s: %w", dir, errNoDirRead)
		}
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	// Some file systems do not support fsync on a directory at all.
	if errors.Is(err, syscall.EINVAL) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

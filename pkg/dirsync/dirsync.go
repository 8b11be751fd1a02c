// Package dirsync makes directory entries durable with shared fsyncs
// (group commit). A writer that has created or renamed a file in a
// directory calls Sync: it returns once an fsync of that directory that
// STARTED after the call has finished, so the caller's entry is on disk.
// Concurrent callers in one directory share fsyncs: at most one runs per
// directory at a time, and one fsync covers everybody who arrived while
// the previous one ran.
//
// It needs no goroutine of its own: the first caller that finds no fsync
// running does it for everyone (the leader); the others wait for it.
//
// Generations number the fsyncs: started is the last one begun, done the
// last one finished. A caller needs generation started+1 as seen under
// the lock on arrival. If no fsync is running it runs that one itself;
// otherwise it waits for the running one to end and then either finds its
// generation done by a new leader or leads it.
//
// After a failed fsync of a directory the kernel may have dropped the
// dirty state, so no later success can vouch for the entries made before
// it: everyone who needed that generation fails.
package dirsync

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// Group holds the per-directory state. The zero value is ready to use.
type Group struct {
	mu   sync.Mutex
	dirs map[string]*state
}

type state struct {
	mu      sync.Mutex
	cond    sync.Cond
	running bool
	started uint64
	done    uint64
	failed  uint64
	err     error
}

func (g *Group) state(dir string) *state {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dirs == nil {
		g.dirs = make(map[string]*state)
	}
	d := g.dirs[dir]
	if d == nil {
		d = &state{}
		d.cond.L = &d.mu
		g.dirs[dir] = d
	}
	return d
}

// Sync returns once an fsync of dir that started after the call has
// finished, with that fsync's result. fsync does the work (nil: Fsync);
// tests pass their own.
func (g *Group) Sync(dir string, fsync func(string) error) error {
	if fsync == nil {
		fsync = Fsync
	}
	d := g.state(dir)
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

// ErrNoRead reports a directory the process may write but not read, so it
// cannot open it to fsync it (sendmail in maildrop/, mode 0730).
var ErrNoRead = errors.New("directory not readable")

// Fsync makes the entries of directory dir durable.
func Fsync(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("sync %s: %w", dir, ErrNoRead)
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

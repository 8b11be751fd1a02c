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
//
// Gathering: a writer usually fsyncs its own file just before it links
// the file into the directory, and that fsync is what makes concurrent
// writers arrive at Sync at different moments, each finding the
// previous directory fsync done and starting a new one: about one
// directory fsync per file at a few hundred files a second. So a writer
// announces itself with Begin before its file fsync, and a leader about
// to fsync the directory first waits, at most MaxGather, until every
// announced writer has arrived (or cancelled): one fsync then covers
// them all. With nobody announced the leader does not wait at all.
package dirsync

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// MaxGather bounds how long a leader waits for announced writers before
// it fsyncs the directory. It is about the time a file fsync takes here,
// so waiting never costs much more than the fsync it saves. (A variable
// for tests.)
var MaxGather = 2 * time.Millisecond

// Group holds the per-directory state. The zero value is ready to use.
type Group struct {
	mu   sync.Mutex
	dirs map[string]*state
}

type state struct {
	mu      sync.Mutex
	cond    sync.Cond
	running bool
	coming  int // announced by Begin, not yet in Sync or Cancel
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

// Ticket is a writer's announced Sync of one directory (Begin).
type Ticket struct {
	d    *state
	dir  string
	used bool
}

// Begin announces that the caller will call Sync (or Cancel) on the
// returned ticket soon, typically after fsyncing the file it is about to
// link into dir. Every ticket must end in exactly one Sync or Cancel.
func (g *Group) Begin(dir string) *Ticket {
	d := g.state(dir)
	d.mu.Lock()
	d.coming++
	d.mu.Unlock()
	return &Ticket{d: d, dir: dir}
}

// Cancel withdraws the announcement (the writer failed before linking).
func (t *Ticket) Cancel() {
	if t.used {
		return
	}
	t.used = true
	t.d.mu.Lock()
	t.d.coming--
	t.d.cond.Broadcast()
	t.d.mu.Unlock()
}

// Sync is Group.Sync for an announced writer.
func (t *Ticket) Sync(fsync func(string) error) error {
	if t.used {
		panic("dirsync: ticket used twice")
	}
	t.used = true
	t.d.mu.Lock()
	t.d.coming--
	t.d.cond.Broadcast()
	return t.d.sync(t.dir, fsync)
}

// Sync returns once an fsync of dir that started after the call has
// finished, with that fsync's result. fsync does the work (nil: Fsync);
// tests pass their own.
func (g *Group) Sync(dir string, fsync func(string) error) error {
	d := g.state(dir)
	d.mu.Lock()
	return d.sync(dir, fsync)
}

// sync is called with d.mu held and releases it.
func (d *state) sync(dir string, fsync func(string) error) error {
	defer d.mu.Unlock()
	if fsync == nil {
		fsync = Fsync
	}
	target := d.started + 1
	for d.done < target {
		if d.running {
			d.cond.Wait()
			continue
		}
		// Lead: running keeps later arrivals waiting for this
		// generation while the announced writers gather.
		d.running = true
		d.gather()
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

// gather waits, d.mu held, until no announced writer is on its way or
// MaxGather has passed.
func (d *state) gather() {
	if d.coming <= 0 {
		return
	}
	expired := false
	timer := time.AfterFunc(MaxGather, func() {
		d.mu.Lock()
		expired = true
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	for d.coming > 0 && !expired {
		d.cond.Wait()
	}
	timer.Stop()
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

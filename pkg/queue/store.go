package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"postern/pkg/dirsync"
)

// Queue directory names, relative to the queue directory.
const (
	Maildrop = "maildrop" // written by sendmail (setgid), read by pickup
	Incoming = "incoming" // written by cleanup, read by qmgr
	Active   = "active"   // messages qmgr is scheduling
	Deferred = "deferred" // waiting for a retry; mtime is the next attempt
	Hold     = "hold"     // held by the administrator
	Corrupt  = "corrupt"  // files that failed to parse
	Bounce   = "bounce"   // per-message logs of failed recipients
	Defer    = "defer"    // per-message logs of deferred recipients
	Trace    = "trace"    // per-message delivery traces (sendmail -v, DSN SUCCESS)
	Public   = "public"   // sockets local users may reach
	Private  = "private"  // sockets for the daemons only
	PidDir   = "pid"      // master.pid
)

// tempSuffix ends the name of a queue file that is still being written.
// It contains a '.', so a temporary name is never a valid ID.
const tempSuffix = ".tmp"

// SyncMode says how Commit makes a new directory entry durable.
type SyncMode int

const (
	// SyncGroup fsyncs the directory after the rename; commits that
	// wait at the same time in the same directory share one fsync.
	// This is the default.
	SyncGroup SyncMode = iota
	// SyncEach fsyncs the directory once for every commit.
	SyncEach
	// SyncFileOnly fsyncs the file and never the directory, as Postfix
	// does. It is here to be measured; see the package doc for what it
	// risks.
	SyncFileOnly
)

// Store is a queue directory. Its methods are safe for concurrent use.
type Store struct {
	dir string

	mu   sync.Mutex
	mode SyncMode
	// group shares directory fsyncs between concurrent commits.
	group dirsync.Group

	// hook, when set (tests only), is called at each step of the commit
	// protocol with the step's name and the file's current path.
	hook func(step, path string)
	// syncDir makes the entries of one directory durable; tests wrap it.
	syncDir func(dir string) error

	// Recycling (free.go), under mu.
	freeCount int // approximate number of files in free/; -1 unknown
	removes   int // Remove calls, to pace the counts of free/
	freeNames []string
	freeScan  time.Time
}

// NewStore returns the store rooted at dir, the queue_directory. It does
// not touch the file system; Ensure creates the directories.
func NewStore(dir string) *Store {
	return &Store{dir: dir, syncDir: fsyncDir, freeCount: -1}
}

// Dir returns the queue directory.
func (s *Store) Dir() string { return s.dir }

// SetSyncMode chooses how Commit makes directory entries durable. Call it
// before the first Create.
func (s *Store) SetSyncMode(m SyncMode) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

func (s *Store) syncMode() SyncMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

func (s *Store) step(name, path string) {
	if s.hook != nil {
		s.hook(name, path)
	}
}

// Path returns the path of message id in queue.
func (s *Store) Path(queue string, id ID) string {
	return filepath.Join(s.dir, queue, string(id))
}

func checkName(queue string, id ID) error {
	if !ValidID(string(id)) {
		return fmt.Errorf("queue: invalid queue ID %q", id)
	}
	if queue == "" || strings.ContainsAny(queue, "/\x00") || queue == "." || queue == ".." {
		return fmt.Errorf("queue: invalid queue name %q", queue)
	}
	return nil
}

// Move renames message id from queue from to queue to. It never copies.
// The directories are not synced: after a crash the file is in one of the
// two queues, complete either way, and qmgr scans both.
func (s *Store) Move(id ID, from, to string) error {
	if err := checkName(from, id); err != nil {
		return err
	}
	if err := checkName(to, id); err != nil {
		return err
	}
	if err := rename(s.Path(from, id), s.Path(to, id)); err != nil {
		return fmt.Errorf("%s: move from %s to %s: %w", id, from, to, err)
	}
	if moveEndsDeferLog(from, to) {
		// The message has moved: what happens to it must not depend on
		// an informational file, so a failure here is not the caller's.
		s.RemoveDeferLog(id)
	}
	return nil
}

// moveEndsDeferLog reports whether a move from one queue to another
// starts a new delivery attempt (or a new life, requeued), which clears
// the defer log (deferlog.go). Into active/ from incoming/ is the path of
// every new message, which has no log: it costs no unlink.
func moveEndsDeferLog(from, to string) bool {
	switch to {
	case Deferred, Hold:
		return false
	case Active:
		return from != Incoming
	}
	return true
}

// Remove deletes message id from queue. The directory is not synced: a
// removal lost in a crash leaves a file whose recipients the caller has
// already marked done (and synced), so it is removed again.
func (s *Store) Remove(queue string, id ID) error {
	if err := checkName(queue, id); err != nil {
		return err
	}
	path := s.Path(queue, id)
	if queue != Incoming && queue != Active && queue != Maildrop {
		// See deferlog.go for why incoming/ and active/ need not. As in
		// Move, the log's fate is not the caller's concern. The same for
		// qmgr's sendmail -v marker, trace/ID (pkg/qmgr trace.go), which
		// qmgr itself removes when a message leaves active/.
		s.RemoveDeferLog(id)
		os.Remove(s.Path(Trace, id))
	}
	if s.recycle(queue, path) {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("%s: remove from %s: %w", id, queue, err)
	}
	return nil
}

// Quarantine moves message id from queue to corrupt/. The caller logs why.
func (s *Store) Quarantine(queue string, id ID) error {
	return s.Move(id, queue, Corrupt)
}

// List returns the IDs of the messages in queue, sorted (which is arrival
// order, to the microsecond). Temporary files, directories and names that
// are not queue IDs are skipped. A missing queue directory is an error.
func (s *Store) List(queue string) ([]ID, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, queue))
	if err != nil {
		return nil, fmt.Errorf("queue: list %s: %w", queue, err)
	}
	ids := make([]ID, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() && ValidID(e.Name()) {
			ids = append(ids, ID(e.Name()))
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// SetNextAttempt records when a deferred message is next due, as the file's
// modification time (Postfix does the same). Writing a status byte changes
// the mtime too, so call this after SetStatus.
func (s *Store) SetNextAttempt(queue string, id ID, t time.Time) error {
	if err := checkName(queue, id); err != nil {
		return err
	}
	if err := os.Chtimes(s.Path(queue, id), time.Now(), t); err != nil {
		return fmt.Errorf("%s: set next attempt: %w", id, err)
	}
	return nil
}

// NextAttempt returns the time recorded by SetNextAttempt (the file's
// modification time).
func (s *Store) NextAttempt(queue string, id ID) (time.Time, error) {
	if err := checkName(queue, id); err != nil {
		return time.Time{}, err
	}
	fi, err := os.Stat(s.Path(queue, id))
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: next attempt: %w", id, err)
	}
	return fi.ModTime(), nil
}

// CleanTemp removes the temporary files in queue that have not been
// written to for olderThan: the remains of writers that crashed or were
// killed. Such a file was never acknowledged (Commit renames before it
// returns), so removing it loses nothing. olderThan must exceed the longest
// pause a live writer makes between two writes (an SMTP DATA timeout).
func (s *Store) CleanTemp(queue string, olderThan time.Duration) (int, error) {
	dir := filepath.Join(s.dir, queue)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("queue: clean %s: %w", queue, err)
	}
	cutoff := time.Now().Add(-olderThan)
	n := 0
	var errs []error
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), tempSuffix) {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if fi.ModTime().After(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("queue: clean %s: %w", queue, errors.Join(errs...))
	}
	return n, nil
}

// rename is os.Rename without the Lstat of the target that os.Rename
// makes first (to refuse a directory there): queue names are never
// directories, and the extra system call was 1% of a message's CPU.
func rename(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

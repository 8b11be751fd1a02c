package queue

// Recycling of queue files.
//
// Creating a file costs an inode allocation, and on ext4 that gets slower
// the more inodes were freed in the last minutes: the allocator skips each
// recently deleted inode of the block group, looking it up in the inode
// table (recently_deleted() in fs/ext4/ialloc.c, for file systems without
// a journal). An MTA frees one queue file per message, so at a few hundred
// messages a second every new file — queue file and delivered Maildir file
// alike — pays for a scan over thousands of inodes: measured here, 18% of
// all CPU of the local benchmark went to that scan.
//
// So Remove does not free the inode: it renames the file into free/ and
// truncates it there (the data blocks are released at once), and Create
// in incoming/ takes a file from free/ back (rename to its temporary
// name, truncate, reuse). Only the names change hands; a file in free/ is
// never a message (List never looks there), and a crash at any step
// leaves either a file in free/ or an incomplete temporary file that no
// reader accepts and CleanTemp removes. The pool is bounded (freeMax);
// beyond it Remove unlinks as before. maildrop/ files are never recycled:
// they belong to the users who submitted them.

import (
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Free is the directory of recyclable queue files.
const Free = "free"

const (
	freeMax      = 1024                  // files kept in free/ at most
	freeRecount  = 256                   // removals between two counts of free/
	freeBatch    = 256                   // names read from free/ at once
	freeRescanIn = 50 * time.Millisecond // least time between reads of an empty free/
)

// recycle moves a removed queue file into free/; false means the caller
// must unlink it instead.
func (s *Store) recycle(queue, path string) bool {
	if queue == Maildrop {
		return false
	}
	s.mu.Lock()
	// Count free/ now and then (another process takes files from it),
	// never on every call: when nobody creates messages (a flush) the
	// pool stays full and each call would read the directory.
	if s.freeCount < 0 || s.removes%freeRecount == 0 {
		s.freeCount = s.countFree()
	}
	s.removes++
	full := s.freeCount >= freeMax
	if !full {
		s.freeCount++
	}
	s.mu.Unlock()
	if full {
		return false
	}
	dst := filepath.Join(s.dir, Free, string(NewID()))
	if err := rename(path, dst); err != nil {
		s.mu.Lock()
		s.freeCount--
		s.mu.Unlock()
		return false
	}
	// Give the blocks back now; a crash before this only leaves a file in
	// free/ that its next user truncates.
	os.Truncate(dst, 0)
	return true
}

func (s *Store) countFree() int {
	f, err := os.Open(filepath.Join(s.dir, Free))
	if err != nil {
		return freeMax // no free/ (an old queue): never recycle
	}
	defer f.Close()
	names, _ := f.Readdirnames(freeMax)
	return len(names)
}

// reuse takes a file from free/ and renames it to tmp, truncated and with
// mode perm; nil when none can be had.
func (s *Store) reuse(tmp string, perm os.FileMode) *os.File {
	for tries := 0; tries < 4; tries++ {
		name := s.nextFree()
		if name == "" {
			return nil
		}
		if err := rename(filepath.Join(s.dir, Free, name), tmp); err != nil {
			continue // taken by another process, or gone
		}
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0)
		if err != nil {
			os.Remove(tmp)
			continue
		}
		fi, err := f.Stat()
		st, _ := fi.Sys().(*syscall.Stat_t)
		if err != nil || !fi.Mode().IsRegular() || st == nil || st.Nlink != 1 || int(st.Uid) != os.Geteuid() || f.Chmod(perm) != nil {
			f.Close()
			os.Remove(tmp)
			continue
		}
		return f
	}
	return nil
}

// nextFree returns a name from free/, reading the directory in batches.
func (s *Store) nextFree() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.freeNames) == 0 {
		if time.Since(s.freeScan) < freeRescanIn {
			return ""
		}
		s.freeScan = time.Now()
		f, err := os.Open(filepath.Join(s.dir, Free))
		if err != nil {
			return ""
		}
		s.freeNames, _ = f.Readdirnames(freeBatch)
		f.Close()
		if len(s.freeNames) == 0 {
			return ""
		}
	}
	n := s.freeNames[len(s.freeNames)-1]
	s.freeNames = s.freeNames[:len(s.freeNames)-1]
	return n
}

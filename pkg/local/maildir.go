package local

// Maildir and mbox stores, written safely by a process that may be root.
//
// Every path below the mailbox base directory is walked one component at a
// time with openat(O_NOFOLLOW|O_DIRECTORY), so a mailbox owner who replaces
// a directory of their mailbox with a symbolic link cannot make a root
// delivery write elsewhere. Files are created with O_EXCL|O_NOFOLLOW and
// handed to the recipient's uid/gid with fchown before they become visible.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"postern/pkg/dirsync"
)

// owner is who delivered files and created directories belong to; chown is
// false when this process cannot (or need not) change ownership.
type owner struct {
	uid, gid int
	chown    bool
}

// openDirs opens base/rel one component at a time without following
// symbolic links, creating missing directories (mode 0700, given to o).
func openDirs(base, rel string, o owner) (int, error) {
	fd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", base, err)
	}
	return walk(fd, rel, o)
}

// walk descends from the directory fd along rel, as openDirs; it takes
// ownership of fd.
func walk(fd int, rel string, o owner) (int, error) {
	for _, comp := range strings.Split(rel, "/") {
		if comp == "" || comp == "." {
			continue
		}
		if comp == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("mailbox path %q leaves the base directory", rel)
		}
		next, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(fd, comp, 0700); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return -1, fmt.Errorf("create directory %s: %w", comp, err)
			}
			next, err = unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == nil && o.chown {
				if err = unix.Fchown(next, o.uid, o.gid); err != nil {
					unix.Close(next)
				}
			}
			if err == nil {
				// Make the new directory entry durable before mail depends on it.
				unix.Fsync(fd)
			}
		}
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("open directory %s: %w", comp, err)
		}
		fd = next
	}
	return fd, nil
}

var maildirCounter atomic.Uint64

// openMaildir opens base/rel (rel ends in '/') as openDirs does, makes
// sure tmp/, new/ and cur/ exist, and returns new/.
func openMaildir(base, rel string, o owner) (int, error) {
	dir, err := openDirs(base, rel, o)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dir)
	var sub [3]int
	for i, name := range []string{"tmp", "new", "cur"} {
		var dup int
		dup, err = unix.Dup(dir)
		if err == nil {
			sub[i], err = walk(dup, name, o)
		}
		if err != nil {
			for _, fd := range sub[:i] {
				unix.Close(fd)
			}
			return -1, err
		}
	}
	unix.Close(sub[0])
	unix.Close(sub[2])
	return sub[1], nil
}

// deliverMaildir writes one message into the Maildir base/rel (rel ends in
// '/'): as an unnamed file in new/, fsynced, then linked in (or, where
// the file system cannot, into tmp/, fsynced, then renamed into new/),
// and new/ fsynced (shared with concurrent deliveries to the same Maildir
// through group), so a message is in new/ only when complete and
// durable. cache, when not nil, keeps new/ open between deliveries.
func deliverMaildir(base, rel, hostname string, o owner, group *dirsync.Group, cache *dirCache, write func(io.Writer) error) error {
	var newd int
	if cache != nil {
		fd, release, err := cache.get(base, rel, o)
		if err != nil {
			return err
		}
		defer release()
		newd = fd
	} else {
		fd, err := openMaildir(base, rel, o)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		newd = fd
	}

	now := time.Now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), maildirCounter.Add(1), safeHost(hostname))
	newPath := filepath.Join(base, rel, "new")
	// Announce the new/ fsync before the file's own: deliveries to one
	// Maildir whose writes overlap then share it (dirsync's gathering).
	ticket := group.Begin(newPath)
	defer ticket.Cancel() // no-op once used
	if done, err := deliverUnnamed(newd, name, o, write); done {
		if err != nil {
			return err
		}
		if err := ticket.Sync(func(string) error { return unix.Fsync(newd) }); err != nil {
			return fmt.Errorf("fsync maildir new/: %w", err)
		}
		return nil
	}
	dup, err := unix.Openat(newd, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open maildir: %w", err)
	}
	tmp, err := walk(dup, "tmp", o)
	if err != nil {
		return err
	}
	defer unix.Close(tmp)
	fd, err := unix.Openat(tmp, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0600)
	if err != nil {
		return fmt.Errorf("create maildir file: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	ok := false
	defer func() {
		if !ok {
			unix.Unlinkat(tmp, name, 0)
		}
	}()
	if o.chown {
		if err := f.Chown(o.uid, o.gid); err != nil {
			f.Close()
			return fmt.Errorf("chown maildir file: %w", err)
		}
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write maildir file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync maildir file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close maildir file: %w", err)
	}
	if err := unix.Renameat(tmp, name, newd, name); err != nil {
		return fmt.Errorf("move maildir file to new: %w", err)
	}
	ok = true
	if err := ticket.Sync(func(string) error { return unix.Fsync(newd) }); err != nil {
		return fmt.Errorf("fsync maildir new/: %w", err)
	}
	return nil
}

// deliverUnnamed writes the message as an unnamed file in new/
// (O_TMPFILE), fsyncs it and only then links it in under name: the file
// appears in new/ complete and durable, as the tmp/-then-rename protocol
// guarantees, with one directory update instead of three, and a crash
// leaves no debris (the kernel frees an unnamed inode). done is false when
// the file system cannot do it, and the caller uses tmp/.
func deliverUnnamed(newd int, name string, o owner, write func(io.Writer) error) (done bool, err error) {
	fd, err := unix.Openat(newd, ".", unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, 0600)
	if err != nil {
		return false, nil
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if o.chown {
		if err := f.Chown(o.uid, o.gid); err != nil {
			return true, fmt.Errorf("chown maildir file: %w", err)
		}
	}
	if err := write(f); err != nil {
		return true, fmt.Errorf("write maildir file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return true, fmt.Errorf("fsync maildir file: %w", err)
	}
	// linkat through /proc needs no privilege, unlike AT_EMPTY_PATH.
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), newd, name, unix.AT_SYMLINK_FOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil // no /proc: use tmp/
		}
		return true, fmt.Errorf("link maildir file into new: %w", err)
	}
	return true, nil
}

func safeHost(h string) string {
	// Maildir names must not contain '/' or ':' (Maildir specification).
	return strings.NewReplacer("/", "\\057", ":", "\\072").Replace(h)
}

// mboxOptions say how deliverMbox locks and checks a mailbox file.
type mboxOptions struct {
	dotlock, fcntl, flock bool
	// dotlockMayFail: a dot-lock that cannot be created for lack of
	// permission is skipped (external files in directories the delivering
	// user cannot write).
	dotlockMayFail bool
	attempts       int           // lock attempts (deliver_lock_attempts)
	delay          time.Duration // between attempts (deliver_lock_delay)
	stale          time.Duration // a dot-lock older than this is removed (stale_lock_time)
	limit          int64         // largest file size (mailbox_size_limit); 0: none
	// strictOwner: an existing non-empty mailbox must belong to o.uid
	// (strict_mailbox_ownership).
	strictOwner bool
}

// virtualMbox are the locks of the virtual agent: fcntl and a dot-lock.
var virtualMbox = mboxOptions{dotlock: true, fcntl: true, attempts: 20, delay: 50 * time.Millisecond, stale: 5 * time.Minute}

// errFileTooLarge is a write past mboxOptions.limit (Postfix's EFBIG from
// its RLIMIT_FSIZE on mailbox_size_limit).
var errFileTooLarge = errors.New("file too large")

// limitWriter fails writes that would grow a file past its limit.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errFileTooLarge
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

// deliverMbox appends one message to the mbox file base/rel under the
// locks o asks for (a dot-lock, then fcntl and/or flock on the file), then
// fsyncs it. On a write error the file is truncated back to its old size
// so no half message remains.
func deliverMbox(base, rel string, o owner, opt mboxOptions, write func(io.Writer) error) error {
	dirPart, file := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dirPart, file = rel[:i], rel[i+1:]
	}
	if file == "" || file == ".." || file == "." {
		return fmt.Errorf("bad mailbox path %q", rel)
	}
	dir, err := openDirs(base, dirPart, o)
	if err != nil {
		return err
	}
	defer unix.Close(dir)

	attempts := max(opt.attempts, 1)
	if opt.dotlock {
		lock := file + ".lock"
		locked, skipped := false, false
		for i := 0; i < attempts; i++ {
			lfd, err := unix.Openat(dir, lock, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0600)
			if err == nil {
				unix.Close(lfd)
				locked = true
				break
			}
			if opt.dotlockMayFail && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)) {
				skipped = true
				break
			}
			if !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("create dot-lock: %w", err)
			}
			var st unix.Stat_t
			if opt.stale > 0 && unix.Fstatat(dir, lock, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && time.Since(time.Unix(st.Mtim.Sec, 0)) > opt.stale {
				unix.Unlinkat(dir, lock, 0)
				continue
			}
			time.Sleep(opt.delay * time.Duration(i+1))
		}
		if !locked && !skipped {
			return fmt.Errorf("mailbox %s is locked", rel)
		}
		if locked {
			defer unix.Unlinkat(dir, lock, 0)
		}
	}

	fd, err := unix.Openat(dir, file, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0600)
	if err != nil {
		return fmt.Errorf("open mailbox: %w", err)
	}
	f := os.NewFile(uintptr(fd), file)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("mailbox %s is not a regular file", rel)
	}
	// A hard link would let a mailbox owner make this delivery append to
	// another file they cannot write.
	if st.Nlink > 1 {
		return fmt.Errorf("mailbox %s has more than one hard link", rel)
	}
	if opt.strictOwner && st.Size > 0 && int(st.Uid) != o.uid {
		return fmt.Errorf("mailbox %s is not owned by uid %d", rel, o.uid)
	}
	if opt.fcntl {
		if err := lockRetry(attempts, opt.delay, func() error {
			fl := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
			return unix.FcntlFlock(f.Fd(), unix.F_SETLK, &fl)
		}); err != nil {
			return fmt.Errorf("lock mailbox: %w", err)
		}
	}
	if opt.flock {
		if err := lockRetry(attempts, opt.delay, func() error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) }); err != nil {
			return fmt.Errorf("lock mailbox: %w", err)
		}
	}
	size := st.Size
	if o.chown && size == 0 {
		f.Chown(o.uid, o.gid)
	}
	var w io.Writer = f
	if opt.limit > 0 {
		w = &limitWriter{w: f, left: opt.limit - size}
	}
	if err := write(w); err != nil {
		f.Truncate(size)
		return fmt.Errorf("write mailbox: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Truncate(size)
		return fmt.Errorf("fsync mailbox: %w", err)
	}
	return nil
}

// lockRetry tries a non-blocking lock up to attempts times.
func lockRetry(attempts int, delay time.Duration, try func() error) error {
	var err error
	for i := 0; i < attempts; i++ {
		if err = try(); err == nil {
			return nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		time.Sleep(delay)
	}
	return err
}

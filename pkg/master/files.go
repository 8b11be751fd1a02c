package master

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"postern/pkg/config"
	"postern/pkg/queue"
)

// LockFile is the instance lock: the master holds an exclusive flock on
// it for as long as it runs, so two masters never share an instance.
func LockFile(cfg *config.Config) string {
	return filepath.Join(cfg.Get("data_directory"), "master.lock")
}

// PidFile holds the master's pid, written once the master is ready and
// removed when it exits.
func PidFile(cfg *config.Config) string {
	return filepath.Join(cfg.Get("queue_directory"), queue.PidDir, "master.pid")
}

// Owner is mail_owner and setgid_group, resolved.
type Owner struct {
	UID, GID  int // mail_owner
	SetgidGID int // setgid_group
}

// LookupOwner resolves mail_owner and setgid_group. Only root needs them
// (to own the queue and to start unprivileged services as mail_owner);
// for anyone else it returns the caller's own ids. A missing account or
// group is an error that says how to create it; mail_owner must not be
// root.
func LookupOwner(cfg *config.Config) (Owner, error) {
	if os.Geteuid() != 0 {
		return Owner{UID: os.Getuid(), GID: os.Getgid(), SetgidGID: os.Getgid()}, nil
	}
	name := cfg.Get("mail_owner")
	u, err := user.Lookup(name)
	if err != nil {
		return Owner{}, fmt.Errorf("mail_owner account %q does not exist; create it with: useradd --system --no-create-home --shell /usr/sbin/nologin %s", name, name)
	}
	var o Owner
	o.UID, _ = strconv.Atoi(u.Uid)
	o.GID, _ = strconv.Atoi(u.Gid)
	if o.UID == 0 {
		return Owner{}, fmt.Errorf("mail_owner %q has uid 0: it must be an unprivileged account", name)
	}
	gname := cfg.Get("setgid_group")
	g, err := user.LookupGroup(gname)
	if err != nil {
		return Owner{}, fmt.Errorf("setgid_group %q does not exist; create it with: groupadd --system %s", gname, gname)
	}
	o.SetgidGID, _ = strconv.Atoi(g.Gid)
	return o, nil
}

// Prepare creates or repairs what an instance needs before its master
// runs: the queue tree (queue.Store.Ensure, owned by mail_owner when
// root), data_directory (mode 0700, mail_owner's as in Postfix) and, as
// root, a maillog_file owned by mail_owner. It returns one line per
// change.
func Prepare(cfg *config.Config, o Owner) ([]string, error) {
	qdir := cfg.Get("queue_directory")
	if qdir == "" || !filepath.IsAbs(qdir) {
		return nil, fmt.Errorf("queue_directory %q must be an absolute path", qdir)
	}
	if err := os.MkdirAll(qdir, 0o755); err != nil {
		return nil, err
	}
	changes, err := queue.NewStore(qdir).Ensure(o.UID, o.GID, o.SetgidGID)
	if err != nil {
		return changes, err
	}
	ddir := cfg.Get("data_directory")
	if ddir == "" || !filepath.IsAbs(ddir) {
		return changes, fmt.Errorf("data_directory %q must be an absolute path", ddir)
	}
	if _, err := os.Lstat(ddir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(ddir, 0o700); err != nil {
			return changes, err
		}
		changes = append(changes, "created "+ddir)
		if os.Geteuid() == 0 {
			if err := os.Lchown(ddir, o.UID, o.GID); err != nil {
				return changes, err
			}
		}
	}
	// Workers running as mail_owner append to maillog_file themselves,
	// so root makes it theirs. Only a regular file is touched (not
	// /dev/stdout, not a symlink); maillog_file_prefixes already keeps
	// the path under a trusted directory.
	if f := cfg.Get("maillog_file"); f != "" && os.Geteuid() == 0 && !strings.HasPrefix(f, "/dev/") && filepath.IsAbs(f) {
		lf, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return changes, fmt.Errorf("maillog_file: %w", err)
		}
		defer lf.Close()
		if fi, err := lf.Stat(); err == nil && fi.Mode().IsRegular() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != o.UID || int(st.Gid) != o.GID) {
				if err := lf.Chown(o.UID, o.GID); err != nil {
					return changes, fmt.Errorf("maillog_file: %w", err)
				}
				changes = append(changes, fmt.Sprintf("owner of %s %d:%d -> %d:%d", f, st.Uid, st.Gid, o.UID, o.GID))
			}
		}
	}
	return changes, nil
}

// lock takes the instance lock and writes the pid into it, as Postfix's
// master.lock. The file stays open (close-on-exec) for the master's
// life; the kernel drops the lock when the master dies.
func lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the Postern mail system is already running (%s is locked)", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%10d\n", os.Getpid())
	return f, nil
}

// writePid writes the pid file atomically, in Postfix's format.
func writePid(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%10d\n", os.Getpid())), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Running reports the pid of the instance's master when one runs. A pid
// file whose process is gone, or whose instance lock is free, is stale:
// not running.
func Running(cfg *config.Config) (int, bool) {
	b, err := os.ReadFile(PidFile(cfg))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0, false
	}
	// The lock tells a live master from a reused pid. A caller that may
	// not open the lock file (not root) goes by the pid alone.
	f, err := os.Open(LockFile(cfg))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false
	}
	if err == nil {
		defer f.Close()
		if syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return 0, false
		}
	}
	return pid, true
}

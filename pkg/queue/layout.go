package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DirSpec is one directory of the queue, as a line of Postfix's
// postfix-files: name, mode, and owner.
type DirSpec struct {
	Name string // relative to the queue directory; "." is the queue directory itself
	Mode os.FileMode
	// SetgidGroup: the group is setgid_group (postdrop), whose members
	// (sendmail, through its setgid step) may write maildrop/ and reach
	// public/. Otherwise the group is mail_owner's, or root's for Root.
	SetgidGroup bool
	// Root: owned by root, not mail_owner (the queue directory itself and
	// pid/, so that mail_owner cannot replace master.pid).
	Root bool
}

// Layout lists every directory of a queue, in creation order. No mode is
// writable by others; only maildrop/ is writable by its group.
var Layout = []DirSpec{
	{Name: ".", Mode: 0o755, Root: true},
	{Name: PidDir, Mode: 0o755, Root: true},
	{Name: Maildrop, Mode: 0o730, SetgidGroup: true},
	{Name: Public, Mode: 0o710, SetgidGroup: true},
	{Name: Private, Mode: 0o700},
	{Name: Incoming, Mode: 0o700},
	{Name: Active, Mode: 0o700},
	{Name: Deferred, Mode: 0o700},
	{Name: Hold, Mode: 0o700},
	{Name: Corrupt, Mode: 0o700},
	{Name: Bounce, Mode: 0o700},
	{Name: Defer, Mode: 0o700},
	{Name: Trace, Mode: 0o700},
	{Name: Free, Mode: 0o700},
}

// Ensure creates every directory of Layout that is missing and repairs the
// mode of every one that exists. Running as root it also sets the owner:
// uid:gid (mail_owner), uid:setgidGID for SetgidGroup entries, root for
// Root entries (group left as is). Not as root it changes modes only. It
// returns one line per change made. It refuses a path that is a symlink or
// not a directory, and never makes anything writable by others.
func (s *Store) Ensure(uid, gid, setgidGID int) ([]string, error) {
	root := os.Geteuid() == 0
	var changes []string
	for _, d := range Layout {
		if d.Mode&0o002 != 0 {
			return changes, fmt.Errorf("queue: layout: %s would be world-writable", d.Name)
		}
		path := filepath.Clean(filepath.Join(s.dir, d.Name))
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			mkdir := os.Mkdir
			if d.Name == "." {
				mkdir = os.MkdirAll // the parents of queue_directory: 0755 less umask
			}
			if err := mkdir(path, d.Mode); err != nil {
				return changes, fmt.Errorf("queue: create %s: %w", path, err)
			}
			changes = append(changes, fmt.Sprintf("created %s", path))
			fi, err = os.Lstat(path)
		}
		if err != nil {
			return changes, fmt.Errorf("queue: %w", err)
		}
		if !fi.IsDir() {
			return changes, fmt.Errorf("queue: %s is not a directory (%v)", path, fi.Mode().Type())
		}
		if root {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return changes, fmt.Errorf("queue: %s: no owner information", path)
			}
			wantUID, wantGID := uid, gid
			switch {
			case d.Root:
				wantUID, wantGID = 0, int(st.Gid)
			case d.SetgidGroup:
				wantGID = setgidGID
			}
			if int(st.Uid) != wantUID || int(st.Gid) != wantGID {
				if err := os.Lchown(path, wantUID, wantGID); err != nil {
					return changes, fmt.Errorf("queue: %w", err)
				}
				changes = append(changes, fmt.Sprintf("owner of %s %d:%d -> %d:%d", path, st.Uid, st.Gid, wantUID, wantGID))
			}
		}
		// Mkdir's mode went through the umask, and an existing
		// directory may have any mode: set it exactly (this also
		// clears setuid, setgid and sticky bits).
		if have := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); have != d.Mode {
			if err := os.Chmod(path, d.Mode); err != nil {
				return changes, fmt.Errorf("queue: %w", err)
			}
			changes = append(changes, fmt.Sprintf("mode of %s %#o -> %#o", path, unixMode(have), unixMode(d.Mode)))
		}
	}
	return changes, nil
}

// unixMode converts the permission and special bits of m to their chmod(2)
// values, for messages.
func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

package local

import (
	"fmt"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// dirCache keeps the new/ directories of recently used Maildirs open, so a
// delivery to a busy mailbox costs one stat instead of a walk of six
// openat calls (base, each component, tmp, new, cur).
//
// A cached descriptor is used only while the path still names the same
// directory: each use stats base/rel/new (without following a final
// symbolic link) and compares device and inode with the descriptor's. A
// Maildir removed, renamed or replaced since is walked again, safely, as
// openDirs does; an intermediate component replaced by a symbolic link to
// the same directory passes the check but the delivery still goes into
// the directory that was opened safely.
type dirCache struct {
	mu    sync.Mutex
	m     map[string]*cachedDir
	clock uint64
}

type cachedDir struct {
	key      string
	fd       int
	dev, ino uint64
	refs     int    // deliveries using fd now
	evicted  bool   // close fd when refs drops to 0
	used     uint64 // clock at last use (least recently used goes first)
}

const dirCacheMax = 256

// get returns an open descriptor of base/rel/new (rel ends in '/'),
// creating the Maildir as openDirs does when it is not cached; release
// must be called once the descriptor is no longer used.
func (c *dirCache) get(base, rel string, o owner) (fd int, release func(), err error) {
	path := filepath.Join(base, rel, "new")
	key := fmt.Sprintf("%d:%d:%t:%s", o.uid, o.gid, o.chown, path)
	var st unix.Stat_t
	statErr := unix.Fstatat(unix.AT_FDCWD, path, &st, unix.AT_SYMLINK_NOFOLLOW)
	c.mu.Lock()
	if e := c.m[key]; e != nil {
		if statErr == nil && uint64(st.Dev) == e.dev && st.Ino == e.ino {
			e.refs++
			c.clock++
			e.used = c.clock
			c.mu.Unlock()
			return e.fd, func() { c.release(e) }, nil
		}
		c.drop(e)
	}
	c.mu.Unlock()

	newd, err := openMaildir(base, rel, o)
	if err != nil {
		return -1, nil, err
	}
	if err := unix.Fstat(newd, &st); err != nil {
		unix.Close(newd)
		return -1, nil, fmt.Errorf("stat maildir new/: %w", err)
	}
	e := &cachedDir{key: key, fd: newd, dev: uint64(st.Dev), ino: st.Ino, refs: 1}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*cachedDir)
	}
	if old := c.m[key]; old != nil {
		c.drop(old) // a concurrent delivery cached it meanwhile
	}
	if len(c.m) >= dirCacheMax {
		var lru *cachedDir
		for _, x := range c.m {
			if lru == nil || x.used < lru.used {
				lru = x
			}
		}
		c.drop(lru)
	}
	c.clock++
	e.used = c.clock
	c.m[key] = e
	return e.fd, func() { c.release(e) }, nil
}

// drop removes e from the cache; its descriptor is closed once unused.
// c.mu is held.
func (c *dirCache) drop(e *cachedDir) {
	if c.m[e.key] == e {
		delete(c.m, e.key)
	}
	e.evicted = true
	if e.refs == 0 {
		unix.Close(e.fd)
		e.fd = -1
	}
}

func (c *dirCache) release(e *cachedDir) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.evicted {
		unix.Close(e.fd)
		e.fd = -1
	}
}

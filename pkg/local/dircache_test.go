package local

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"postern/pkg/dirsync"
)

func deliverCached(t *testing.T, c *dirCache, base, rel, body string) error {
	t.Helper()
	var g dirsync.Group
	return deliverMaildir(base, rel, "host", owner{}, &g, c, func(w io.Writer) error {
		_, err := io.WriteString(w, body)
		return err
	})
}

func countNew(t *testing.T, dir string) int {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// TestDirCacheFollowsThePath: a cached new/ is used only while the path
// still names it; a removed or renamed Maildir is made again at its path
// and the message lands there, never in the old directory.
func TestDirCacheFollowsThePath(t *testing.T) {
	base := t.TempDir()
	var c dirCache
	box := filepath.Join(base, "example.org", "u")
	for i := 0; i < 3; i++ {
		if err := deliverCached(t, &c, base, "example.org/u/", "m\n"); err != nil {
			t.Fatal(err)
		}
	}
	if n := countNew(t, box); n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}
	if len(c.m) != 1 {
		t.Fatalf("%d cached directories, want 1", len(c.m))
	}
	// Renamed away: the next message goes to a new Maildir at the path.
	moved := filepath.Join(base, "moved")
	if err := os.Rename(box, moved); err != nil {
		t.Fatal(err)
	}
	if err := deliverCached(t, &c, base, "example.org/u/", "m\n"); err != nil {
		t.Fatal(err)
	}
	if n, m := countNew(t, box), countNew(t, moved); n != 1 || m != 3 {
		t.Errorf("after rename: %d at the path (want 1), %d in the moved one (want 3)", n, m)
	}
	// Removed: made again.
	if err := os.RemoveAll(box); err != nil {
		t.Fatal(err)
	}
	if err := deliverCached(t, &c, base, "example.org/u/", "m\n"); err != nil {
		t.Fatal(err)
	}
	if n := countNew(t, box); n != 1 {
		t.Errorf("after removal: %d messages at the path, want 1", n)
	}
}

// TestDirCacheSymlinkedNew: new/ replaced by a symbolic link after it was
// cached is refused (the walk does not follow links), and nothing is
// written where the link points.
func TestDirCacheSymlinkedNew(t *testing.T) {
	base := t.TempDir()
	var c dirCache
	if err := deliverCached(t, &c, base, "d/u/", "m\n"); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	newDir := filepath.Join(base, "d", "u", "new")
	if err := os.RemoveAll(newDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, newDir); err != nil {
		t.Fatal(err)
	}
	if err := deliverCached(t, &c, base, "d/u/", "m\n"); err == nil {
		t.Error("delivery through a symlinked new/ succeeded")
	}
	if es, _ := os.ReadDir(elsewhere); len(es) != 0 {
		t.Errorf("%d files written through the link", len(es))
	}
}

// TestDirCacheBounded: beyond dirCacheMax mailboxes the least recently
// used directories are closed, and every delivery still lands.
func TestDirCacheBounded(t *testing.T) {
	base := t.TempDir()
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(es)
	}
	before := fds()
	var c dirCache
	n := dirCacheMax + 40
	for i := 0; i < n; i++ {
		if err := deliverCached(t, &c, base, fmt.Sprintf("d/u%d/", i), "m\n"); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.m) > dirCacheMax {
		t.Errorf("%d cached directories, bound %d", len(c.m), dirCacheMax)
	}
	if open := fds() - before; open > dirCacheMax+5 {
		t.Errorf("%d descriptors open after %d mailboxes, want at most about %d", open, n, dirCacheMax)
	}
	for i := 0; i < n; i++ {
		if got := countNew(t, filepath.Join(base, "d", fmt.Sprintf("u%d", i))); got != 1 {
			t.Fatalf("mailbox %d has %d messages", i, got)
		}
	}
}

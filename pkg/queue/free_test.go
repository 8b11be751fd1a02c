package queue

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func commitOne(t *testing.T, s *Store, q, body string) ID {
	t.Helper()
	w, err := s.Create(q)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Envelope(&Envelope{Sender: "a@b", Arrival: time.Now(), Recipients: []Recipient{{Addr: "c@d", Status: Pending}}}); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

func TestRecycle(t *testing.T) {
	s := NewStore(t.TempDir())
	if _, err := s.Ensure(-1, -1, -1); err != nil {
		t.Fatal(err)
	}
	id := commitOne(t, s, Incoming, "first message, a long one\n")
	ino := inode(t, s.Path(Incoming, id))
	if err := s.Remove(Incoming, id); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(s.Dir(), Free))
	if len(ents) != 1 {
		t.Fatalf("free/ holds %d files, want 1", len(ents))
	}
	if fi, _ := ents[0].Info(); fi.Size() != 0 {
		t.Errorf("recycled file not truncated: %d bytes", fi.Size())
	}
	// The next message takes the inode back, with only its own content.
	s.freeScan = time.Time{}
	id2 := commitOne(t, s, Incoming, "second\n")
	if inode(t, s.Path(Incoming, id2)) != ino {
		t.Errorf("inode not reused")
	}
	if id2 == id {
		t.Errorf("reused inode gave the same ID %s", id)
	}
	m, err := s.Open(Incoming, id2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(m.Content())
	m.Close()
	if string(b) != "second\n" {
		t.Errorf("content %q", b)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), Free)); len(ents) != 0 {
		t.Errorf("free/ not emptied: %v", ents)
	}
	// maildrop/ files are not recycled.
	id3 := commitOne(t, s, Maildrop, "drop\n")
	s.Remove(Maildrop, id3)
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), Free)); len(ents) != 0 {
		t.Errorf("maildrop file recycled: %v", ents)
	}
	// List never shows free/ or temporary files.
	for _, q := range []string{Incoming, Free} {
		ids, _ := s.List(q)
		if q == Free && len(ids) != 0 {
			t.Errorf("List(free) = %v", ids)
		}
	}
}

func TestRecycleWithoutFreeDir(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(dir)
	os.MkdirAll(filepath.Join(dir, Incoming), 0o700)
	id := commitOne(t, s, Incoming, "x\n")
	if err := s.Remove(Incoming, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path(Incoming, id)); !os.IsNotExist(err) {
		t.Errorf("not removed: %v", err)
	}
}

func TestReleaseReopen(t *testing.T) {
	s := NewStore(t.TempDir())
	s.Ensure(-1, -1, -1)
	id := commitOne(t, s, Incoming, "content\n")
	m, err := s.Open(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	if err := m.SetStatus(0, Delivered); err == nil {
		t.Error("SetStatus on a released message succeeded")
	}
	if err := s.Move(id, Incoming, Active); err != nil {
		t.Fatal(err)
	}
	if err := m.Reopen(s.Path(Active, id)); err != nil {
		t.Fatal(err)
	}
	if err := m.SetStatus(0, Delivered); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(m.Content())
	m.Close()
	if string(b) != "content\n" {
		t.Errorf("content %q", b)
	}
	m2, _ := s.Open(Active, id)
	if m2.Envelope.Recipients[0].Status != Delivered {
		t.Error("status not written")
	}
	m2.Release()
	// Another file under the same name is refused.
	os.Remove(s.Path(Active, id))
	other := commitOne(t, s, Incoming, "other\n")
	os.Rename(s.Path(Incoming, other), s.Path(Active, id))
	if err := m2.Reopen(s.Path(Active, id)); err == nil {
		t.Error("Reopen accepted another file")
	}
}

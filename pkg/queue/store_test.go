package queue

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestNewID(t *testing.T) {
	seen := map[ID]bool{}
	prev := ID("")
	for range 10000 {
		id := NewID()
		if !ValidID(string(id)) || len(id) != 13 {
			t.Fatalf("invalid ID %q", id)
		}
		if id <= prev || seen[id] {
			t.Fatalf("ID %q not after %q", id, prev)
		}
		seen[id] = true
		prev = id
	}
	if d := time.Since(prev.Time()); d < -time.Minute || d > time.Minute {
		t.Errorf("ID time %v", prev.Time())
	}
}

func TestFileIDOrder(t *testing.T) {
	// The time part is fixed width, so a later time sorts later whatever
	// the inode numbers.
	a := fileID(1_700_000_000_000_000, 1<<62)
	b := fileID(1_700_000_000_000_001, 1)
	if !(a < b) || !ValidID(string(a)) || !ValidID(string(b)) {
		t.Errorf("%q !< %q", a, b)
	}
	if len(a) != 20 {
		t.Errorf("len(%q) = %d", a, len(a))
	}
	if got := b.Time(); !got.Equal(time.UnixMicro(1_700_000_000_000_001)) {
		t.Errorf("Time = %v", got)
	}
}

func TestValidID(t *testing.T) {
	for s, want := range map[string]bool{
		"0123456789":                    true,
		"ABCDEFGHIJKLMNOPQRSTUVWX":      true,
		"ABCDEFGHIJKLMNOPQRSTUVWXY":     false,
		"012345678":                     false,
		"0123456789.tmp":                false,
		"../../etc/passwd":              false,
		"01234-6789":                    false,
		"0123456789\x00":                false,
		"":                              false,
		"01234567890abcdefghij\xc3\xa9": false,
	} {
		if ValidID(s) != want {
			t.Errorf("ValidID(%q) = %v", s, !want)
		}
	}
}

func TestCreateUniqueConcurrent(t *testing.T) {
	s := newStore(t)
	s.SetSyncMode(SyncFileOnly)
	var mu sync.Mutex
	ids := map[ID]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				w, err := s.Create(Incoming)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if ids[w.ID()] {
					t.Errorf("duplicate ID %s", w.ID())
				}
				ids[w.ID()] = true
				mu.Unlock()
				w.Abort()
			}
		}()
	}
	wg.Wait()
}

func TestSetStatusInPlace(t *testing.T) {
	s := newStore(t)
	env := fullEnvelope()
	id := writeMessage(t, s, Incoming, env, testContent(100000),
		Recipient{Addr: "x@example.net", Status: Pending})
	path := s.Path(Incoming, id)
	before, _ := os.ReadFile(path)

	m, err := s.Open(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetStatus(0, Delivered); err != nil {
		t.Fatal(err)
	}
	if err := m.SetStatus(4, Failed); err != nil {
		t.Fatal(err)
	}
	if err := m.SetStatus(5, Delivered); err == nil {
		t.Error("index out of range accepted")
	}
	if err := m.SetStatus(-1, Delivered); err == nil {
		t.Error("negative index accepted")
	}
	if err := m.SetStatus(1, 'x'); err == nil {
		t.Error("invalid status accepted")
	}
	if m.Envelope.Recipients[0].Status != Delivered || m.Envelope.Recipients[4].Status != Failed {
		t.Error("in-memory status not updated")
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	m.Close()

	after, _ := os.ReadFile(path)
	if len(after) != len(before) {
		t.Fatalf("size changed %d -> %d", len(before), len(after))
	}
	var diff []int
	for i := range before {
		if before[i] != after[i] {
			diff = append(diff, i)
		}
	}
	if len(diff) != 2 || after[diff[0]] != byte(Delivered) || after[diff[1]] != byte(Failed) {
		t.Errorf("changed bytes at %v", diff)
	}

	m, err = s.Open(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var got []RcptStatus
	for _, r := range m.Envelope.Recipients {
		got = append(got, r.Status)
	}
	want := []RcptStatus{Delivered, Delivered, Failed, Pending, Failed}
	if !slices.Equal(got, want) {
		t.Errorf("statuses %q, want %q", got, want)
	}
}

func TestParseIsReadOnly(t *testing.T) {
	s := newStore(t)
	id := writeMessage(t, s, Incoming, fullEnvelope(), []byte("x"))
	b, _ := os.ReadFile(s.Path(Incoming, id))
	m, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetStatus(0, Delivered); err == nil {
		t.Error("SetStatus on a parsed buffer succeeded")
	}
}

func TestMoveListRemoveQuarantine(t *testing.T) {
	s := newStore(t)
	var ids []ID
	for i := range 5 {
		ids = append(ids, writeMessage(t, s, Incoming, &Envelope{Sender: "a"}, []byte{byte(i)}))
	}
	// Junk that List must skip: a temporary file, a directory, a bad name.
	w, _ := s.Create(Incoming)
	defer w.Abort()
	os.Mkdir(filepath.Join(s.Dir(), Incoming, "0123456789abc"), 0o700)
	os.WriteFile(filepath.Join(s.Dir(), Incoming, "README"), nil, 0o600)
	os.WriteFile(filepath.Join(s.Dir(), Incoming, "0123456789ab~"), nil, 0o600)

	got, err := s.List(Incoming)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("List = %v, want %v (creation order)", got, ids)
	}
	if err := s.Move(ids[1], Incoming, Active); err != nil {
		t.Fatal(err)
	}
	if err := s.Move(ids[2], Incoming, Active); err != nil {
		t.Fatal(err)
	}
	if err := s.Move(ids[1], Incoming, Active); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("moving a missing file: %v", err)
	}
	if err := s.Move(ids[3], Incoming, "../x"); err == nil {
		t.Error("bad queue name accepted")
	}
	if err := s.Quarantine(Active, ids[2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(Incoming, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(Incoming, ids[0]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove: %v", err)
	}
	for q, want := range map[string][]ID{
		Incoming: {ids[3], ids[4]},
		Active:   {ids[1]},
		Corrupt:  {ids[2]},
		Deferred: {},
	} {
		got, err := s.List(q)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("List(%s) = %v, want %v", q, got, want)
		}
	}
	m, err := s.Open(Active, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := s.List("nonexistent"); err == nil {
		t.Error("List of a missing queue succeeded")
	}
}

func TestNextAttempt(t *testing.T) {
	s := newStore(t)
	id := writeMessage(t, s, Deferred, &Envelope{}, nil)
	when := time.Now().Add(17 * time.Minute).Truncate(time.Second)
	if err := s.SetNextAttempt(Deferred, id, when); err != nil {
		t.Fatal(err)
	}
	got, err := s.NextAttempt(Deferred, id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(when) {
		t.Errorf("NextAttempt = %v, want %v", got, when)
	}
	// Moving keeps it.
	if err := s.Move(id, Deferred, Active); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.NextAttempt(Active, id); !got.Equal(when) {
		t.Errorf("after Move: %v", got)
	}
}

func TestCleanTemp(t *testing.T) {
	s := newStore(t)
	old, _ := s.Create(Incoming)
	old.Envelope(&Envelope{})
	old.Write([]byte("half a message"))
	old.bw.Flush()
	fresh, _ := s.Create(Incoming)
	defer fresh.Abort()
	done := writeMessage(t, s, Incoming, &Envelope{}, nil)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old.tmp, past, past)

	n, err := s.CleanTemp(Incoming, 10*time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("CleanTemp = %d, %v", n, err)
	}
	if _, err := os.Stat(old.tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Error("old temporary file survived")
	}
	if _, err := os.Stat(fresh.tmp); err != nil {
		t.Error("fresh temporary file removed")
	}
	if ids, _ := s.List(Incoming); !slices.Equal(ids, []ID{done}) {
		t.Errorf("List = %v", ids)
	}
	if err := old.Commit(); err == nil {
		t.Error("Commit of a cleaned-away file succeeded")
	}
	old.Abort()
}

func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	s := NewStore(dir)
	uid, gid := os.Getuid(), os.Getgid()
	changes, err := s.Ensure(uid, gid, gid)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) < len(Layout) {
		t.Errorf("changes %q", changes)
	}
	check := func() {
		t.Helper()
		for _, d := range Layout {
			fi, err := os.Lstat(filepath.Join(dir, d.Name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode(); got != fs.ModeDir|d.Mode {
				t.Errorf("%s: mode %v, want %v", d.Name, got, fs.ModeDir|d.Mode)
			}
			if fi.Mode()&0o002 != 0 {
				t.Errorf("%s world-writable", d.Name)
			}
		}
	}
	check()
	if changes, err := s.Ensure(uid, gid, gid); err != nil || len(changes) != 0 {
		t.Errorf("second Ensure: %q, %v", changes, err)
	}

	os.Chmod(filepath.Join(dir, Incoming), 0o777)
	syscall.Chmod(filepath.Join(dir, Maildrop), 0o1733)
	syscall.Chmod(filepath.Join(dir, Hold), 0o2700)
	os.Remove(filepath.Join(dir, Trace))
	changes, err = s.Ensure(uid, gid, gid)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 4 {
		t.Errorf("repair changes %q", changes)
	}
	check()

	// A symlink or a file where a directory belongs is refused, not
	// followed or replaced.
	os.Remove(filepath.Join(dir, Bounce))
	os.Symlink("/tmp", filepath.Join(dir, Bounce))
	if _, err := s.Ensure(uid, gid, gid); err == nil {
		t.Error("symlink accepted")
	}
	os.Remove(filepath.Join(dir, Bounce))
	os.WriteFile(filepath.Join(dir, Bounce), nil, 0o600)
	if _, err := s.Ensure(uid, gid, gid); err == nil {
		t.Error("regular file accepted")
	}
}

func TestEnsureOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := filepath.Join(t.TempDir(), "q")
	s := NewStore(dir)
	const uid, gid, sgid = 4321, 4322, 4323
	if _, err := s.Ensure(uid, gid, sgid); err != nil {
		t.Fatal(err)
	}
	for _, d := range Layout {
		fi, _ := os.Lstat(filepath.Join(dir, d.Name))
		st := fi.Sys().(*syscall.Stat_t)
		wantU, wantG := uint32(uid), uint32(gid)
		switch {
		case d.Root:
			wantU, wantG = 0, st.Gid
		case d.SetgidGroup:
			wantG = sgid
		}
		if st.Uid != wantU || st.Gid != wantG {
			t.Errorf("%s: owner %d:%d, want %d:%d", d.Name, st.Uid, st.Gid, wantU, wantG)
		}
	}
}

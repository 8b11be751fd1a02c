package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// realFile commits a message and returns its bytes.
func realFile(t *testing.T, contentSize int) (file, content []byte, env *Envelope) {
	t.Helper()
	s := newStore(t)
	env = fullEnvelope()
	content = testContent(contentSize)
	id := writeMessage(t, s, Incoming, env, content, Recipient{Addr: "x@example.net", Status: Pending})
	file, err := os.ReadFile(s.Path(Incoming, id))
	if err != nil {
		t.Fatal(err)
	}
	return file, content, env
}

// TestTruncatedFiles cuts a real queue file at every byte offset, and also
// replaces its tail with zeros from every offset (what a crash can leave
// of a file whose size reached the disk before its data). No such file may
// open, except the original itself.
func TestTruncatedFiles(t *testing.T) {
	file, _, _ := realFile(t, 300)
	s := newStore(t)
	id := ID("0000000000zzz")
	path := s.Path(Incoming, id)
	for k := 0; k < len(file); k++ {
		for _, variant := range [][]byte{
			file[:k],
			append(append([]byte(nil), file[:k]...), make([]byte, len(file)-k)...),
		} {
			if bytes.Equal(variant, file) {
				continue // zeroing the END record's zero length changes nothing
			}
			if err := os.WriteFile(path, variant, 0o600); err != nil {
				t.Fatal(err)
			}
			m, err := s.Open(Incoming, id)
			if err == nil {
				m.Close()
				t.Fatalf("cut at %d (%d bytes): opened", k, len(variant))
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("cut at %d: error %v does not wrap ErrCorrupt", k, err)
			}
		}
	}
}

// TestTruncatedLarge does the same in memory for a file with several
// content records.
func TestTruncatedLarge(t *testing.T) {
	file, _, _ := realFile(t, 2*chunkSize+999)
	zeros := make([]byte, len(file))
	buf := make([]byte, len(file))
	for k := 0; k < len(file); k++ {
		if _, err := Parse(bytes.NewReader(file[:k]), int64(k)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d: %v", k, err)
		}
		copy(buf, file[:k])
		copy(buf[k:], zeros)
		if bytes.Equal(buf, file) {
			continue
		}
		if _, err := Parse(bytes.NewReader(buf), int64(len(buf))); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("zeros from %d: %v", k, err)
		}
	}
	if _, err := Parse(bytes.NewReader(file), int64(len(file))); err != nil {
		t.Fatal(err)
	}
}

// TestTrailingGarbage: nothing may follow END.
func TestTrailingGarbage(t *testing.T) {
	file, _, _ := realFile(t, 10)
	for _, tail := range []string{"\x00", "E\x00", "x"} {
		b := append(append([]byte(nil), file...), tail...)
		if _, err := Parse(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrCorrupt) {
			t.Errorf("tail %q: %v", tail, err)
		}
	}
}

type snapshot struct {
	step  string
	files map[string][]byte // name in incoming/ -> contents
}

func snapshotDir(t *testing.T, dir string) map[string][]byte {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// TestCrashAtEveryStep stops the write protocol after each of its steps
// and builds every directory state a crash there can leave behind: the
// files as they are, and, where the rename is not yet durable, the file
// still under its temporary name. (States with a short or zero-filled
// file are TestTruncatedFiles'.) In each, List and Open may only ever
// show the complete message, and after Commit returned it must be there.
func TestCrashAtEveryStep(t *testing.T) {
	s := newStore(t)
	incoming := filepath.Join(s.Dir(), Incoming)
	var snaps []snapshot
	s.hook = func(step, path string) {
		snaps = append(snaps, snapshot{step, snapshotDir(t, incoming)})
	}
	env := fullEnvelope()
	content := testContent(chunkSize + 5000)
	w, err := s.Create(Incoming)
	if err != nil {
		t.Fatal(err)
	}
	w.Envelope(env)
	w.Write(content)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	id := w.ID()
	tmpName := filepath.Base(w.tmp)

	var steps []string
	for _, sn := range snaps {
		steps = append(steps, sn.step)
	}
	if got := strings.Join(steps, " "); got != "created flushed synced renamed committed" {
		t.Fatalf("steps %q", got)
	}

	for _, sn := range snaps {
		states := []map[string][]byte{sn.files}
		if sn.step == "renamed" {
			// The rename may not have reached the disk.
			lost := map[string][]byte{tmpName: sn.files[string(id)]}
			states = append(states, lost)
		}
		for i, files := range states {
			name := fmt.Sprintf("%s/%d", sn.step, i)
			c := newStore(t)
			for n, b := range files {
				if err := os.WriteFile(filepath.Join(c.Dir(), Incoming, n), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ids, err := c.List(Incoming)
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range ids {
				if got != id {
					t.Fatalf("%s: unexpected ID %s listed", name, got)
				}
				m, err := c.Open(Incoming, got)
				if err != nil {
					t.Fatalf("%s: listed file does not open: %v", name, err)
				}
				b, _ := io.ReadAll(m.Content())
				m.Close()
				if !bytes.Equal(b, content) || len(m.Envelope.Recipients) != len(env.Recipients) {
					t.Fatalf("%s: listed file incomplete", name)
				}
			}
			if sn.step == "committed" && len(ids) != 1 {
				t.Fatalf("%s: acknowledged message lost", name)
			}
			// Recovery: temporary files go; what was listed stays.
			if _, err := c.CleanTemp(Incoming, 0); err != nil {
				t.Fatal(err)
			}
			after, _ := c.List(Incoming)
			left, _ := os.ReadDir(filepath.Join(c.Dir(), Incoming))
			if len(after) != len(ids) || len(left) != len(ids) {
				t.Fatalf("%s: after CleanTemp %v (files %d), before %v", name, after, len(left), ids)
			}
		}
	}
}

// TestAbandonedWriter: a writer that dies without Commit or Abort leaves
// only an invisible temporary file.
func TestAbandonedWriter(t *testing.T) {
	s := newStore(t)
	w, err := s.Create(Incoming)
	if err != nil {
		t.Fatal(err)
	}
	w.Envelope(fullEnvelope())
	w.Write(testContent(3 * chunkSize))
	w.bw.Flush()
	w.f.Close()
	if ids, _ := s.List(Incoming); len(ids) != 0 {
		t.Fatalf("abandoned file listed: %v", ids)
	}
	if _, err := s.Open(Incoming, w.ID()); err == nil {
		t.Fatal("abandoned file opened under its ID")
	}
	if n, _ := s.CleanTemp(Incoming, 0); n != 1 {
		t.Errorf("CleanTemp removed %d", n)
	}
}

// TestGroupCommitOrder checks the promise of Commit under concurrency: each
// commit returns only after a directory fsync that started after its
// rename had finished and that ended before Commit returned. The fsync is
// slowed down so that commits pile up and must share.
func TestGroupCommitOrder(t *testing.T) {
	s := newStore(t)
	var mu sync.Mutex
	seq := 0
	tick := func() int { mu.Lock(); defer mu.Unlock(); seq++; return seq }
	type syncRec struct{ start, end int }
	var syncs []syncRec
	renamed := map[string]int{}
	s.syncDir = func(dir string) error {
		start := tick()
		time.Sleep(2 * time.Millisecond)
		err := fsyncDir(dir)
		end := tick()
		mu.Lock()
		syncs = append(syncs, syncRec{start, end})
		mu.Unlock()
		return err
	}
	s.hook = func(step, path string) {
		if step == "renamed" {
			n := tick()
			mu.Lock()
			renamed[filepath.Base(path)] = n
			mu.Unlock()
		}
	}
	const writers, each = 20, 10
	returned := map[string]int{}
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				w, err := s.Create(Incoming)
				if err != nil {
					t.Error(err)
					return
				}
				w.Envelope(&Envelope{Sender: "a"})
				w.Write([]byte("hello\r\n"))
				if err := w.Commit(); err != nil {
					t.Error(err)
					return
				}
				n := tick()
				mu.Lock()
				returned[string(w.ID())] = n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(returned) != writers*each {
		t.Fatalf("%d commits returned", len(returned))
	}
	for id, ret := range returned {
		ok := false
		for _, sy := range syncs {
			if sy.start > renamed[id] && sy.end < ret {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("%s: returned at %d, renamed at %d, with no directory sync in between", id, ret, renamed[id])
		}
	}
	if len(syncs) >= writers*each {
		t.Errorf("%d directory syncs for %d commits: nothing shared", len(syncs), writers*each)
	}
	t.Logf("%d commits, %d directory fsyncs", writers*each, len(syncs))
}

// TestDirSyncFailure: when the directory fsync fails, Commit fails and
// Abort removes the renamed file, so nothing unacknowledged is delivered.
func TestDirSyncFailure(t *testing.T) {
	for _, mode := range []SyncMode{SyncGroup, SyncEach} {
		s := newStore(t)
		s.SetSyncMode(mode)
		boom := errors.New("EIO")
		s.syncDir = func(string) error { return boom }
		w, err := s.Create(Incoming)
		if err != nil {
			t.Fatal(err)
		}
		w.Envelope(&Envelope{})
		if err := w.Commit(); !errors.Is(err, boom) {
			t.Fatalf("mode %d: Commit = %v", mode, err)
		}
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(filepath.Join(s.Dir(), Incoming))
		if len(ents) != 0 {
			t.Errorf("mode %d: left %d files", mode, len(ents))
		}
	}
}

// TestSyncModes: every mode commits a readable message.
func TestSyncModes(t *testing.T) {
	for _, mode := range []SyncMode{SyncGroup, SyncEach, SyncFileOnly} {
		s := newStore(t)
		s.SetSyncMode(mode)
		id := writeMessage(t, s, Incoming, &Envelope{}, []byte("x"))
		m, err := s.Open(Incoming, id)
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
}

// TestUnreadableDir: a writer that may not read the directory (sendmail in
// maildrop/) falls back to fsyncing the renamed file, and succeeds.
func TestUnreadableDir(t *testing.T) {
	s := newStore(t)
	s.syncDir = func(dir string) error { return fmt.Errorf("sync %s: %w", dir, errNoDirRead) }
	id := writeMessage(t, s, Maildrop, &Envelope{}, []byte("x"))
	if ids, _ := s.List(Maildrop); len(ids) != 1 || ids[0] != id {
		t.Errorf("List = %v", ids)
	}
}

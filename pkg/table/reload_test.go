package table

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lookupIs(tb Table, key, want string) func() bool {
	return func() bool {
		v, ok, _ := tb.Lookup(key)
		return ok && v == want
	}
}

// replace writes data to a temporary name and renames it over path, as
// editors and configuration management tools do.
func replace(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReload(t *testing.T) {
	var logBuf syncBuffer
	p := writeFile(t, "virtual", "a 1\n")
	tb, err := Open("hash:"+p, Options{Logger: testLogger(&logBuf)})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	checkQueries(t, tb, []query{{"a", "1", true}})

	// Rewritten in place.
	if err := os.WriteFile(p, []byte("a 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "in-place rewrite", lookupIs(tb, "a", "2"))

	// Replaced by rename.
	replace(t, p, "a 3\nb 4\n")
	waitFor(t, "rename", lookupIs(tb, "b", "4"))

	// A broken edit keeps the old contents and says where it is broken.
	replace(t, p, "a 5\nbroken\n")
	waitFor(t, "reload failure warning", func() bool { return strings.Contains(logBuf.String(), p+":2: expected format") })
	checkQueries(t, tb, []query{{"a", "3", true}, {"b", "4", true}})

	// Removal keeps the contents; the file coming back is loaded.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "removal warning", func() bool { return strings.Contains(logBuf.String(), "table source is gone") })
	checkQueries(t, tb, []query{{"a", "3", true}})
	replace(t, p, "a 6\n")
	waitFor(t, "recreated file", lookupIs(tb, "a", "6"))
}

func TestReloadPatternTables(t *testing.T) {
	rx := writeFile(t, "checks", "/a/ one\n")
	cidr := filepath.Join(filepath.Dir(rx), "clients")
	if err := os.WriteFile(cidr, []byte("10.0.0.0/8 one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := Open("pcre:"+rx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ct, err := Open("cidr:"+cidr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	replace(t, rx, "/a/ two\n")
	replace(t, cidr, "10.0.0.0/8 two\n")
	waitFor(t, "pcre reload", lookupIs(rt, "a", "two"))
	waitFor(t, "cidr reload", lookupIs(ct, "10.1.1.1", "two"))
}

func TestReloadSymlink(t *testing.T) {
	target := writeFile(t, "real", "k v1\n")
	link := filepath.Join(t.TempDir(), "virtual")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	tb, err := Open("hash:"+link, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	replace(t, target, "k v2\n")
	waitFor(t, "symlink target change", lookupIs(tb, "k", "v2"))
}

func TestNoWatch(t *testing.T) {
	p := writeFile(t, "virtual", "a 1\n")
	tb, err := Open("hash:"+p, Options{NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	replace(t, p, "a 2\n")
	time.Sleep(3 * reloadDelay)
	checkQueries(t, tb, []query{{"a", "1", true}})
}

// TestConcurrentLookups runs lookups while the file is reloaded; run with
// -race.
func TestConcurrentLookups(t *testing.T) {
	p := writeFile(t, "virtual", "a 0\n")
	tb, err := Open("hash:"+p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, ok, err := tb.Lookup("a"); !ok || err != nil {
					t.Errorf("lookup during reload: %v %v", ok, err)
					return
				}
			}
		}()
	}
	for i := 1; i <= 5; i++ {
		replace(t, p, fmt.Sprintf("a %d\n", i))
		waitFor(t, "reload", lookupIs(tb, "a", fmt.Sprint(i)))
	}
	close(stop)
	wg.Wait()
}

// TestSharedWatcher checks that many tables share one watcher and that it
// goes away with the last table.
func TestSharedWatcher(t *testing.T) {
	dir := t.TempDir()
	var tables []Table
	for i := range 20 {
		p := filepath.Join(dir, fmt.Sprint("t", i))
		if err := os.WriteFile(p, []byte("k v\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tb, err := Open("hash:"+p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, tb)
	}
	sharedHub.mu.Lock()
	n := len(sharedHub.dirs)
	sharedHub.mu.Unlock()
	if n != 1 {
		t.Errorf("watching %d directories, want 1", n)
	}
	for _, tb := range tables {
		tb.Close()
		tb.Close() // a second Close is harmless
	}
	sharedHub.mu.Lock()
	defer sharedHub.mu.Unlock()
	if sharedHub.fw != nil || len(sharedHub.dirs) != 0 {
		t.Errorf("watcher still open after the last Close: %v", sharedHub.dirs)
	}
}

func TestPollFallback(t *testing.T) {
	p := writeFile(t, "virtual", "a 1\n")
	reloaded := make(chan struct{}, 1)
	w := &watch{kick: make(chan struct{}, 1), done: make(chan struct{}), reload: func() { reloaded <- struct{}{} }}
	w.wg.Add(2)
	go w.poll(p)
	go w.debounce()
	defer w.stop()
	time.Sleep(50 * time.Millisecond)
	replace(t, p, "a 22\n")
	select {
	case <-reloaded:
	case <-time.After(3 * pollInterval):
		t.Fatal("poll did not notice the change")
	}
}

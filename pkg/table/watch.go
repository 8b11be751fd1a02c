package table

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// reloadDelay is the quiet period after the last change to a file before it
// is reloaded, so that an editor's or a script's several writes cause one
// reload of the finished file.
const reloadDelay = 200 * time.Millisecond

// pollInterval is how often a file is checked when fsnotify is unavailable.
const pollInterval = 2 * time.Second

// watch follows one table source file and calls reload after it changed.
type watch struct {
	paths  []string
	kick   chan struct{}
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	onHub  bool
	reload func()
}

// startWatch starts following path. It never fails: if fsnotify cannot
// watch the directory, the file is polled instead and a warning is logged.
func startWatch(path string, log *slog.Logger, reload func()) *watch {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	w := &watch{
		paths:  []string{abs},
		kick:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		reload: reload,
	}
	// A symlinked source (common with configuration management) changes
	// where the link points, so the target's directory is watched too.
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		w.paths = append(w.paths, real)
	}
	if err := sharedHub.add(w); err != nil {
		log.Warn(fmt.Sprintf("%s: cannot watch for changes (%v); checking every %v instead", path, err, pollInterval))
		w.wg.Add(1)
		go w.poll(abs)
	} else {
		w.onHub = true
	}
	w.wg.Add(1)
	go w.debounce()
	return w
}

// stop ends the watch and waits for a reload in progress. It is safe on a
// nil watch and may be called more than once.
func (w *watch) stop() {
	if w == nil {
		return
	}
	w.once.Do(func() {
		if w.onHub {
			sharedHub.remove(w)
		}
		close(w.done)
		w.wg.Wait()
	})
}

// notify records that the file may have changed.
func (w *watch) notify() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *watch) debounce() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			return
		case <-w.kick:
		}
		t := time.NewTimer(reloadDelay)
	quiet:
		for {
			select {
			case <-w.done:
				t.Stop()
				return
			case <-w.kick:
				t.Reset(reloadDelay)
			case <-t.C:
				break quiet
			}
		}
		w.reload()
	}
}

// poll compares the file's identity, size and time every pollInterval.
func (w *watch) poll(path string) {
	defer w.wg.Done()
	last, _ := os.Stat(path)
	tk := time.NewTicker(pollInterval)
	defer tk.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-tk.C:
		}
		fi, err := os.Stat(path)
		if err != nil {
			last = nil
			continue
		}
		if last == nil || !os.SameFile(fi, last) || fi.Size() != last.Size() || !fi.ModTime().Equal(last.ModTime()) {
			w.notify()
		}
		last = fi
	}
}

// hub shares one fsnotify watcher among all tables of the process. A
// watcher is an inotify instance on Linux, and fs.inotify.max_user_instances
// is often 128 for all of a user's processes together, so a daemon with a
// dozen tables must not use a dozen. The hub exists only while some table
// watches a file.
type hub struct {
	mu   sync.Mutex
	fw   *fsnotify.Watcher
	dirs map[string]int                 // directory -> number of watched paths in it
	subs map[string]map[*watch]struct{} // file path -> its watches
}

var sharedHub hub

func (h *hub) add(w *watch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fw == nil {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			return err
		}
		h.fw = fw
		h.dirs = make(map[string]int)
		h.subs = make(map[string]map[*watch]struct{})
		go h.loop(fw)
	}
	var added []string
	for _, p := range w.paths {
		dir := filepath.Dir(p)
		if h.dirs[dir] == 0 {
			if err := h.fw.Add(dir); err != nil {
				for _, a := range added {
					h.release(a, w)
				}
				h.closeIfIdle()
				return err
			}
		}
		h.dirs[dir]++
		if h.subs[p] == nil {
			h.subs[p] = make(map[*watch]struct{})
		}
		h.subs[p][w] = struct{}{}
		added = append(added, p)
	}
	return nil
}

func (h *hub) remove(w *watch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range w.paths {
		h.release(p, w)
	}
	h.closeIfIdle()
}

// release drops w's interest in p. h.mu is held.
func (h *hub) release(p string, w *watch) {
	if _, ok := h.subs[p][w]; !ok {
		return
	}
	delete(h.subs[p], w)
	if len(h.subs[p]) == 0 {
		delete(h.subs, p)
	}
	dir := filepath.Dir(p)
	h.dirs[dir]--
	if h.dirs[dir] <= 0 {
		delete(h.dirs, dir)
		_ = h.fw.Remove(dir) // the directory may be gone already
	}
}

// closeIfIdle closes the watcher when nothing is watched. h.mu is held;
// fsnotify's Close does not wait for our loop, so this cannot deadlock.
func (h *hub) closeIfIdle() {
	if h.fw != nil && len(h.dirs) == 0 {
		_ = h.fw.Close()
		h.fw = nil
	}
}

func (h *hub) loop(fw *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-fw.Events:
			if !ok {
				return
			}
			h.dispatch(filepath.Clean(ev.Name))
		case err, ok := <-fw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: any file may have changed.
				h.dispatchAll()
			}
		}
	}
}

func (h *hub) dispatch(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs[path] {
		w.notify()
	}
}

func (h *hub) dispatchAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ws := range h.subs {
		for w := range ws {
			w.notify()
		}
	}
}

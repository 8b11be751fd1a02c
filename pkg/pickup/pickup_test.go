package pickup

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/pkg/config"
	"postern/pkg/handoff"
	"postern/pkg/ipc"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
)

// received is what the fake cleanup got.
type received struct {
	req     *handoff.Request
	content string
}

// fakeCleanup serves the hand-off protocol on public/cleanup and answers
// with status.
type fakeCleanup struct {
	mu     sync.Mutex
	got    []received
	status handoff.Status
	ln     net.Listener
}

func startCleanup(t *testing.T, path string, status handoff.Status) *fakeCleanup {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCleanup{status: status, ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(conn)
		}
	}()
	return f
}

func (f *fakeCleanup) serve(conn net.Conn) {
	defer conn.Close()
	c := ipc.NewConn(conn, ipc.Options{Timeout: 10 * time.Second})
	if ipc.Hello(c, handoff.Service) != nil {
		return
	}
	req, err := handoff.ReadRequest(c, 1000)
	if err != nil {
		return
	}
	handoff.SendID(c, "CLEANUPID01")
	content, err := io.ReadAll(handoff.ContentReader(c))
	if err != nil {
		return
	}
	f.mu.Lock()
	f.got = append(f.got, received{req, string(content)})
	st := f.status
	f.mu.Unlock()
	handoff.Reply(c, handoff.Result{Status: st, DSN: "5.3.4", Text: "test verdict", QueueID: "CLEANUPID01"}, false)
}

func (f *fakeCleanup) received() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.got...)
}

type env struct {
	p     *Pickup
	store *queue.Store
	log   string
	cfg   *config.Config
}

func newEnv(t *testing.T, extra string) *env {
	t.Helper()
	dir := t.TempDir()
	qdir := filepath.Join(dir, "queue")
	logFile := filepath.Join(dir, "maillog")
	cfg, err := config.Parse(strings.NewReader(fmt.Sprintf("queue_directory = %s\nmyhostname = mta.test.example\nipc_timeout = 10s\n%s\n", qdir, extra)), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	store := queue.NewStore(qdir)
	if _, err := store.Ensure(os.Getuid(), os.Getgid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	log, err := maillog.New(maillog.Options{Program: "pickup", File: logFile, FilePrefixes: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	p, err := newPickup(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return &env{p: p, store: store, log: logFile, cfg: cfg}
}

func (e *env) logText() string {
	b, _ := os.ReadFile(e.log)
	return string(b)
}

// drop writes a maildrop file as sendmail would.
func (e *env) drop(t *testing.T, content string) queue.ID {
	t.Helper()
	s := &drop.Submission{Sender: "me@example.org", FullName: "Me", Recipients: []queue.Recipient{{Addr: "a@example.org", Notify: "NEVER"}}}
	open, err := config.Parse(strings.NewReader("queue_directory = "+e.store.Dir()+"\n"), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	sink, err := drop.Direct(open, e.store, os.Getuid(), s)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(sink, content)
	sink.AddRecipient(queue.Recipient{Addr: "b@example.org"})
	id, err := sink.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) count(q string) int {
	ids, _ := e.store.List(q)
	return len(ids)
}

func TestPickupHandsOff(t *testing.T) {
	e := newEnv(t, "")
	cl := startCleanup(t, e.p.cleanup.Path(), handoff.OK)
	id := e.drop(t, " starts with a space\n\nbody\n")
	e.p.Scan(context.Background())
	got := cl.received()
	if len(got) != 1 {
		t.Fatalf("cleanup got %d messages", len(got))
	}
	r := got[0]
	if r.req.Sender != "me@example.org" || len(r.req.Recipients) != 2 || r.req.Recipients[0].Notify != "NEVER" ||
		r.req.Recipients[1].Addr != "b@example.org" || r.req.RewriteContext != handoff.ContextLocal {
		t.Errorf("request %+v", r.req)
	}
	head := fmt.Sprintf("Received: by mta.test.example (Postern, from userid %d)\n\tid CLEANUPID01; ", os.Getuid())
	if !strings.HasPrefix(r.content, head) || !strings.HasSuffix(r.content, ")\n\n starts with a space\n\nbody\n") {
		t.Errorf("content %q", r.content)
	}
	if e.count(queue.Maildrop) != 0 {
		t.Errorf("maildrop file %s not removed", id)
	}
	if want := fmt.Sprintf("CLEANUPID01: uid=%d from=<me@example.org>", os.Getuid()); !strings.Contains(e.logText(), want) {
		t.Errorf("log lacks %q:\n%s", want, e.logText())
	}
}

func TestPickupCorrupt(t *testing.T) {
	e := newEnv(t, "")
	startCleanup(t, e.p.cleanup.Path(), handoff.OK)
	junk := "8DspE9KXsfrhV"
	os.WriteFile(e.store.Path(queue.Maildrop, queue.ID(junk)), []byte("V\x011T\x01junk"), 0o644)
	link := e.store.Path(queue.Maildrop, "8DspE9KXsfrhW")
	os.Symlink("/etc/passwd", link)
	tmp := e.store.Path(queue.Maildrop, "8DspE9KXsfrhX") + ".tmp"
	os.WriteFile(tmp, []byte("in progress"), 0o644)
	e.p.Scan(context.Background())
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink in maildrop/ was touched: %v", err)
	}
	if e.count(queue.Corrupt) != 1 || e.count(queue.Maildrop) != 0 {
		t.Errorf("corrupt/ has %d, maildrop/ %d", e.count(queue.Corrupt), e.count(queue.Maildrop))
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("a temporary file was touched: %v", err)
	}
	log := e.logText()
	if !strings.Contains(log, "warning: maildrop/"+junk+": uid=") || !strings.Contains(log, "moved to corrupt/") {
		t.Errorf("log:\n%s", log)
	}
}

func TestPickupCleanupDownOrRefusing(t *testing.T) {
	e := newEnv(t, "")
	e.drop(t, "Subject: x\n\nbody\n")
	e.p.Scan(context.Background())
	if e.count(queue.Maildrop) != 1 {
		t.Fatalf("with cleanup down the file must stay")
	}
	startCleanup(t, e.p.cleanup.Path(), handoff.TempFail)
	e.p.Scan(context.Background())
	if e.count(queue.Maildrop) != 1 {
		t.Fatalf("a temporary failure must keep the file")
	}
	os.Remove(e.p.cleanup.Path())
	startCleanup(t, e.p.cleanup.Path(), handoff.PermFail)
	e.p.Scan(context.Background())
	if e.count(queue.Maildrop) != 0 || e.count(queue.Corrupt) != 1 || !strings.Contains(e.logText(), "refused by cleanup: 5.3.4 test verdict") {
		t.Errorf("permanent refusal: maildrop %d corrupt %d\n%s", e.count(queue.Maildrop), e.count(queue.Corrupt), e.logText())
	}
}

func TestPickupRechecksSender(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to own a file as another uid")
	}
	e := newEnv(t, "local_login_sender_maps = inline:{ {uid:4242 = ok@example.org} }")
	startCleanup(t, e.p.cleanup.Path(), handoff.OK)
	id := e.drop(t, "x\n")
	os.Chown(e.store.Path(queue.Maildrop, id), 4242, 4242)
	e.p.Scan(context.Background())
	if e.count(queue.Corrupt) != 1 || !strings.Contains(e.logText(), "uid=4242: not authorized to use sender='me@example.org'") {
		t.Errorf("forged sender was not caught:\n%s", e.logText())
	}
}

func TestPickupWatches(t *testing.T) {
	e := newEnv(t, "")
	cl := startCleanup(t, e.p.cleanup.Path(), handoff.OK)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.run(ctx); close(done) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("run did not stop")
		}
	}()
	time.Sleep(100 * time.Millisecond) // let the watcher start
	for i := range 3 {
		e.drop(t, fmt.Sprintf("Subject: %d\n\n", i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(cl.received()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("picked up %d of 3 without a wake-up", len(cl.received()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.p.Wake(ctx, 'W')
}

// TestPickupFilterAndOverride: content_filter and receive_override_options
// reach cleanup with the message; an unknown option is refused at start.
func TestPickupFilterAndOverride(t *testing.T) {
	e := newEnv(t, "content_filter = smtp:[127.0.0.1]:10025\nreceive_override_options = no_address_mappings")
	cl := startCleanup(t, e.p.cleanup.Path(), handoff.OK)
	e.drop(t, "Subject: x\n\nbody\n")
	e.p.Scan(context.Background())
	got := cl.received()
	if len(got) != 1 {
		t.Fatalf("cleanup got %d messages", len(got))
	}
	if r := got[0].req; r.Filter != "smtp:[127.0.0.1]:10025" || !r.HasFlags || r.Flags != handoff.FlagChecks|handoff.FlagMilter {
		t.Errorf("request filter %q flags %v (%v)", r.Filter, r.Flags, r.HasFlags)
	}
	cfg, _ := config.Parse(strings.NewReader("queue_directory = "+e.store.Dir()+"\nreceive_override_options = no_such_option\n"), "main.cf")
	if _, err := newPickup(cfg, nil); err == nil || !strings.Contains(err.Error(), "no_such_option") {
		t.Errorf("unknown option: %v", err)
	}
}

// TestPickupTrace: the report requested with sendmail -v (the maildrop
// attribute "trace") reaches cleanup; a file without it asks for none.
func TestPickupTrace(t *testing.T) {
	e := newEnv(t, "")
	cl := startCleanup(t, e.p.cleanup.Path(), handoff.OK)
	for _, trace := range []bool{true, false} {
		s := &drop.Submission{Sender: "me@example.org", Trace: trace, Recipients: []queue.Recipient{{Addr: "a@example.org"}}}
		sink, err := drop.Direct(e.cfg, e.store, os.Getuid(), s)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(sink, "Subject: x\n\nbody\n")
		if _, err := sink.Commit(); err != nil {
			t.Fatal(err)
		}
		e.p.Scan(context.Background())
	}
	got := cl.received()
	if len(got) != 2 || !got[0].req.Trace || got[1].req.Trace {
		t.Fatalf("cleanup got %d messages, trace %v", len(got), func() (v []bool) {
			for _, g := range got {
				v = append(v, g.req.Trace)
			}
			return v
		}())
	}
}

package handoff

import (
	"io"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"postern/pkg/ipc"
)

// fakeCleanup serves hand-offs as cleanup does: with next set, several
// messages per connection; dropAfter > 0 closes a connection after that
// many messages although it said next (an idle timeout or a reload).
type fakeCleanup struct {
	path      string
	next      bool
	dropAfter int
	accepts   atomic.Int64
	messages  atomic.Int64
}

func startFake(t *testing.T, next bool, dropAfter int) *fakeCleanup {
	f := &fakeCleanup{path: filepath.Join(t.TempDir(), "cleanup"), next: next, dropAfter: dropAfter}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepts.Add(1)
			go f.serve(conn)
		}
	}()
	return f
}

func (f *fakeCleanup) serve(conn net.Conn) {
	defer conn.Close()
	c := ipc.NewConn(conn, ipc.Options{Timeout: 5 * time.Second, MaxFrame: 1 << 20})
	ipc.Hello(c, Service)
	for n := 1; ; n++ {
		if _, err := ReadRequest(c, 10); err != nil {
			return
		}
		SendID(c, "ID")
		content := ContentReader(c)
		if _, err := io.Copy(io.Discard, content); err != nil {
			return
		}
		f.messages.Add(1)
		if Reply(c, Result{Status: OK, QueueID: "ID"}, f.next && content.Ended()) != nil || !f.next {
			return
		}
		if f.dropAfter > 0 && n >= f.dropAfter {
			return
		}
		if c.WaitFrame(IdleTimeout) != nil {
			return
		}
	}
}

func sendVia(t *testing.T, p *Pool) {
	t.Helper()
	s, err := p.Open(&Request{Sender: "a@example.org", Recipients: []Recipient{{Addr: "b@example.org"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("Subject: x\n\nbody\n")); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Close(); err != nil || res.Status != OK {
		t.Fatalf("%+v %v", res, err)
	}
}

// TestPoolReuses: messages handed off one after another share one
// connection when cleanup says next.
func TestPoolReuses(t *testing.T) {
	f := startFake(t, true, 0)
	p := NewPool(f.path, 5*time.Second)
	defer p.Close()
	for i := 0; i < 10; i++ {
		sendVia(t, p)
	}
	if a, m := f.accepts.Load(), f.messages.Load(); a != 1 || m != 10 {
		t.Errorf("%d connections for %d messages, want 1 for 10", a, m)
	}
}

// TestPoolWithoutNext: a cleanup that does not offer reuse gets one
// connection per message.
func TestPoolWithoutNext(t *testing.T) {
	f := startFake(t, false, 0)
	p := NewPool(f.path, 5*time.Second)
	defer p.Close()
	for i := 0; i < 3; i++ {
		sendVia(t, p)
	}
	if a := f.accepts.Load(); a != 3 {
		t.Errorf("%d connections for 3 messages, want 3", a)
	}
}

// TestPoolRetriesDeadConnection: a pooled connection that cleanup closed
// (idle, reload) is replaced without the caller seeing an error, and
// nothing is handed off twice.
func TestPoolRetriesDeadConnection(t *testing.T) {
	f := startFake(t, true, 2)
	p := NewPool(f.path, 5*time.Second)
	defer p.Close()
	for i := 0; i < 6; i++ {
		sendVia(t, p)
	}
	if a, m := f.accepts.Load(), f.messages.Load(); a != 3 || m != 6 {
		t.Errorf("%d connections, %d messages; want 3 and 6", a, m)
	}
}

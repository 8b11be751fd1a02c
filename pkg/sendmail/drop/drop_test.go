package drop

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/pkg/config"
	"postern/pkg/ipc"
	"postern/pkg/queue"
)

func testConfig(t *testing.T, extra string) (*config.Config, *queue.Store) {
	t.Helper()
	dir := t.TempDir()
	qdir := filepath.Join(dir, "queue")
	cfg, err := config.Parse(strings.NewReader(fmt.Sprintf("queue_directory = %s\n%s\n", qdir, extra)), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	store := queue.NewStore(qdir)
	if _, err := store.Ensure(os.Getuid(), os.Getgid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	return cfg, store
}

// serve runs a Server on one end of two pipes and returns a client Conn
// on the other, and a channel with Serve's result.
func serve(t *testing.T, srv *Server) (*ipc.Conn, chan error) {
	t.Helper()
	r1, w1, _ := os.Pipe()
	r2, w2, _ := os.Pipe()
	done := make(chan error, 1)
	go func() {
		sc := ipc.NewConn(&pipeConn{r: r1, w: w2}, ipcOptions())
		err := srv.Serve(sc)
		sc.Close()
		done <- err
	}()
	c := ipc.NewConn(&pipeConn{r: r2, w: w1}, ipc.Options{MaxFrame: maxFrame, Timeout: 10 * time.Second})
	t.Cleanup(func() { c.Close() })
	if _, err := c.Read(); err != nil {
		t.Fatal(err)
	}
	return c, done
}

func wait(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

func send(t *testing.T, c *ipc.Conn, frames ...ipc.Attrs) {
	t.Helper()
	for _, f := range frames {
		if err := c.Write(f); err != nil {
			t.Fatal(err)
		}
	}
}

func req(name string, kv ...string) ipc.Attrs {
	a := ipc.Attrs{{Name: attrReq, Value: name}}
	for i := 0; i+1 < len(kv); i += 2 {
		a.Add(kv[i], kv[i+1])
	}
	return a
}

func TestServe(t *testing.T) {
	cfg, store := testConfig(t, "")
	srv := &Server{Config: cfg, Store: store, UID: 4242}
	c, done := serve(t, srv)
	send(t, c, req("open", attrSender, "me@example.org", attrName, "Me", attrContext, "remote", attrBody, "8BITMIME", attrTrace, "1"),
		req("rcpt", attrAddr, "a@example.org", attrNotify, "NEVER"), req("start"))
	r, err := c.Read()
	if err != nil || r.Str(attrQueueID) == "" {
		t.Fatalf("start reply %v %v", r, err)
	}
	send(t, c, req("data", attrData, "Subject: x\n\n"), req("data", attrData, "body\n"), req("xrcpt", attrAddr, "b@example.org"), req("end"))
	r, err = c.Read()
	if err != nil || r.Str(attrStatus) != StatusOK {
		t.Fatalf("end reply %v %v", r, err)
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	m, err := store.Open(queue.Maildrop, queue.ID(r.Str(attrQueueID)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	content, _ := io.ReadAll(m.Content())
	e := m.Envelope
	if string(content) != "Subject: x\n\nbody\n" || e.Sender != "me@example.org" || e.Attrs[AttrUID] != "4242" ||
		e.Attrs[AttrFullName] != "Me" || e.Attrs[AttrRewrite] != "remote" || e.Attrs[AttrTrace] != "1" || e.BodyType != "8BITMIME" ||
		len(e.Recipients) != 2 || e.Recipients[0].Notify != "NEVER" || e.Recipients[1].Addr != "b@example.org" || m.Extracted != 1 {
		t.Errorf("queued %+v, content %q", e, content)
	}
	fi, _ := os.Stat(store.Path(queue.Maildrop, m.ID))
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode())
	}
}

func TestServeRefusals(t *testing.T) {
	tests := []struct {
		name   string
		extra  string
		frames []ipc.Attrs
		status string
	}{
		{"sender not allowed", "local_login_sender_maps = inline:{ {uid:4242 = ok@example.org} }",
			[]ipc.Attrs{req("open", attrSender, "other@example.org"), req("rcpt", attrAddr, "a@x"), req("start")}, StatusNoPerm},
		{"submit acl", "authorized_submit_users = !unknown, static:anyone",
			[]ipc.Attrs{req("open", attrSender, "x"), req("rcpt", attrAddr, "a@x"), req("start")}, StatusNoPerm},
		{"line break in sender", "", []ipc.Attrs{req("open", attrSender, "a\nRcpt: evil"), req("start")}, StatusBad},
		{"bad context", "", []ipc.Attrs{req("open", attrSender, "a", attrContext, "trusted"), req("start")}, StatusBad},
		{"bad notify", "", []ipc.Attrs{req("open", attrSender, "a"), req("rcpt", attrAddr, "a@x", attrNotify, "X\r\nY"), req("start")}, StatusBad},
		{"unexpected", "", []ipc.Attrs{req("open", attrSender, "a"), req("data"), req("start")}, StatusBad},
	}
	for _, tt := range tests {
		cfg, store := testConfig(t, tt.extra)
		c, done := serve(t, &Server{Config: cfg, Store: store, UID: 4242})
		// The server may refuse after the first frame and hang up before
		// the rest is written: write errors are expected, the reply counts.
		for _, f := range tt.frames {
			if c.Send(f) != nil {
				break
			}
		}
		c.Flush()
		r, err := c.Read()
		if err != nil || r.Str(attrStatus) != tt.status {
			t.Errorf("%s: reply %v %v, want status %s", tt.name, r, err, tt.status)
		}
		wait(t, done)
		if ids, _ := store.List(queue.Maildrop); len(ids) != 0 {
			t.Errorf("%s: files left: %v", tt.name, ids)
		}
	}
}

func TestServeSizeAndCancel(t *testing.T) {
	cfg, store := testConfig(t, "message_size_limit = 10")
	c, done := serve(t, &Server{Config: cfg, Store: store, UID: 1})
	send(t, c, req("open", attrSender, "a"), req("rcpt", attrAddr, "b"), req("start"))
	c.Read()
	send(t, c, req("data", attrData, "0123456789abc"), req("data", attrData, "more"), req("end"))
	r, _ := c.Read()
	if r.Str(attrStatus) != StatusSize {
		t.Errorf("too big: %v", r)
	}
	wait(t, done)

	cfg, store = testConfig(t, "")
	c, done = serve(t, &Server{Config: cfg, Store: store, UID: 1})
	send(t, c, req("open", attrSender, "a"), req("rcpt", attrAddr, "b"), req("start"))
	c.Read()
	send(t, c, req("data", attrData, "partial"))
	c.Close()
	if err := wait(t, done); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cancelled submission: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(store.Dir(), queue.Maildrop))
	if len(ents) != 0 {
		t.Errorf("cancelled submission left %v", ents)
	}

	cfg, store = testConfig(t, "")
	c, done = serve(t, &Server{Config: cfg, Store: store, UID: 1})
	send(t, c, req("open", attrSender, "a"), req("start"))
	c.Read()
	send(t, c, req("data", attrData, "x\n"), req("end"))
	if r, _ := c.Read(); r.Str(attrStatus) != StatusBad || !strings.Contains(r.Str(attrText), "no recipients") {
		t.Errorf("no recipients: %v", r)
	}
	wait(t, done)
}

func TestSenderMatches(t *testing.T) {
	tests := []struct {
		patterns, sender, delims string
		want                     bool
	}{
		{"*", "anything@x", "", true},
		{"<>", "", "", true},
		{"<>", "a@x", "", false},
		{"a@x", "", "", false},
		{"me@example.org", "ME@Example.ORG", "", true},
		{"me@example.org", "me+tag@example.org", "+", true},
		{"me@example.org", "me+tag@example.org", "", false},
		{"@example.org", "who@EXAMPLE.org", "", true},
		{"@example.org", "who@sub.example.org", "", false},
		{"a@x, b@y  c@z", "c@z", "", true},
		{`"a b"@x`, "a b@x", "", true},
		{"joe", "joe", "", true},
	}
	for _, tt := range tests {
		if got := SenderMatches(tt.patterns, tt.sender, tt.delims); got != tt.want {
			t.Errorf("SenderMatches(%q, %q, %q) = %v", tt.patterns, tt.sender, tt.delims, got)
		}
	}
}

func TestTrustConfigDir(t *testing.T) {
	if err := TrustConfigDir("/some/where", 1000, false); err != nil {
		t.Errorf("unprivileged: %v", err)
	}
	if err := TrustConfigDir("/some/where", 0, true); err != nil {
		t.Errorf("root: %v", err)
	}
	if err := TrustConfigDir(config.DefaultDir+"/", 1000, true); err != nil {
		t.Errorf("default dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(config.DefaultDir, "main.cf")); err == nil {
		t.Skip("a system main.cf exists; its alternate_config_directories decide")
	}
	if err := TrustConfigDir("/some/where", 1000, true); err == nil {
		t.Error("set-group-ID postdrop accepted an unlisted configuration directory")
	}
}

// TestPostdropOpenTrace: sendmail's side of the conversation sends the -v
// request (trace) only when set, and postdrop's side reads it back.
func TestPostdropOpenTrace(t *testing.T) {
	for _, trace := range []bool{true, false} {
		r1, w1, _ := os.Pipe()
		r2, w2, _ := os.Pipe()
		client := ipc.NewConn(&pipeConn{r: r1, w: w2}, ipc.Options{MaxFrame: maxFrame, Timeout: 10 * time.Second})
		server := ipc.NewConn(&pipeConn{r: r2, w: w1}, ipc.Options{MaxFrame: maxFrame, Timeout: 10 * time.Second})
		p := &postdropSink{c: client, buf: make([]byte, 0, chunkSize)}
		done := make(chan error, 1)
		go func() {
			done <- p.open(&Submission{Sender: "me@example.org", Trace: trace, Recipients: []queue.Recipient{{Addr: "a@example.org"}}})
		}()
		if err := ipc.Hello(server, Service); err != nil {
			t.Fatal(err)
		}
		sub, err := readSubmission(server)
		if err != nil {
			t.Fatal(err)
		}
		if sub.Trace != trace || len(sub.Recipients) != 1 {
			t.Errorf("trace %v: read %+v", trace, sub)
		}
		server.Write(ipc.Attrs{{Name: attrQueueID, Value: "ID1"}})
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("open did not return")
		}
		client.Close()
		server.Close()
	}
}

package queuectl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postern/pkg/config"
	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
)

// serveShowq runs a Showq on the socket public/showq of s's queue until
// the test ends, as the skeleton would: one Handle per connection, the
// connection closed after it.
func serveShowq(t *testing.T, s *queue.Store, timeout time.Duration) string {
	t.Helper()
	path := filepath.Join(s.Dir(), queue.Public, "showq")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	h := &Showq{store: s, timeout: timeout, loc: time.UTC}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.Handle(ctx, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		cancel()
		wg.Wait()
	})
	return path
}

// showqQueue fills a queue with a message in each listed queue, one with
// deferral reasons.
func showqQueue(t *testing.T) *queue.Store {
	t.Helper()
	s := testQueue(t)
	simple(t, s, queue.Incoming)
	simple(t, s, queue.Hold)
	simple(t, s, queue.Active)
	id := put(t, s, queue.Deferred, queue.Envelope{Sender: "", Recipients: []queue.Recipient{
		{Addr: "x@example.com"}, {Addr: "y@example.com", Orig: "alias@example.net"}}}, "body", nil)
	if err := s.AppendDeferLog(id, queue.DeferReason{Addr: "y@example.com", Status: "4.4.1", Reason: "connect to mx.example.com[192.0.2.1]:25: Connection refused"}); err != nil {
		t.Fatal(err)
	}
	return s
}

func directListing(t *testing.T, s *queue.Store, format string) string {
	t.Helper()
	entries, err := List(s)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if format == FormatJSON {
		err = WriteJSON(&b, entries)
	} else {
		err = WriteMailq(&b, entries, time.UTC)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestShowqEqualsDirect: the listing through the socket is byte for byte
// the direct one, in both formats, for a full and an empty queue.
func TestShowqEqualsDirect(t *testing.T) {
	for _, name := range []string{"full", "empty"} {
		s := testQueue(t)
		if name == "full" {
			s = showqQueue(t)
		}
		path := serveShowq(t, s, 5*time.Second)
		for _, format := range []string{FormatText, FormatJSON} {
			want := directListing(t, s, format)
			var got bytes.Buffer
			if err := ShowqClient(path, format, 5*time.Second, &got); err != nil {
				t.Fatalf("%s %s: %v", name, format, err)
			}
			if got.String() != want {
				t.Errorf("%s %s: showq:\n%q\nwant:\n%q", name, format, got.String(), want)
			}
			if name == "full" && !strings.Contains(want, "Connection refused") {
				t.Errorf("%s %s: the test queue has no reason:\n%s", name, format, want)
			}
		}
	}
}

// testReportConfig is a main.cf for Report on the queue of s.
func testReportConfig(t *testing.T, s *queue.Store, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(fmt.Sprintf("queue_directory = %s\nipc_timeout = 5s\n%s\n", s.Dir(), extra)), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestReport: a caller who may not read the queue gets the same listing
// from showq as a privileged one reads directly; with no showq it is
// told the mail system is down (69); authorized_mailq_users refuses (77).
func TestReport(t *testing.T) {
	s := showqQueue(t)
	cfg := testReportConfig(t, s, "")
	const user = 4242424 // a uid without a password entry
	var direct bytes.Buffer
	if err := Report(cfg, "", os.Getuid(), true, FormatText, time.UTC, &direct); err != nil {
		t.Fatal(err)
	}

	var down bytes.Buffer
	err := Report(cfg, "", user, false, FormatText, time.UTC, &down)
	var re *ReportError
	if !errors.As(err, &re) || re.Status != exUnavailable || !strings.HasPrefix(re.Text, "Queue report unavailable - mail system is down (") {
		t.Errorf("no showq: %#v", err)
	}
	if down.Len() != 0 {
		t.Errorf("no showq: wrote %q", down.String())
	}

	serveShowq(t, s, 5*time.Second)
	var via bytes.Buffer
	if err := Report(cfg, "", user, false, FormatText, time.UTC, &via); err != nil {
		t.Fatal(err)
	}
	if via.String() != direct.String() {
		t.Errorf("through showq:\n%s\nwant:\n%s", via.String(), direct.String())
	}

	refused := testReportConfig(t, s, "authorized_mailq_users = root")
	err = Report(refused, "", user, false, FormatText, time.UTC, io.Discard)
	if !errors.As(err, &re) || re.Status != exNoPerm || !strings.Contains(re.Text, "is not allowed to view the mail queue") {
		t.Errorf("refused: %#v", err)
	}
	if err := Report(refused, "", os.Getuid(), true, FormatText, time.UTC, io.Discard); err != nil {
		t.Errorf("privileged caller refused: %v", err)
	}
}

// TestShowqServerError: a queue showq cannot read gives the client a
// clear 69, not an empty listing.
func TestShowqServerError(t *testing.T) {
	s := showqQueue(t)
	active := filepath.Join(s.Dir(), queue.Active)
	if err := os.RemoveAll(active); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(active, nil, 0o600); err != nil { // not a directory
		t.Fatal(err)
	}
	path := serveShowq(t, s, 5*time.Second)
	var out bytes.Buffer
	err := ShowqClient(path, FormatJSON, 5*time.Second, &out)
	var re *ReportError
	if !errors.As(err, &re) || re.Status != exUnavailable || !strings.Contains(re.Text, "could not read the queue") {
		t.Errorf("unreadable queue: %#v", err)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %q", out.String())
	}
}

// TestShowqBadRequests: the server hangs up on an unknown format, an
// overlong line and an idle client (after its timeout), without a reply.
func TestShowqBadRequests(t *testing.T) {
	s := testQueue(t)
	path := serveShowq(t, s, 300*time.Millisecond)
	for _, req := range []string{"yaml\n", strings.Repeat("t", 100), "text", ""} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		start := time.Now()
		b, err := io.ReadAll(c)
		c.Close()
		if (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(b) != 0 {
			t.Errorf("request %q: got %q, %v; want a hang-up", req, b, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("request %q: hang-up after %v", req, d)
		}
	}
	if err := ShowqClient(path, "yaml", time.Second, io.Discard); err == nil {
		t.Error("client sent an unknown format")
	}
}

// TestShowqClientReplies: the client's reading of the status line.
func TestShowqClientReplies(t *testing.T) {
	for _, tc := range []struct {
		reply, out string
		status     int // 0: no error; -1: down
	}{
		{"ok\nlisting\n", "listing\n", 0},
		{"ok\n", "", 0},
		{"", "", -1},
		{"ok", "", -1},
		{"error\n", "", exUnavailable},
		{"nonsense\nxx", "", exUnavailable},
		{strings.Repeat("x", 20000), "", exUnavailable},
	} {
		path := filepath.Join(t.TempDir(), "s")
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			readRequest(c)
			io.WriteString(c, tc.reply)
			c.Close()
		}()
		var out bytes.Buffer
		err = ShowqClient(path, FormatText, 5*time.Second, &out)
		l.Close()
		var re *ReportError
		switch {
		case tc.status == 0 && err != nil, tc.status == -1 && !errors.Is(err, errDown),
			tc.status > 0 && (!errors.As(err, &re) || re.Status != tc.status):
			t.Errorf("reply %.20q: error %v, want status %d", tc.reply, err, tc.status)
		}
		if out.String() != tc.out {
			t.Errorf("reply %.20q: wrote %q, want %q", tc.reply, out.String(), tc.out)
		}
	}
}

// TestShowqClientOutputError: a failing writer is EX_IOERR, a closed
// pipe is no error (mailq | head).
func TestShowqClientOutputError(t *testing.T) {
	path := serveShowq(t, showqQueue(t), 5*time.Second)
	err := ShowqClient(path, FormatText, 5*time.Second, failWriter{errors.New("disk full")})
	var re *ReportError
	if !errors.As(err, &re) || re.Status != exIOErr {
		t.Errorf("failing writer: %#v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	if err := ShowqClient(path, FormatText, 5*time.Second, w); err != nil {
		t.Errorf("closed pipe: %v", err)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

// TestShowqRelayUsage: the set-group-ID relay takes only its own
// arguments.
func TestShowqRelayUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"xml"}, {"text", "json"}, {"-c"}, {"-x", "text"}} {
		var stderr bytes.Buffer
		if rc := ShowqRelayMain(args, io.Discard, &stderr); rc != exUsage || !strings.Contains(stderr.String(), "usage:") {
			t.Errorf("%q: exit %d, %q", args, rc, stderr.String())
		}
	}
	if !IsShowqRelay([]string{"postdrop", ShowqArg, "text"}) || IsShowqRelay([]string{"postdrop", "-c", "x"}) || IsShowqRelay([]string{"postdrop"}) {
		t.Error("IsShowqRelay")
	}
}

// FuzzShowqRequest: any request bytes give a known format or an error,
// never a panic.
func FuzzShowqRequest(f *testing.F) {
	for _, s := range []string{"text\n", "json\n", "", "\n", "text", "json\r\n", strings.Repeat("a", 40)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		format, err := readRequest(bytes.NewReader(b))
		if err == nil && format != FormatText && format != FormatJSON {
			t.Fatalf("%q: format %q", b, format)
		}
	})
}

// TestShowqRelayMain: the relay (run here without set-group-ID, so any
// configuration directory is trusted) copies the showq listing and
// applies authorized_mailq_users to the real uid.
func TestShowqRelayMain(t *testing.T) {
	conf, s := testConfig(t)
	put(t, s, queue.Deferred, queue.Envelope{Sender: "a@example.org", Recipients: []queue.Recipient{{Addr: "b@example.com"}}}, "x", nil)
	serveShowq(t, s, 5*time.Second)
	want := directListing(t, s, FormatJSON)
	var out, stderr bytes.Buffer
	if rc := ShowqRelayMain([]string{"-c", conf, FormatJSON}, &out, &stderr); rc != exOK || out.String() != want || stderr.Len() != 0 {
		t.Errorf("relay: exit %d, %q\n%s\nwant:\n%s", rc, stderr.String(), out.String(), want)
	}
	f, err := os.OpenFile(filepath.Join(conf, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "authorized_mailq_users = !%s, static:anyone\n", loginOrUnknown())
	f.Close()
	out.Reset()
	stderr.Reset()
	if rc := ShowqRelayMain([]string{"-c", conf, FormatText}, &out, &stderr); rc != exNoPerm || out.Len() != 0 ||
		!strings.Contains(stderr.String(), "is not allowed to view the mail queue") {
		t.Errorf("refused relay: exit %d, %q\n%s", rc, stderr.String(), out.String())
	}
}

func loginOrUnknown() string {
	if n := drop.LoginName(os.Getuid()); n != "" {
		return n
	}
	return "unknown"
}

// TestRelayExec: how the client runs postdrop showq and reads its result.
func TestRelayExec(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"$@\"\nif [ \"$4\" = fail ]; then echo 'Queue report unavailable: no' >&2; exit 75; fi\n"
	if err := os.WriteFile(filepath.Join(dir, "postdrop"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(strings.NewReader("command_directory = "+dir+"\n"), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := relay(cfg, "/c", FormatText, &out); err != nil || out.String() != "showq -c /c text\n" {
		t.Errorf("relay: %v, %q", err, out.String())
	}
	out.Reset()
	err = relay(cfg, "/c", "fail", &out)
	var re *ReportError
	if !errors.As(err, &re) || re.Status != exTempFail || re.Text != "Queue report unavailable: no" {
		t.Errorf("failing relay: %#v", err)
	}
	os.Remove(filepath.Join(dir, "postdrop"))
	if err := relay(cfg, "", FormatText, &out); !errors.As(err, &re) || re.Status != exUnavailable || !strings.Contains(re.Text, "run postdrop") {
		t.Errorf("no postdrop: %#v", err)
	}
}

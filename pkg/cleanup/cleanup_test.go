package cleanup

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"postern/pkg/config"
	"postern/pkg/handoff"
	"postern/pkg/maillog"
	"postern/pkg/queue"
)

func testCleanup(t *testing.T, extra string) (*Cleanup, *queue.Store) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(strings.NewReader("queue_directory = "+dir+"\nmyhostname = mx.example.com\nmyorigin = example.com\n"+extra), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	log, err := maillog.New(maillog.Options{Program: "cleanup", File: filepath.Join(dir, "log"), FilePrefixes: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	c := newCleanup(cfg, log)
	if err := c.openTables(cfg); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, queue.Incoming), 0700)
	return c, c.store
}

// run passes content through cleanup and returns the verdict and, when
// queued, the stored message. A request without flags is treated as
// smtpd's (handoff.External), not as a notice.
func run(t *testing.T, c *Cleanup, store *queue.Store, req *handoff.Request, content string) (handoff.Result, *queue.Message, string) {
	t.Helper()
	w, err := store.Create(queue.Incoming)
	if err != nil {
		t.Fatal(err)
	}
	if !req.HasFlags {
		req.Flags, req.HasFlags = handoff.External, true
	}
	res := c.receive(req, w, strings.NewReader(content))
	if res.Status != handoff.OK {
		w.Abort()
		return res, nil, ""
	}
	m, err := store.Open(queue.Incoming, w.ID())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	b, _ := io.ReadAll(m.Content())
	return res, m, string(b)
}

func TestEnvelopeAndDuplicates(t *testing.T) {
	c, store := testCleanup(t, "")
	req := &handoff.Request{Sender: "alice", RewriteContext: handoff.ContextRemote,
		Recipients: []handoff.Recipient{{Addr: "bob@example.org"}, {Addr: "BOB@example.org"}, {Addr: "carol", Notify: "FAILURE"}}}
	res, m, content := run(t, c, store, req, "Subject: x\n\nbody")
	if res.Status != handoff.OK {
		t.Fatalf("%+v", res)
	}
	env := m.Envelope
	if env.Sender != "alice@example.com" {
		t.Errorf("sender %q", env.Sender)
	}
	if len(env.Recipients) != 2 || env.Recipients[0].Addr != "bob@example.org" || env.Recipients[1].Addr != "carol@example.com" ||
		env.Recipients[1].Orig != "carol" || env.Recipients[1].Notify != "FAILURE" {
		t.Errorf("recipients %+v", env.Recipients)
	}
	// Remote context: nothing added; a missing final newline is supplied.
	if content != "Subject: x\n\nbody\n" {
		t.Errorf("content %q", content)
	}
}

func TestMissingHeaders(t *testing.T) {
	c, store := testCleanup(t, "")
	req := &handoff.Request{Sender: "alice@example.com", RewriteContext: handoff.ContextLocal, Recipients: []handoff.Recipient{{Addr: "b@example.org"}}}
	_, m, content := run(t, c, store, req, "Subject: x\nX-Long: a\n b\n\nFrom: not a header\n")
	re := regexp.MustCompile(`^Subject: x\nX-Long: a\n b\nFrom: alice@example\.com\nDate: [^\n]+\nMessage-Id: <\d{14}\.` + string(m.ID) + `@mx\.example\.com>\n\nFrom: not a header\n$`)
	if !re.MatchString(content) {
		t.Errorf("content:\n%s", content)
	}
	// Present headers are not added again; the null sender becomes
	// MAILER-DAEMON.
	req.Sender = ""
	_, _, content = run(t, c, store, req, "Date: today\nMessage-ID: <a@b>\n\nbody\n")
	if content != "Date: today\nMessage-ID: <a@b>\nFrom: MAILER-DAEMON\n\nbody\n" {
		t.Errorf("content:\n%s", content)
	}
	// Header only, no body.
	_, _, content = run(t, c, store, req, "Subject: only")
	if !strings.HasPrefix(content, "Subject: only\nFrom: MAILER-DAEMON\nDate: ") {
		t.Errorf("content:\n%s", content)
	}
}

func TestLimits(t *testing.T) {
	c, store := testCleanup(t, "message_size_limit = 100\nheader_size_limit = 20\n")
	req := &handoff.Request{Sender: "a@example.com", Recipients: []handoff.Recipient{{Addr: "b@example.org"}}}
	res, _, _ := run(t, c, store, req, "Subject: x\n\n"+strings.Repeat("x", 200)+"\n")
	if res.Status != handoff.PermFail || res.DSN != "5.3.4" {
		t.Errorf("too big: %+v", res)
	}
	_, _, content := run(t, c, store, req, "Subject: 0123456789012345678901234567890\n continued\n\nbody\n")
	if content != "Subject: 0123456789\n\nbody\n" {
		t.Errorf("long header: %q", content)
	}
	res, _, _ = run(t, c, store, &handoff.Request{Sender: "a@example.com"}, "x\n")
	if res.Status != handoff.PermFail {
		t.Errorf("no recipients: %+v", res)
	}
}

func TestHeaderName(t *testing.T) {
	for in, want := range map[string]string{"Subject: x": "Subject", "X-A:b": "X-A", "Subject : x": "Subject", ": x": "", "no colon": "", "sp ace: x": ""} {
		got, ok := headerName([]byte(in))
		if got != want || ok != (want != "") {
			t.Errorf("headerName(%q) = %q, %v", in, got, ok)
		}
	}
}

func FuzzCopyContent(f *testing.F) {
	f.Add("Subject: x\n\nbody\n", true)
	f.Add("X: a\n b\n\tc\nnot header\n", false)
	f.Fuzz(func(t *testing.T, content string, local bool) {
		c, store := testCleanup(t, "message_size_limit = 100000\nheader_size_limit = 50\n")
		ctx := handoff.ContextRemote
		if local {
			ctx = handoff.ContextLocal
		}
		req := &handoff.Request{Sender: "a@example.com", RewriteContext: ctx, Recipients: []handoff.Recipient{{Addr: "b@example.org"}}}
		res, _, got := run(t, c, store, req, content)
		if res.Status != handoff.OK {
			t.Fatalf("%+v", res)
		}
		if len(got) > 0 && got[len(got)-1] != '\n' {
			t.Errorf("content does not end with a newline: %q", got)
		}
		if !local && len(content) < 50 && got != content && got != content+"\n" {
			t.Errorf("remote content changed: %q -> %q", content, got)
		}
	})
}

func TestFromHeader(t *testing.T) {
	for _, c := range []struct{ sender, name, format, want string }{
		{"a@example.com", "", "standard", "a@example.com"},
		{"a@example.com", "Ann Smith", "standard", "Ann Smith <a@example.com>"},
		{"a@example.com", "Smith, Ann", "standard", `"Smith, Ann" <a@example.com>`},
		{"a@example.com", `A "B" \C`, "standard", `"A \"B\" \\C" <a@example.com>`},
		{"a@example.com", "Zoë", "standard", "=?utf-8?q?Zo=C3=AB?= <a@example.com>"},
		{"a@example.com", "Ann (x)", "obsolete", `a@example.com (Ann \(x\))`},
		{"", "Daemon", "standard", "Daemon <MAILER-DAEMON>"},
		{"a@example.com", "evil\r\nBcc: x", "standard", `"evilBcc: x" <a@example.com>`},
	} {
		if got := fromHeader(c.sender, c.name, c.format); got != c.want {
			t.Errorf("fromHeader(%q, %q, %s) = %q, want %q", c.sender, c.name, c.format, got, c.want)
		}
	}
}

// TestTraceRequest: a hand-off with trace (sendmail -v) is recorded as the
// envelope attribute "trace", beside a content filter; without it there
// is none.
func TestTraceRequest(t *testing.T) {
	c, store := testCleanup(t, "")
	for _, tc := range []struct {
		trace  bool
		filter string
	}{{true, ""}, {true, "smtp:[127.0.0.1]:10025"}, {false, ""}} {
		req := &handoff.Request{Sender: "alice", RewriteContext: handoff.ContextLocal, Trace: tc.trace, Filter: tc.filter,
			Recipients: []handoff.Recipient{{Addr: "bob@example.org"}}}
		res, m, _ := run(t, c, store, req, "Subject: x\n\nbody\n")
		if res.Status != handoff.OK {
			t.Fatalf("%+v", res)
		}
		if got, ok := m.Envelope.Attrs["trace"]; ok != tc.trace || (ok && got != "1") {
			t.Errorf("trace=%v: attrs %v", tc.trace, m.Envelope.Attrs)
		}
		if m.Envelope.Attrs["filter"] != tc.filter {
			t.Errorf("filter %q lost: attrs %v", tc.filter, m.Envelope.Attrs)
		}
	}
}

// duplicate_filter_limit bounds the duplicate filter: beyond it addresses
// are not remembered and a later duplicate is kept, as Postfix's.
func TestDuplicateFilterLimit(t *testing.T) {
	c, store := testCleanup(t, "duplicate_filter_limit = 1\n")
	req := &handoff.Request{Sender: "alice@example.com", RewriteContext: handoff.ContextRemote,
		Recipients: []handoff.Recipient{{Addr: "a@example.org"}, {Addr: "a@example.org"}, {Addr: "b@example.org"}, {Addr: "b@example.org"}}}
	res, m, _ := run(t, c, store, req, "Subject: x\n\nbody\n")
	if res.Status != handoff.OK {
		t.Fatalf("%+v", res)
	}
	var got []string
	for _, r := range m.Envelope.Recipients {
		got = append(got, r.Addr)
	}
	if strings.Join(got, " ") != "a@example.org b@example.org b@example.org" {
		t.Errorf("recipients %v, want a once and b twice", got)
	}
}

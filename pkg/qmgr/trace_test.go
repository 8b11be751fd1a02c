package qmgr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"postern/pkg/deliver"
	"postern/pkg/handoff"
	"postern/pkg/ipc"
	"postern/pkg/queue"
)

// noticeSink is a cleanup service that keeps every notice qmgr queues.
type noticeSink struct {
	mu  sync.Mutex
	got []sunk
}

type sunk struct {
	req     *handoff.Request
	content string
}

func startNoticeSink(t *testing.T, q *Qmgr) *noticeSink {
	t.Helper()
	path := filepath.Join(q.cfg.Get("queue_directory"), queue.Public, q.cfg.Get("cleanup_service_name"))
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &noticeSink{}
	go func() {
		for n := 1; ; n++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(conn, fmt.Sprintf("NOTICE%05d", n))
		}
	}()
	return s
}

func (s *noticeSink) serve(conn net.Conn, id string) {
	defer conn.Close()
	c := ipc.NewConn(conn, ipc.Options{Timeout: 10 * time.Second, MaxFrame: 1 << 20})
	if ipc.Hello(c, handoff.Service) != nil {
		return
	}
	req, err := handoff.ReadRequest(c, 10)
	if err != nil {
		return
	}
	handoff.SendID(c, id)
	b, err := io.ReadAll(handoff.ContentReader(c))
	if err != nil {
		return
	}
	s.mu.Lock()
	s.got = append(s.got, sunk{req, string(b)})
	s.mu.Unlock()
	handoff.Reply(c, handoff.Result{Status: handoff.OK, QueueID: id}, false)
}

// take returns and forgets the notices received so far.
func (s *noticeSink) take() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.got
	s.got = nil
	return got
}

// traceReportParsed is what a test reads back from a notice.
type traceReportParsed struct {
	subject string
	human   string
	rcpts   []textproto.MIMEHeader
	part3   string // Content-Description of the third part
}

func parseReport(t *testing.T, content string) traceReportParsed {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	r := traceReportParsed{subject: m.Header.Get("Subject")}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for n := 0; ; n++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		switch n {
		case 0:
			r.human = string(b)
		case 1:
			tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
			tr.ReadMIMEHeader() // per-message fields
			for {
				h, err := tr.ReadMIMEHeader()
				if len(h) > 0 {
					r.rcpts = append(r.rcpts, h)
				}
				if err != nil {
					break
				}
			}
		case 2:
			r.part3 = p.Header.Get("Content-Description")
		}
	}
	return r
}

// enqueueTraced puts a message into active/, with the "trace" attribute
// when trace is set; notify is every recipient's DSN NOTIFY.
func enqueueTraced(t *testing.T, e *expireEnv, sender string, trace bool, notify []string, rcpts ...string) queue.ID {
	t.Helper()
	w, err := e.q.store.Create(queue.Incoming)
	if err != nil {
		t.Fatal(err)
	}
	env := &queue.Envelope{Sender: sender, Arrival: time.Now(), Protocol: "ESMTP"}
	if trace {
		env.Attrs = map[string]string{attrTrace: "1"}
	}
	for i, r := range rcpts {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r, Notify: notify[i], Status: queue.Pending})
	}
	if err := w.Envelope(env); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: lunch\nMessage-ID: <m1@example.org>\n\nbody line\n"))
	if err := w.CommitTo(queue.Active); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

// byAddress answers per recipient: ok@ delivered, slow@ deferred, gone@
// failed.
func byAddress(j *job) []deliver.Result {
	var rs []deliver.Result
	for _, i := range j.rcpts {
		addr := j.msg.m.Envelope.Recipients[i].Addr
		r := deliver.Result{Index: i, Status: deliver.Defer, DSN: "4.4.1", Text: "connect to mx.example.net[192.0.2.7]:25: Connection refused"}
		switch {
		case strings.HasPrefix(addr, "ok"):
			r = deliver.Result{Index: i, Status: deliver.Sent, DSN: "2.0.0", RemoteMTA: "mx.example.net",
				Text: "250 2.0.0 Ok: queued as 4ABC", Diagnostic: "smtp; 250 2.0.0 Ok: queued as 4ABC"}
		case strings.HasPrefix(addr, "gone"):
			r = deliver.Result{Index: i, Status: deliver.Bounce, DSN: "5.1.1", Text: "host mx.example.net[192.0.2.7] said: 550 5.1.1 User unknown"}
		}
		rs = append(rs, r)
	}
	return rs
}

// TestTraceReport: sendmail -v's report after the first attempt lists
// every recipient with its outcome (the agent's text when qmgr kept it,
// the transport otherwise), goes from the null sender, replaces the
// success notice, leaves the bounce alone, and is sent once: a second
// attempt sends none.
func TestTraceReport(t *testing.T) {
	var all atomic.Bool // the second attempt delivers everything
	e := newExpireEnv(t, "", func(j *job) []deliver.Result {
		if !all.Load() {
			return byAddress(j)
		}
		var rs []deliver.Result
		for _, i := range j.rcpts {
			rs = append(rs, deliver.Result{Index: i, Status: deliver.Sent, DSN: "2.0.0", Text: "250 2.0.0 Ok"})
		}
		return rs
	})
	sink := startNoticeSink(t, e.q)
	id := enqueueTraced(t, e, "alice@example.org", true, []string{"SUCCESS", "", "", ""},
		"ok1@example.net", "ok2@example.net", "slow@example.net", "gone@example.net")
	e.attempt(t, id)

	var trace, bounce []sunk
	for _, n := range sink.take() {
		switch parseReport(t, n.content).subject {
		case "Mail Delivery Status Report":
			trace = append(trace, n)
		case "Undelivered Mail Returned to Sender":
			bounce = append(bounce, n)
		default:
			t.Errorf("unexpected notice:\n%s", n.content)
		}
	}
	if len(trace) != 1 || len(bounce) != 1 {
		t.Fatalf("%d reports and %d bounces, want 1 and 1\n%s", len(trace), len(bounce), e.log())
	}
	n := trace[0]
	if n.req.Sender != "" || len(n.req.Recipients) != 1 || n.req.Recipients[0].Addr != "alice@example.org" || n.req.Trace {
		t.Errorf("report envelope %+v", n.req)
	}
	r := parseReport(t, n.content)
	if !strings.HasPrefix(r.human, "This is the mail system at host mx.example.com.\n\nEnclosed is the mail delivery report that you requested.\n") {
		t.Errorf("text:\n%s", r.human)
	}
	if r.part3 != "Message Headers" || strings.Contains(n.content, "body line") {
		t.Errorf("third part %q; the body must not be returned", r.part3)
	}
	want := []struct{ rcpt, action, status, diag string }{
		{"ok1@example.net", "relayed", "2.0.0", "smtp; 250 2.0.0 Ok: queued as 4ABC"},
		{"ok2@example.net", "relayed", "2.0.0", "smtp; 250 2.0.0 Ok: queued as 4ABC"},
		{"slow@example.net", "delayed", "4.4.1", "X-Postern; connect to mx.example.net[192.0.2.7]:25: Connection refused"},
		{"gone@example.net", "failed", "5.1.1", "X-Postern; host mx.example.net[192.0.2.7] said: 550 5.1.1 User unknown"},
	}
	if len(r.rcpts) != len(want) {
		t.Fatalf("%d recipients reported:\n%s", len(r.rcpts), n.content)
	}
	for i, w := range want {
		h := r.rcpts[i]
		if h.Get("Final-Recipient") != "rfc822; "+w.rcpt || h.Get("Action") != w.action || h.Get("Status") != w.status || h.Get("Diagnostic-Code") != w.diag {
			t.Errorf("recipient %d: %v, want %+v", i+1, h, w)
		}
	}
	if got := r.rcpts[0].Get("Remote-MTA"); got != "dns; mx.example.net" {
		t.Errorf("Remote-MTA %q", got)
	}
	log := strings.Join(e.lines(id), "\n")
	if !strings.Contains(log, string(id)+": sender delivery status notification: NOTICE") {
		t.Errorf("log:\n%s", log)
	}
	if !e.exists(queue.Deferred, id) {
		t.Fatal("not deferred")
	}
	if _, err := os.Stat(filepath.Join(e.q.store.Dir(), queue.Trace, string(id))); err != nil {
		t.Errorf("no trace marker for a message still queued: %v", err)
	}

	// The second attempt delivers the rest: no second report, and the
	// marker leaves with the message.
	if err := e.q.store.Move(id, queue.Deferred, queue.Active); err != nil {
		t.Fatal(err)
	}
	all.Store(true)
	e.attempt(t, id)
	if got := sink.take(); len(got) != 0 {
		t.Errorf("second attempt queued %d notices:\n%s", len(got), got[0].content)
	}
	if e.exists(queue.Active, id) || e.exists(queue.Deferred, id) {
		t.Errorf("message kept\n%s", e.log())
	}
	if _, err := os.Stat(filepath.Join(e.q.store.Dir(), queue.Trace, string(id))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("trace marker left behind: %v", err)
	}
}

// TestTraceNone: no report without the request, none about a message
// from the null sender (as Postfix without notify_classes 2bounce), and
// with 2bounce that report goes to the postmaster.
func TestTraceNone(t *testing.T) {
	e := newExpireEnv(t, "", byAddress)
	sink := startNoticeSink(t, e.q)
	id := enqueueTraced(t, e, "alice@example.org", false, []string{""}, "ok@example.net")
	e.attempt(t, id)
	if got := sink.take(); len(got) != 0 {
		t.Errorf("untraced message: %d notices", len(got))
	}
	id = enqueueTraced(t, e, "", true, []string{""}, "ok@example.net")
	e.attempt(t, id)
	if got := sink.take(); len(got) != 0 {
		t.Errorf("null sender: %d notices", len(got))
	}
	if !strings.Contains(strings.Join(e.lines(id), "\n"), ": not sending trace/success notification for single-bounce message") {
		t.Errorf("log:\n%s", e.log())
	}

	e = newExpireEnv(t, "notify_classes = 2bounce\n", byAddress)
	sink = startNoticeSink(t, e.q)
	id = enqueueTraced(t, e, "", true, []string{""}, "ok@example.net")
	e.attempt(t, id)
	got := sink.take()
	if len(got) != 1 || got[0].req.Sender != "double-bounce@example.com" || got[0].req.Recipients[0].Addr != "postmaster" ||
		parseReport(t, got[0].content).subject != "Mail Delivery Status Report" {
		t.Errorf("2bounce: %+v", got)
	}
}

// TestTraceReportFails: a report that cannot be queued leaves no marker,
// so the next attempt tries again.
func TestTraceReportFails(t *testing.T) {
	e := newExpireEnv(t, "", byAddress) // no cleanup service
	id := enqueueTraced(t, e, "alice@example.org", true, []string{""}, "slow@example.net")
	e.attempt(t, id)
	if !strings.Contains(strings.Join(e.lines(id), "\n"), "warning: "+string(id)+": sender notification failed to alice@example.org") &&
		!strings.Contains(e.log(), string(id)+": sender notification failed to alice@example.org") {
		t.Errorf("log:\n%s", e.log())
	}
	if _, err := os.Stat(filepath.Join(e.q.store.Dir(), queue.Trace, string(id))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker after a failed report: %v", err)
	}
}

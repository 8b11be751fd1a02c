package queuectl

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"postern/pkg/queue"
)

// testQueue makes a queue tree in a temporary directory.
func testQueue(t *testing.T) *queue.Store {
	t.Helper()
	s := queue.NewStore(filepath.Join(t.TempDir(), "queue"))
	if err := os.MkdirAll(s.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ensure(os.Getuid(), os.Getgid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	return s
}

var arrival = time.Date(2024, 3, 5, 14, 7, 9, 0, time.UTC)

// put writes a message into q and returns its ID. done lists the indexes
// of recipients to mark delivered.
func put(t *testing.T, s *queue.Store, q string, env queue.Envelope, content string, extracted []queue.Recipient, done ...int) queue.ID {
	t.Helper()
	w, err := s.Create(queue.Incoming)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if env.Arrival.IsZero() {
		env.Arrival = arrival
	}
	pending := func(rs []queue.Recipient) []queue.Recipient {
		out := slices.Clone(rs)
		for i := range out {
			out[i].Status = queue.Pending
		}
		return out
	}
	env.Recipients = pending(env.Recipients)
	extracted = pending(extracted)
	if err := w.Envelope(&env); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	for _, r := range extracted {
		if err := w.AddRecipient(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	id := w.ID()
	if len(done) > 0 {
		m, err := s.Open(queue.Incoming, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range done {
			if err := m.SetStatus(i, queue.Delivered); err != nil {
				t.Fatal(err)
			}
		}
		m.Close()
	}
	if q != queue.Incoming {
		if err := s.Move(id, queue.Incoming, q); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

func simple(t *testing.T, s *queue.Store, q string) queue.ID {
	t.Helper()
	return put(t, s, q, queue.Envelope{Sender: "a@example.org", Recipients: []queue.Recipient{{Addr: "b@example.com"}}},
		"Subject: x\n\nbody\n", nil)
}

func exists(s *queue.Store, q string, id queue.ID) bool {
	_, err := os.Lstat(s.Path(q, id))
	return err == nil
}

func TestDeleteHoldReleaseRequeue(t *testing.T) {
	s := testQueue(t)
	d1, d2 := simple(t, s, queue.Deferred), simple(t, s, queue.Deferred)
	act := simple(t, s, queue.Active)
	var stderr bytes.Buffer
	var woken []byte
	ctl := &Ctl{Store: s, Stderr: &stderr, Trigger: func(b byte) error { woken = append(woken, b); return nil }}

	// delete
	if !ctl.Do(Delete, string(d1), nil) {
		t.Fatalf("delete %s: not found\n%s", d1, stderr.String())
	}
	if exists(s, queue.Deferred, d1) {
		t.Error("deleted message still in deferred/")
	}
	if free, _ := os.ReadDir(filepath.Join(s.Dir(), queue.Free)); len(free) != 0 {
		t.Errorf("deleted file recycled into free/: %v", free)
	}
	if ctl.Do(Delete, string(d1), nil) {
		t.Error("second delete found the message")
	}

	// hold, from deferred and from active
	if !ctl.Do(Hold, string(d2), nil) || !ctl.Do(Hold, string(act), nil) {
		t.Fatalf("hold failed\n%s", stderr.String())
	}
	if !exists(s, queue.Hold, d2) || !exists(s, queue.Hold, act) || exists(s, queue.Deferred, d2) {
		t.Error("held messages not in hold/")
	}

	// release: to deferred, due now, qmgr flushed once at Finish
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(s.Path(queue.Hold, d2), old, old)
	if !ctl.Do(Release, string(d2), nil) {
		t.Fatal("release failed")
	}
	if !exists(s, queue.Deferred, d2) {
		t.Fatal("released message not in deferred/")
	}
	if next, _ := s.NextAttempt(queue.Deferred, d2); time.Since(next) > time.Minute || time.Until(next) > time.Minute {
		t.Errorf("next attempt %v, want now", next)
	}
	if ctl.Do(Release, string(d2), nil) {
		t.Error("released a message that is not on hold")
	}

	// requeue: from hold to incoming, qmgr woken
	if !ctl.Do(Requeue, string(act), nil) || !exists(s, queue.Incoming, act) {
		t.Fatal("requeue from hold failed")
	}
	ctl.Finish()
	if slices.Compare(woken, []byte{'I', 'F'}) != 0 {
		t.Errorf("triggers %q, want I then F", woken)
	}
	want := fmt.Sprintf(`postsuper: %[1]s: removed
postsuper: %[2]s: placed on hold
postsuper: %[3]s: placed on hold
postsuper: %[2]s: released from hold
postsuper: %[3]s: requeued
postsuper: Requeued: 1 message
postsuper: Deleted: 1 message
postsuper: Placed on hold: 2 messages
postsuper: Released from hold: 1 message
`, d1, d2, act)
	if stderr.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), want)
	}
	if ctl.Failed() {
		t.Error("Failed() after successful operations")
	}
}

func TestRequeueKeepsDoneMarksAndSkipsActive(t *testing.T) {
	s := testQueue(t)
	id := put(t, s, queue.Deferred, queue.Envelope{Sender: "a@example.org",
		Recipients: []queue.Recipient{{Addr: "one@example.com"}, {Addr: "two@example.com"}}}, "Subject: x\n\nbody\n", nil, 0)
	act := simple(t, s, queue.Active)
	var stderr bytes.Buffer
	ctl := &Ctl{Store: s, Stderr: &stderr}
	if !ctl.Do(Requeue, string(id), nil) {
		t.Fatalf("requeue: %s", stderr.String())
	}
	m, err := s.Open(queue.Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if st := m.Envelope.Recipients; st[0].Status != queue.Delivered || st[1].Status != queue.Pending {
		t.Errorf("statuses after requeue: %c %c", st[0].Status, st[1].Status)
	}
	if ctl.Do(Requeue, string(act), nil) {
		t.Error("requeued a message in active/")
	}
	if !exists(s, queue.Active, act) || !strings.Contains(stderr.String(), "postsuper: warning: "+string(act)+": message is being delivered") {
		t.Errorf("active message moved or no warning:\n%s", stderr.String())
	}
}

func TestAllAndQueueRestriction(t *testing.T) {
	s := testQueue(t)
	d := []queue.ID{simple(t, s, queue.Deferred), simple(t, s, queue.Deferred)}
	h := simple(t, s, queue.Hold)
	i := simple(t, s, queue.Incoming)
	var stderr bytes.Buffer
	ctl := &Ctl{Store: s, Stderr: &stderr}
	// Restricted to deferred: the one in hold/ stays.
	ctl.DoAll(Delete, []string{queue.Deferred})
	if ctl.Count(Delete) != 2 || exists(s, queue.Deferred, d[0]) || exists(s, queue.Deferred, d[1]) || !exists(s, queue.Hold, h) {
		t.Errorf("delete ALL deferred: count %d\n%s", ctl.Count(Delete), stderr.String())
	}
	// An ID in hold/ is not found when only incoming is searched.
	if ctl.Do(Delete, string(h), []string{queue.Incoming}) {
		t.Error("found a held message in incoming/")
	}
	ctl.DoAll(Hold, nil)
	if !exists(s, queue.Hold, i) || ctl.Count(Hold) != 1 {
		t.Errorf("hold ALL: count %d", ctl.Count(Hold))
	}
	ctl.DoAll(Release, nil)
	if ctl.Count(Release) != 2 || !exists(s, queue.Deferred, h) || !exists(s, queue.Deferred, i) {
		t.Errorf("release ALL: count %d", ctl.Count(Release))
	}
}

func TestInvalidID(t *testing.T) {
	s := testQueue(t)
	var stderr bytes.Buffer
	ctl := &Ctl{Store: s, Stderr: &stderr}
	for _, id := range []string{"../../etc/passwd", "short", "abc/defghijkl"} {
		if ctl.Do(Delete, id, nil) {
			t.Errorf("%q accepted", id)
		}
	}
	ctl.Finish()
	want := "postsuper: warning: invalid mail queue id: ../../etc/passwd\n" +
		"postsuper: warning: invalid mail queue id: short\n" +
		"postsuper: warning: invalid mail queue id: abc/defghijkl\n" +
		"postsuper: Deleted: 0 messages\n"
	if stderr.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), want)
	}
	if ctl.Failed() {
		t.Error("an invalid ID is not a failure")
	}
}

func TestDeleteFailure(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	s := testQueue(t)
	id := simple(t, s, queue.Deferred)
	dir := filepath.Join(s.Dir(), queue.Deferred)
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	var stderr bytes.Buffer
	ctl := &Ctl{Store: s, Stderr: &stderr}
	if ctl.Do(Delete, string(id), nil) || !ctl.Failed() {
		t.Errorf("delete in a read-only directory: failed=%v\n%s", ctl.Failed(), stderr.String())
	}
}

func TestListFormats(t *testing.T) {
	s := testQueue(t)
	d := put(t, s, queue.Deferred, queue.Envelope{Sender: "a@example.org", Recipients: []queue.Recipient{
		{Addr: "done@example.com"}, {Addr: "b@example.com", Orig: "alias@example.net"}}},
		strings.Repeat("x", 2000), []queue.Recipient{{Addr: "c\"q@example.com"}}, 0)
	h := put(t, s, queue.Hold, queue.Envelope{Sender: "", Arrival: arrival.Add(time.Hour),
		Recipients: []queue.Recipient{{Addr: "p@example.com"}}}, "x", nil)
	entries, err := List(s)
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, entries); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"queue_name": "deferred", "queue_id": "%s", "arrival_time": %d, "message_size": 2000, "forced_expire": false, "sender": "a@example.org", "recipients": [{"orig_address": "alias@example.net", "address": "b@example.com"}, {"orig_address": "c\"q@example.com", "address": "c\"q@example.com"}]}
{"queue_name": "hold", "queue_id": "%s", "arrival_time": %d, "message_size": 1, "forced_expire": false, "sender": "MAILER-DAEMON", "recipients": [{"orig_address": "p@example.com", "address": "p@example.com"}]}
`, d, arrival.Unix(), h, arrival.Unix()+3600)
	if js.String() != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", js.String(), want)
	}
	var mq bytes.Buffer
	if err := WriteMailq(&mq, entries, time.UTC); err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf(`----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
%-17s     2000 Tue Mar  5 14:07:09 a@example.org
                                               b@example.com
                                               c"q@example.com

%-17s        1 Tue Mar  5 15:07:09 MAILER-DAEMON
                                               p@example.com

-- 1 Kbytes in 2 Requests.
`, d, string(h)+"!")
	if mq.String() != want {
		t.Errorf("mailq:\n%s\nwant:\n%s", mq.String(), want)
	}
}

func TestShow(t *testing.T) {
	s := testQueue(t)
	id := put(t, s, queue.Deferred, queue.Envelope{Sender: "a@example.org", ClientName: "localhost", ClientAddr: "127.0.0.1",
		Recipients: []queue.Recipient{{Addr: "b@example.com", Orig: "alias@example.net", Notify: "FAILURE", ORcpt: "rfc822;alias@example.net"},
			{Addr: "c@example.com"}}},
		"Received: from x\n\tby y\nSubject: hi\n\nbody line 1\nFrom: not a header\nlast", []queue.Recipient{{Addr: "x@example.com"}}, 1)
	show := func(flags ShowFlags) string {
		t.Helper()
		f, q, err := Open(s, string(id))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		var out bytes.Buffer
		if err := Show(&out, f, fi.Size(), q+"/"+string(id), flags, time.UTC); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	want := strings.ReplaceAll(`*** ENVELOPE RECORDS deferred/ID ***
message_arrival_time: Tue Mar  5 14:07:09 2024
sender: a@example.org
named_attribute: client_name=localhost
named_attribute: client_address=127.0.0.1
dsn_original_recipient: rfc822;alias@example.net
dsn_notify_flags: FAILURE
original_recipient: alias@example.net
recipient: b@example.com
done_recipient: c@example.com
*** MESSAGE CONTENTS deferred/ID ***
Received: from x
	by y
Subject: hi

body line 1
From: not a header
last
*** HEADER EXTRACTED deferred/ID ***
recipient: x@example.com
*** MESSAGE FILE END deferred/ID ***
`, "ID", string(id))
	if got := show(ShowFlags{}); got != want {
		t.Errorf("show:\n%s\nwant:\n%s", got, want)
	}
	if got, want := show(ShowFlags{Header: true}), "Received: from x\n\tby y\nSubject: hi\n"; got != want {
		t.Errorf("show -h:\n%q\nwant:\n%q", got, want)
	}
	if got, want := show(ShowFlags{Body: true}), "\nbody line 1\nFrom: not a header\nlast\n"; got != want {
		t.Errorf("show -b:\n%q\nwant:\n%q", got, want)
	}
	if _, _, err := Open(s, "0123456789AB"); err == nil {
		t.Error("Open of a missing message succeeded")
	}
}

func TestShowHeaderAcrossRecords(t *testing.T) {
	s := testQueue(t)
	// The writer cuts content into 64 KiB records: put a header line
	// across the cut.
	head := "X-Long: " + strings.Repeat("a", 65536-8-3) + "bcd\nSubject: s\n\nbody\n"
	id := put(t, s, queue.Deferred, queue.Envelope{Sender: "a@example.org", Recipients: []queue.Recipient{{Addr: "b@example.com"}}}, head, nil)
	f, q, err := Open(s, string(id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var out bytes.Buffer
	if err := Show(&out, f, fi.Size(), q+"/"+string(id), ShowFlags{Header: true}, time.UTC); err != nil {
		t.Fatal(err)
	}
	if want := head[:len(head)-len("\nbody\n")]; out.String() != want {
		t.Errorf("header across records: got %d bytes, want %d", out.Len(), len(want))
	}
}

func TestShowCorrupt(t *testing.T) {
	s := testQueue(t)
	id := simple(t, s, queue.Deferred)
	path := s.Path(queue.Deferred, id)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)-4], 0o600)
	f, q, err := Open(s, string(id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var out bytes.Buffer
	err = Show(&out, f, fi.Size(), q+"/"+string(id), ShowFlags{}, time.UTC)
	if err == nil {
		t.Fatalf("no error for a truncated file:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "sender: a@example.org") || strings.Contains(out.String(), "MESSAGE FILE END") {
		t.Errorf("output for a truncated file:\n%s", out.String())
	}
}

// The defer log's reasons reach the listing: its recipients first, in its
// order, then the others; records of recipients no longer pending are
// left out. Deleting the message deletes its log.
func TestListReasons(t *testing.T) {
	s := testQueue(t)
	id := put(t, s, queue.Deferred, queue.Envelope{Sender: "a@example.org", Recipients: []queue.Recipient{
		{Addr: "done@example.com"}, {Addr: "x@example.com"}, {Addr: "y@example.com", Orig: "alias@example.net"}, {Addr: "z@example.com"}}},
		"body", nil, 0)
	if err := s.AppendDeferLog(id,
		queue.DeferReason{Addr: "z@example.com", Status: "4.4.1", Reason: "connect to mx.example.com[192.0.2.1]:25: Connection refused"},
		queue.DeferReason{Addr: "done@example.com", Status: "4.4.1", Reason: "stale"},
		queue.DeferReason{Addr: "y@example.com", Orig: "alias@example.net", Status: "4.2.2", Reason: `said: 452 "full"`},
	); err != nil {
		t.Fatal(err)
	}
	entries, err := List(s)
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, entries); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"queue_name": "deferred", "queue_id": "%s", "arrival_time": %d, "message_size": 4, "forced_expire": false, "sender": "a@example.org", "recipients": [`+
		`{"orig_address": "z@example.com", "address": "z@example.com", "delay_reason": "connect to mx.example.com[192.0.2.1]:25: Connection refused"}, `+
		`{"orig_address": "alias@example.net", "address": "y@example.com", "delay_reason": "said: 452 \"full\""}, `+
		`{"orig_address": "x@example.com", "address": "x@example.com"}]}
`, id, arrival.Unix())
	if js.String() != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", js.String(), want)
	}
	var mq bytes.Buffer
	if err := WriteMailq(&mq, entries, time.UTC); err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf(`----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
%-17s        4 Tue Mar  5 14:07:09 a@example.org
                 (connect to mx.example.com[192.0.2.1]:25: Connection refused)
                                               z@example.com
                                                            (said: 452 "full")
                                               y@example.com
                                                          (reason unavailable)
                                               x@example.com

-- 0 Kbytes in 1 Request.
`, id)
	if mq.String() != want {
		t.Errorf("mailq:\n%s\nwant:\n%s", mq.String(), want)
	}

	ctl := &Ctl{Store: s}
	if !ctl.Do(Delete, string(id), nil) {
		t.Fatal("not deleted")
	}
	if _, err := os.Stat(s.Path(queue.Defer, id)); !os.IsNotExist(err) {
		t.Errorf("defer log left behind: %v", err)
	}
}

package itest

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// block puts a plain file where a mailbox's Maildir should be, so that
// delivery to it fails temporarily; the returned func removes it.
func (in *Instance) block(mailbox string) func() {
	in.t.Helper()
	os.MkdirAll(filepath.Join(in.Mail, "itest.test"), 0o755)
	path := filepath.Join(in.Mail, "itest.test", mailbox)
	if err := os.WriteFile(path, []byte("in the way"), 0o644); err != nil {
		in.t.Fatal(err)
	}
	return func() { os.Remove(path) }
}

// sendDeferred sends a message to rcpt and waits until it is in deferred/.
func (in *Instance) sendDeferred(rcpt, subject string) string {
	in.t.Helper()
	text, err := send(in.t, in.Addr, "a@example.org", []string{rcpt}, "Subject: "+subject+"\r\n\r\nlater\r\n")
	if err != nil {
		in.t.Fatal(err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	in.waitQueued("deferred", id)
	return id
}

// waitQueued waits until message id is in queue q.
func (in *Instance) waitQueued(q, id string) {
	in.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(in.Dir, "queue", q, id)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("%s not in %s/\n%s", id, q, in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (in *Instance) mustPostern(args ...string) string {
	in.t.Helper()
	out, err := in.Postern(args...)
	if err != nil {
		in.t.Fatalf("postern %v: %v\n%s", args, err, out)
	}
	return out
}

func TestQueueControl(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "minimal_backoff_time = 1h\nmaximal_backoff_time = 2h"})
	unblockUser := in.block("user")
	unblockOther := in.block("other")
	held := in.sendDeferred("user@itest.test", "held")
	other := in.sendDeferred("user@itest.test", "other")

	// Listed in mailq's format and as JSON lines.
	out := in.mustPostern("queue")
	if !strings.HasPrefix(out, "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n") ||
		!strings.Contains(out, held+" ") || !strings.Contains(out, "a@example.org\n") ||
		!strings.Contains(out, strings.Repeat(" ", 47)+"user@itest.test\n") || !strings.HasSuffix(out, "in 2 Requests.\n") {
		t.Errorf("postern queue:\n%s", out)
	}
	out = in.mustPostern("queue", "-j")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("postern queue -j: %d lines\n%s", len(lines), out)
	}
	var obj struct {
		QueueName    string `json:"queue_name"`
		QueueID      string `json:"queue_id"`
		ArrivalTime  int64  `json:"arrival_time"`
		MessageSize  int64  `json:"message_size"`
		ForcedExpire *bool  `json:"forced_expire"`
		Sender       string `json:"sender"`
		Recipients   []struct {
			Address string `json:"address"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &obj); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	if obj.QueueName != "deferred" || obj.QueueID != held || obj.Sender != "a@example.org" || obj.MessageSize == 0 ||
		obj.ForcedExpire == nil || *obj.ForcedExpire || time.Since(time.Unix(obj.ArrivalTime, 0)) > time.Minute ||
		len(obj.Recipients) != 1 || obj.Recipients[0].Address != "user@itest.test" {
		t.Errorf("postern queue -j: %+v", obj)
	}

	// Shown as postcat shows it.
	out = in.mustPostern("queue", "show", held)
	for _, want := range []string{
		"*** ENVELOPE RECORDS deferred/" + held + " ***\n",
		"sender: a@example.org\n",
		"recipient: user@itest.test\n",
		"*** MESSAGE CONTENTS deferred/" + held + " ***\n",
		"Subject: held\n",
		"\n\nlater\n*** HEADER EXTRACTED deferred/" + held + " ***\n",
		"*** MESSAGE FILE END deferred/" + held + " ***\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("postern queue show lacks %q:\n%s", want, out)
		}
	}
	if out := in.mustPostern("queue", "show", "-b", held); out != "\nlater\n" {
		t.Errorf("postern queue show -b: %q", out)
	}

	// Held: a flush delivers the other message but not this one.
	out = in.mustPostern("queue", "hold", held)
	if out != "postsuper: "+held+": placed on hold\npostsuper: Placed on hold: 1 message\n" {
		t.Errorf("postern queue hold: %q", out)
	}
	in.waitQueued("hold", held)
	if !in.WaitLog("/postsuper[", time.Second) || !strings.Contains(in.Log(), ": "+held+": placed on hold\n") {
		t.Errorf("hold not logged:\n%s", in.Log())
	}
	unblockUser()
	in.mustPostern("flush")
	in.WaitMaildir("itest.test/user", 1, 10*time.Second)
	if !in.WaitLog(other+": removed", 5*time.Second) {
		t.Fatalf("flushed message not delivered:\n%s", in.Log())
	}
	if n := strings.Count(in.Log(), held+": to="); n != 1 {
		t.Errorf("held message: %d delivery attempts, want only the first:\n%s", n, in.Log())
	}
	if out := in.mustPostern("queue"); !strings.Contains(out, held+"!") {
		t.Errorf("held message not marked '!' in the listing:\n%s", out)
	}

	// Released: delivered at once.
	out = in.mustPostern("queue", "release", held)
	if !strings.Contains(out, "postsuper: "+held+": released from hold\n") || !strings.HasSuffix(out, "postsuper: Released from hold: 1 message\n") {
		t.Errorf("postern queue release: %q", out)
	}
	in.WaitMaildir("itest.test/user", 2, 10*time.Second)
	if !in.WaitLog(held+": removed", 5*time.Second) {
		t.Errorf("released message not removed after delivery:\n%s", in.Log())
	}

	// Deleted.
	doomed := in.sendDeferred("other@itest.test", "doomed")
	out = in.mustPostern("queue", "delete", doomed)
	if out != "postsuper: "+doomed+": removed\npostsuper: Deleted: 1 message\n" {
		t.Errorf("postern queue delete: %q", out)
	}
	if _, err := os.Stat(filepath.Join(in.Dir, "queue", "deferred", doomed)); err == nil {
		t.Error("deleted message still in deferred/")
	}
	if !in.WaitLog("postsuper[", time.Second) || !strings.Contains(in.Log(), ": "+doomed+": removed\n") {
		t.Errorf("delete not logged:\n%s", in.Log())
	}
	if out := in.mustPostern("queue"); out != "Mail queue is empty\n" {
		t.Errorf("queue after delete:\n%s", out)
	}

	// Requeued: back through qmgr at once, without a flush.
	again := in.sendDeferred("other@itest.test", "requeued")
	unblockOther()
	out = in.mustPostern("queue", "requeue", "ALL")
	if out != "postsuper: "+again+": requeued\npostsuper: Requeued: 1 message\n" {
		t.Errorf("postern queue requeue: %q", out)
	}
	in.WaitMaildir("itest.test/other", 1, 10*time.Second)
	if !in.WaitLog(again+": removed", 5*time.Second) {
		t.Errorf("requeued message not removed after delivery:\n%s", in.Log())
	}
}

// TestFlushDown: postern flush with the mail system down exits as
// postqueue -f does.
func TestFlushDown(t *testing.T) {
	in := NewInstance(t, Options{NoStart: true})
	if _, err := in.Postern("check"); err != nil {
		t.Fatal(err)
	}
	out, err := in.Postern("flush")
	code := -1
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		code = ee.ExitCode()
	}
	if code != 69 || !strings.Contains(out, "postqueue: fatal: Cannot flush mail queue - mail system is down") {
		t.Errorf("flush while down: exit %d, %q", code, out)
	}
}

// TestDeleteWhileDelivering deletes a message that qmgr is delivering
// (in active/, its file open in qmgr and in the smtp agent, which waits
// for a silent server's greeting): the name goes at once, qmgr carries on,
// and the message is not retried.
func TestDeleteWhileDelivering(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	in := NewInstance(t, Options{
		MainCf:   "relayhost = [127.0.0.1]:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port) + "\nsmtp_helo_timeout = 30s\nminimal_backoff_time = 1h\nmaximal_backoff_time = 2h",
		MasterCf: "smtp unix - - n - - smtp",
	})
	text, err := send(t, in.Addr, "a@example.org", []string{"far@example.com"}, "Subject: busy\r\n\r\nbody\r\n")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
	var c net.Conn
	select {
	case c = <-conns:
	case <-time.After(10 * time.Second):
		t.Fatalf("smtp agent did not connect\n%s", in.Log())
	}
	in.waitQueued("active", id)
	out := in.mustPostern("queue", "delete", id)
	if out != "postsuper: "+id+": removed\npostsuper: Deleted: 1 message\n" {
		t.Errorf("postern queue delete: %q", out)
	}
	c.Close() // the delivery fails now: deferred, in qmgr's memory only
	if !in.WaitLog(id+": to=<far@example.com>", 10*time.Second) {
		t.Fatalf("no delivery result logged\n%s", in.Log())
	}
	time.Sleep(200 * time.Millisecond)
	for _, q := range []string{"active", "deferred", "incoming", "hold"} {
		if _, err := os.Stat(filepath.Join(in.Dir, "queue", q, id)); err == nil {
			t.Errorf("deleted message reappeared in %s/", q)
		}
	}
	// qmgr lives on and keeps delivering.
	in.Postern("flush")
	if _, err := send(t, in.Addr, "a@example.org", []string{"user@itest.test"}, "Subject: after\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	in.WaitMaildir("itest.test/user", 1, 10*time.Second)
	if !in.WaitLog("removed", 5*time.Second) {
		t.Fatal("no removal logged")
	}
	// The same qmgr process: it did not die on the missing file.
	pids := map[string]bool{}
	for _, l := range strings.Split(in.Log(), "\n") {
		if i := strings.Index(l, "/qmgr["); i >= 0 {
			pids[l[i:i+strings.IndexByte(l[i:], ']')]] = true
		}
	}
	if len(pids) != 1 {
		t.Errorf("qmgr processes %v, want one\n%s", pids, in.Log())
	}
	t.Logf("qmgr's lines for the deleted message:\n%s", grepLines(in.Log(), id+":"))
}

func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package itest

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/pkg/ipc"
	"postern/pkg/queue"
)

// noticeInstance starts an instance whose vmailbox also has pm@itest.test,
// the postmaster of these tests.
func noticeInstance(t *testing.T, mainCf string) *Instance {
	t.Helper()
	in := NewInstance(t, Options{MainCf: mainCf, NoStart: true})
	in.write("vmailbox", "user@itest.test itest.test/user/\nother@itest.test itest.test/other/\n"+
		"mbox@itest.test itest.test/mbox\npm@itest.test itest.test/pm/\n")
	in.Start()
	return in
}

// sendNotify sends one message whose recipients carry DSN NOTIFY values
// ("" for none) and returns its queue ID.
func sendNotify(t *testing.T, addr, from string, rcpts map[string][]smtp.DSNNotify, body string) string {
	t.Helper()
	c, err := dialSMTP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.itest.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	for r, notify := range rcpts {
		var o *smtp.RcptOptions
		if notify != nil {
			o = &smtp.RcptOptions{Notify: notify}
		}
		if err := c.Rcpt(r, o); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	return strings.TrimPrefix(resp.StatusText, "2.0.0 Ok: queued as ")
}

// report is a delivery status notification as read from a mailbox.
type report struct {
	header mail.Header
	types  []string // content types of the parts
	status string   // the delivery-status part
	orig   string   // the third part
}

func readReport(t *testing.T, path string) report {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("%s: content type %q %v\n%s", path, msg.Header.Get("Content-Type"), err, raw)
	}
	rep := report{header: msg.Header}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct := p.Header.Get("Content-Type")
		rep.types = append(rep.types, ct)
		b, _ := io.ReadAll(p)
		switch {
		case strings.HasPrefix(ct, "message/delivery-status"):
			rep.status = string(b)
		case len(rep.types) == 3:
			rep.orig = string(b)
		}
	}
	if len(rep.types) != 3 {
		t.Fatalf("%s: parts %v", path, rep.types)
	}
	return rep
}

func (r report) want(t *testing.T, subject string, status ...string) {
	t.Helper()
	if s := r.header.Get("Subject"); s != subject {
		t.Errorf("subject %q, want %q", s, subject)
	}
	for _, w := range status {
		if !strings.Contains(r.status, w) {
			t.Errorf("delivery-status lacks %q:\n%s", w, r.status)
		}
	}
}

func countMaildir(in *Instance, rel string) int {
	ents, _ := os.ReadDir(filepath.Join(in.Mail, rel, "new"))
	return len(ents)
}

// NOTIFY=SUCCESS gets a "delivered" report from final delivery; a
// recipient without NOTIFY gets none.
func TestSuccessNotice(t *testing.T) {
	in := noticeInstance(t, "")
	id := sendNotify(t, in.Addr, "user@itest.test", map[string][]smtp.DSNNotify{
		"other@itest.test": {smtp.DSNNotifySuccess, smtp.DSNNotifyFailure},
		"pm@itest.test":    nil,
	}, "Subject: tell me\r\nMessage-ID: <ok@example.org>\r\n\r\nhello\r\n")
	in.WaitMaildir("itest.test/other", 1, 15*time.Second)
	in.WaitMaildir("itest.test/pm", 1, 15*time.Second)
	files := in.WaitMaildir("itest.test/user", 1, 15*time.Second)
	rep := readReport(t, files[0])
	rep.want(t, "Successful Mail Delivery Report", "Final-Recipient: rfc822; other@itest.test", "Action: delivered", "Status: 2.")
	if strings.Contains(rep.status, "pm@itest.test") {
		t.Errorf("recipient without NOTIFY=SUCCESS reported:\n%s", rep.status)
	}
	if !strings.HasPrefix(rep.types[2], "text/rfc822-headers") {
		t.Errorf("success notice returns %s, want the headers", rep.types[2])
	}
	if !in.WaitLog(id+": sender delivery status notification: ", 5*time.Second) || !in.WaitLog(id+": removed", 5*time.Second) {
		t.Errorf("log:\n%s", in.Log())
	}
	// Without NOTIFY=SUCCESS nobody hears of a delivery.
	id2 := sendNotify(t, in.Addr, "user@itest.test", map[string][]smtp.DSNNotify{"other@itest.test": nil}, "Subject: quiet\r\n\r\nx\r\n")
	in.WaitMaildir("itest.test/other", 2, 15*time.Second)
	if !in.WaitLog(id2+": removed", 5*time.Second) {
		t.Fatalf("log:\n%s", in.Log())
	}
	time.Sleep(300 * time.Millisecond)
	if n := countMaildir(in, "itest.test/user"); n != 1 {
		t.Errorf("sender has %d messages, want 1", n)
	}
}

// A deferred message older than delay_warning_time gets one warning to the
// sender and, with notify_classes = delay, a copy to the postmaster; later
// attempts send none; the recipient is marked Warned in the queue file.
func TestDelayWarningOnce(t *testing.T) {
	in := noticeInstance(t, "delay_warning_time = 1s\nminimal_backoff_time = 1h\nmaximal_backoff_time = 2h\n"+
		"notify_classes = delay\ndelay_notice_recipient = pm@itest.test")
	os.MkdirAll(filepath.Join(in.Mail, "itest.test"), 0755)
	blocker := filepath.Join(in.Mail, "itest.test", "other")
	if err := os.WriteFile(blocker, []byte("in the way"), 0644); err != nil {
		t.Fatal(err)
	}
	id := sendNotify(t, in.Addr, "user@itest.test", map[string][]smtp.DSNNotify{"other@itest.test": nil},
		"Subject: slow\r\nMessage-ID: <slow@example.org>\r\n\r\nlater\r\n")
	qfile := filepath.Join(in.Dir, "queue", "deferred", id)
	waitFile := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(qfile); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not in deferred/\n%s", id, in.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFile()
	// The first attempt came before delay_warning_time: no warning yet.
	if strings.Contains(in.Log(), "delay notification") {
		t.Fatalf("warned too early:\n%s", in.Log())
	}
	time.Sleep(1200 * time.Millisecond)
	flush := func() {
		t.Helper()
		if err := ipc.Trigger(filepath.Join(in.Dir, "queue", "public", "qmgr"), 'F', 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	flush()
	files := in.WaitMaildir("itest.test/user", 1, 15*time.Second)
	rep := readReport(t, files[0])
	rep.want(t, "Delayed Mail (still being retried)", "Final-Recipient: rfc822; other@itest.test", "Action: delayed", "Status: 4.", "Will-Retry-Until:")
	pm := in.WaitMaildir("itest.test/pm", 1, 15*time.Second)
	prep := readReport(t, pm[0])
	prep.want(t, "Postmaster Warning: Delayed Mail", "Final-Recipient: rfc822; other@itest.test", "Action: delayed")
	if !in.WaitLog(id+": sender delay notification: ", 5*time.Second) || !in.WaitLog(id+": postmaster delay notification: ", 5*time.Second) {
		t.Fatalf("log:\n%s", in.Log())
	}
	waitFile()
	m, err := queue.OpenFile(qfile)
	if err != nil {
		t.Fatal(err)
	}
	if st := m.Envelope.Recipients[0].Status; st != queue.Warned {
		t.Errorf("recipient status %v, want warned", st)
	}
	m.Close()

	// Another attempt, still deferred: no second warning.
	before := strings.Count(in.Log(), id+": to=<other@itest.test>")
	flush()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(in.Log(), id+": to=<other@itest.test>") == before {
		if time.Now().After(deadline) {
			t.Fatalf("no second attempt:\n%s", in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFile()
	time.Sleep(300 * time.Millisecond)
	if n := strings.Count(in.Log(), "sender delay notification"); n != 1 {
		t.Errorf("%d delay notifications, want 1:\n%s", n, in.Log())
	}
	if n := countMaildir(in, "itest.test/user"); n != 1 {
		t.Errorf("sender has %d messages, want 1", n)
	}

	// The recipient marked Warned is still delivered.
	os.Remove(blocker)
	flush()
	in.WaitMaildir("itest.test/other", 1, 10*time.Second)
	if !in.WaitLog(id+": removed", 5*time.Second) {
		t.Errorf("not removed after delivery:\n%s", in.Log())
	}
}

// NOTIFY=NEVER and NOTIFY=FAILURE suppress the delay warning to the
// sender.
func TestDelayWarningNotify(t *testing.T) {
	in := noticeInstance(t, "delay_warning_time = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 1s\nqueue_run_delay = 1s")
	os.MkdirAll(filepath.Join(in.Mail, "itest.test"), 0755)
	os.WriteFile(filepath.Join(in.Mail, "itest.test", "other"), []byte("in the way"), 0644)
	id := sendNotify(t, in.Addr, "user@itest.test", map[string][]smtp.DSNNotify{"other@itest.test": {smtp.DSNNotifyFailure}}, "Subject: x\r\n\r\nx\r\n")
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(in.Log(), id+": to=<other@itest.test>") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("not retried:\n%s", in.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(in.Log(), "delay notification") || countMaildir(in, "itest.test/user") != 0 {
		t.Errorf("a delay warning despite NOTIFY=FAILURE:\n%s", in.Log())
	}
}

// notify_classes = bounce: the postmaster gets a copy of the bounce with
// the original's headers only.
func TestBouncePostmasterCopy(t *testing.T) {
	in := noticeInstance(t, fullMboxCf+"\nnotify_classes = bounce\nbounce_notice_recipient = pm@itest.test")
	fillMbox(t, in)
	body := "Subject: too big\r\nMessage-ID: <big@example.org>\r\n\r\n" + strings.Repeat("x", 300) + "\r\n"
	id := sendNotify(t, in.Addr, "user@itest.test", map[string][]smtp.DSNNotify{"mbox@itest.test": nil}, body)
	files := in.WaitMaildir("itest.test/user", 1, 15*time.Second)
	readReport(t, files[0]).want(t, "Undelivered Mail Returned to Sender", "Action: failed", "Status: 5.2.2")
	pm := in.WaitMaildir("itest.test/pm", 1, 15*time.Second)
	rep := readReport(t, pm[0])
	rep.want(t, "Postmaster Copy: Undelivered Mail", "Final-Recipient: rfc822; mbox@itest.test", "Action: failed", "Status: 5.2.2")
	if !strings.HasPrefix(rep.types[2], "text/rfc822-headers") || strings.Contains(rep.orig, "xxxx") {
		t.Errorf("postmaster copy returns %s:\n%s", rep.types[2], rep.orig)
	}
	raw, _ := os.ReadFile(pm[0])
	if !strings.HasPrefix(string(raw), "Return-Path: <double-bounce@") {
		t.Errorf("postmaster copy not from double-bounce:\n%.200s", raw)
	}
	if !in.WaitLog(id+": postmaster non-delivery notification: ", 5*time.Second) || !in.WaitLog(id+": removed", 5*time.Second) {
		t.Errorf("log:\n%s", in.Log())
	}
}

// A bounce that bounces (null sender) goes to 2bounce_notice_recipient
// with the whole message when notify_classes has 2bounce, and is
// discarded otherwise.
func TestDoubleBounce(t *testing.T) {
	body := "Subject: a bounce\r\nMessage-ID: <b1@example.org>\r\n\r\n" + strings.Repeat("y", 300) + "\r\n"
	t.Run("2bounce", func(t *testing.T) {
		in := noticeInstance(t, fullMboxCf+"\nnotify_classes = 2bounce\n2bounce_notice_recipient = pm@itest.test")
		fillMbox(t, in)
		id := sendNotify(t, in.Addr, "", map[string][]smtp.DSNNotify{"mbox@itest.test": nil}, body)
		pm := in.WaitMaildir("itest.test/pm", 1, 15*time.Second)
		rep := readReport(t, pm[0])
		rep.want(t, "Postmaster Copy: Undelivered Mail", "Final-Recipient: rfc822; mbox@itest.test", "Action: failed")
		if !strings.HasPrefix(rep.types[2], "message/rfc822") || !strings.Contains(rep.orig, "yyyy") {
			t.Errorf("double bounce returns %s, want the whole message", rep.types[2])
		}
		if !in.WaitLog(id+": postmaster non-delivery notification: ", 5*time.Second) || !in.WaitLog(id+": removed", 5*time.Second) {
			t.Errorf("log:\n%s", in.Log())
		}
	})
	t.Run("default", func(t *testing.T) {
		in := noticeInstance(t, fullMboxCf+"\n2bounce_notice_recipient = pm@itest.test")
		fillMbox(t, in)
		id := sendNotify(t, in.Addr, "", map[string][]smtp.DSNNotify{"mbox@itest.test": nil}, body)
		if !in.WaitLog(id+": undeliverable non-delivery notification discarded", 10*time.Second) || !in.WaitLog(id+": removed", 5*time.Second) {
			t.Errorf("log:\n%s", in.Log())
		}
		if n := countMaildir(in, "itest.test/pm"); n != 0 {
			t.Errorf("postmaster got %d messages", n)
		}
	})
}

// transport_maps routes a recipient to the error transport, whose reason
// and status reach the sender's bounce.
func TestTransportMapsError(t *testing.T) {
	in := NewInstance(t, Options{NoStart: true})
	in.write("transport", "other@itest.test error:5.1.6 moved away, no forwarding address\n")
	in.AppendMainCf("transport_maps = texthash:" + filepath.Join(in.Conf, "transport") + "\n")
	in.Start()
	id := sendNotify(t, in.Addr, "user@itest.test", map[string][]smtp.DSNNotify{"other@itest.test": nil}, "Subject: hi\r\n\r\nx\r\n")
	files := in.WaitMaildir("itest.test/user", 1, 15*time.Second)
	rep := readReport(t, files[0])
	rep.want(t, "Undelivered Mail Returned to Sender", "Final-Recipient: rfc822; other@itest.test", "Status: 5.1.6", "moved away, no forwarding address")
	if !in.WaitLog(id+": to=<other@itest.test>, relay=none", 5*time.Second) {
		t.Errorf("log:\n%s", in.Log())
	}
}

// A recipient that fails while another is deferred is bounced after that
// attempt, with its reason, and marked Bounced; the final attempt does not
// bounce it again.
func TestBounceWhileDeferred(t *testing.T) {
	in := noticeInstance(t, fullMboxCf+"\nminimal_backoff_time = 1h\nmaximal_backoff_time = 2h")
	fillMbox(t, in)
	os.MkdirAll(filepath.Join(in.Mail, "itest.test"), 0755)
	blocker := filepath.Join(in.Mail, "itest.test", "other")
	if err := os.WriteFile(blocker, []byte("in the way"), 0644); err != nil {
		t.Fatal(err)
	}
	body := "Subject: half\r\nMessage-ID: <half@example.org>\r\n\r\n" + strings.Repeat("z", 300) + "\r\n"
	id := sendNotify(t, in.Addr, "user@itest.test", map[string][]smtp.DSNNotify{"mbox@itest.test": nil, "other@itest.test": nil}, body)
	files := in.WaitMaildir("itest.test/user", 1, 15*time.Second)
	rep := readReport(t, files[0])
	rep.want(t, "Undelivered Mail Returned to Sender", "Final-Recipient: rfc822; mbox@itest.test", "Status: 5.2.2")
	if strings.Contains(rep.status, "other@itest.test") {
		t.Errorf("deferred recipient reported as failed:\n%s", rep.status)
	}
	qfile := filepath.Join(in.Dir, "queue", "deferred", id)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(qfile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in deferred/\n%s", id, in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	m, err := queue.OpenFile(qfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Envelope.Recipients {
		want := map[string]queue.RcptStatus{"mbox@itest.test": queue.Bounced, "other@itest.test": queue.Pending}[r.Addr]
		if r.Status != want {
			t.Errorf("%s: status %v, want %v", r.Addr, r.Status, want)
		}
	}
	m.Close()
	os.Remove(blocker)
	if err := ipc.Trigger(filepath.Join(in.Dir, "queue", "public", "qmgr"), 'F', 5*time.Second); err != nil {
		t.Fatal(err)
	}
	in.WaitMaildir("itest.test/other", 1, 10*time.Second)
	if !in.WaitLog(id+": removed", 5*time.Second) {
		t.Fatalf("not removed:\n%s", in.Log())
	}
	if n := strings.Count(in.Log(), id+": sender non-delivery notification"); n != 1 {
		t.Errorf("%d non-delivery notifications, want 1:\n%s", n, in.Log())
	}
	if n := countMaildir(in, "itest.test/user"); n != 1 {
		t.Errorf("sender has %d messages, want 1", n)
	}
}

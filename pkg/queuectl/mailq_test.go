package queuectl

import (
	"bytes"
	"testing"
	"time"

	"postern/pkg/queue"
)

func TestWriteMailqFormat(t *testing.T) {
	loc := time.FixedZone("X", 0)
	at := time.Date(2026, 11, 5, 9, 3, 7, 0, loc)
	entries := []Entry{
		{Queue: queue.Active, ID: "8DspE9KXsfrhV", Arrival: at, Size: 1234, Sender: "sender@example.org", Rcpts: []Rcpt{{Addr: "a@example.com"}, {Addr: "b@example.com"}}},
		{Queue: queue.Hold, ID: "8DspFX36xfri0", Arrival: at, Size: 2048, Sender: "", Rcpts: []Rcpt{{Addr: "c@example.com"}}},
		{Queue: queue.Deferred, ID: "8DspFX36xfri1", Arrival: at, Size: 10, Sender: "x@y", Rcpts: nil},
	}
	var b bytes.Buffer
	if err := WriteMailq(&b, entries, loc); err != nil {
		t.Fatal(err)
	}
	want := `----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
8DspE9KXsfrhV*        1234 Thu Nov  5 09:03:07 sender@example.org
                                               a@example.com
                                               b@example.com

8DspFX36xfri0!        2048 Thu Nov  5 09:03:07 MAILER-DAEMON
                                               c@example.com

8DspFX36xfri1           10 Thu Nov  5 09:03:07 x@y

-- 3 Kbytes in 3 Requests.
`
	if b.String() != want {
		t.Errorf("mailq output:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	WriteMailq(&b, nil, loc)
	if b.String() != "Mail queue is empty\n" {
		t.Errorf("empty queue: %q", b.String())
	}
}

// Deferral reasons as Postfix's mailq prints them: "(reason)" right-aligned
// to column 78 above each group of recipients with that reason (a reason
// longer than that starts at column 1), "(reason unavailable)" for
// recipients without one that follow some with one.
func TestWriteMailqReasons(t *testing.T) {
	loc := time.FixedZone("X", 0)
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, loc)
	refused := "connect to mx.example.net[192.0.2.1]:25: Connection refused"
	full := "host mx.example.net[192.0.2.1] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command)"
	entries := []Entry{
		{Queue: queue.Deferred, ID: "8DspE9KXsfrhV", Arrival: at, Size: 1234, Sender: "sender@example.com", Rcpts: []Rcpt{
			{Addr: "a@example.net", Reason: refused},
			{Addr: "b@example.net", Reason: refused},
			{Addr: "c@example.org", Reason: full},
			{Addr: "d@example.org"},
		}},
		{Queue: queue.Hold, ID: "8DspFX36xfri0", Arrival: at, Size: 10, Sender: "x@y", Rcpts: []Rcpt{
			{Addr: "e@example.com"},
			{Addr: "f@example.com", Reason: "bell\a"},
		}},
	}
	var b bytes.Buffer
	if err := WriteMailq(&b, entries, loc); err != nil {
		t.Fatal(err)
	}
	want := `----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
8DspE9KXsfrhV         1234 Wed Nov 25 10:00:00 sender@example.com
                 (connect to mx.example.net[192.0.2.1]:25: Connection refused)
                                               a@example.net
                                               b@example.net
(host mx.example.net[192.0.2.1] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command))
                                               c@example.org
                                                          (reason unavailable)
                                               d@example.org

8DspFX36xfri0!          10 Wed Nov 25 10:00:00 x@y
                                               e@example.com
                                                                       (bell?)
                                               f@example.com

-- 1 Kbytes in 2 Requests.
`
	if b.String() != want {
		t.Errorf("mailq output:\n%s\nwant:\n%s", b.String(), want)
	}
}

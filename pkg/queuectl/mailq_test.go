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

package queue

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestDeferLogAppendRead(t *testing.T) {
	s := newStore(t)
	id := writeMessage(t, s, Active, fullEnvelope(), []byte("x\n"))
	if recs, err := s.ReadDeferLog(id); err != nil || recs != nil {
		t.Fatalf("no log: %v, %v", recs, err)
	}
	a := DeferReason{Addr: "bob@example.com", Orig: "robert@example.com", Status: "4.4.1", Reason: "connect to mx.example.com[192.0.2.1]:25: Connection refused"}
	b := DeferReason{Addr: "carol@example.com", Orig: "carol@example.com", Status: "4.2.2", Reason: "host mx[192.0.2.2] said: 452 4.2.2 Mailbox full\r\n (in reply to RCPT TO command)"}
	c := DeferReason{Addr: "dave@example.com", Reason: ""}
	if err := s.AppendDeferLog(id, a); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendDeferLog(id, b, c); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(s.Path(Defer, id))
	if err != nil {
		t.Fatal(err)
	}
	wantRaw := "recipient=bob@example.com\noriginal_recipient=robert@example.com\nstatus=4.4.1\nreason=connect to mx.example.com[192.0.2.1]:25: Connection refused\n\n" +
		"recipient=carol@example.com\nstatus=4.2.2\nreason=host mx[192.0.2.2] said: 452 4.2.2 Mailbox full?? (in reply to RCPT TO command)\n\n" +
		"recipient=dave@example.com\nreason=\n\n"
	if string(raw) != wantRaw {
		t.Errorf("file:\n%q\nwant:\n%q", raw, wantRaw)
	}
	if fi, _ := os.Stat(s.Path(Defer, id)); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	recs, err := s.ReadDeferLog(id)
	if err != nil {
		t.Fatal(err)
	}
	b.Orig = "" // the same as the address: not written
	b.Reason = strings.ReplaceAll(b.Reason, "\r\n", "??")
	if want := []DeferReason{a, b, c}; !reflect.DeepEqual(recs, want) {
		t.Errorf("read %+v\nwant %+v", recs, want)
	}
	if err := s.RemoveDeferLog(id); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDeferLog(id); err != nil {
		t.Errorf("removing a missing log: %v", err)
	}
	if _, err := s.ReadDeferLog("bad/id"); err == nil {
		t.Errorf("bad ID accepted")
	}
	if err := s.AppendDeferLog("..", a); err == nil {
		t.Errorf("bad ID accepted")
	}
}

func TestDeferLogBounds(t *testing.T) {
	s := newStore(t)
	id := writeMessage(t, s, Deferred, fullEnvelope(), nil)
	long := strings.Repeat("é", deferValueMax) // 2 bytes a rune: cut at a rune boundary
	if err := s.AppendDeferLog(id, DeferReason{Addr: "a@example.com", Reason: long}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.ReadDeferLog(id)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	if r := recs[0].Reason; len(r) != deferValueMax || !utf8.ValidString(r) {
		t.Errorf("long reason: %d bytes, valid UTF-8 %v", len(r), utf8.ValidString(r))
	}
	// The file stops growing at its limit.
	rec := DeferReason{Addr: "b@example.com", Status: "4.0.0", Reason: strings.Repeat("r", 1000)}
	for i := 0; i < deferLogMax/1000+10; i++ {
		if err := s.AppendDeferLog(id, rec); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(s.Path(Defer, id))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < deferLogMax || fi.Size() > deferLogMax+2000 {
		t.Errorf("log grew to %d bytes", fi.Size())
	}
	recs, err = s.ReadDeferLog(id)
	if err != nil || int64(len(recs)) < deferLogMax/1100 {
		t.Errorf("%d records read back, %v", len(recs), err)
	}
	// A symlink is refused.
	os.Remove(s.Path(Defer, id))
	if err := os.Symlink("/etc/passwd", s.Path(Defer, id)); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendDeferLog(id, rec); err == nil {
		t.Errorf("appended through a symlink")
	}
	if _, err := s.ReadDeferLog(id); err == nil {
		t.Errorf("read through a symlink")
	}
}

// Concurrent appends (qmgr's jobs for one message) never interleave.
func TestDeferLogConcurrent(t *testing.T) {
	s := newStore(t)
	id := writeMessage(t, s, Active, fullEnvelope(), nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := s.AppendDeferLog(id, DeferReason{Addr: "x@example.com", Status: "4.4.1", Reason: strings.Repeat("y", 2000)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	recs, err := s.ReadDeferLog(id)
	if err != nil || len(recs) != 400 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Addr != "x@example.com" || len(r.Reason) != 2000 {
			t.Fatalf("record %+v", r)
		}
	}
}

// The log follows the message: cleared when an attempt starts, kept in
// deferred/ and hold/, gone with the message.
func TestDeferLogLifecycle(t *testing.T) {
	s := newStore(t)
	rec := DeferReason{Addr: "bob@example.com", Reason: "later"}
	has := func(id ID) bool {
		_, err := os.Stat(s.Path(Defer, id))
		return err == nil
	}
	steps := []struct {
		from, to string // to "" means Remove from
		keep     bool
	}{
		{Active, Deferred, true},
		{Deferred, Hold, true},
		{Hold, Deferred, true},
		{Deferred, Active, false}, // a new attempt
		{Active, Hold, true},
		{Active, Incoming, false}, // qmgr's recovery, requeue
		{Deferred, Incoming, false},
		{Hold, Incoming, false},
		{Active, Corrupt, false},
		{Deferred, "", false},
		{Hold, "", false},
		{Corrupt, "", false},
		{Incoming, Active, true}, // new mail: no log to clear, no unlink
	}
	for _, st := range steps {
		id := writeMessage(t, s, st.from, fullEnvelope(), nil)
		if err := s.AppendDeferLog(id, rec); err != nil {
			t.Fatal(err)
		}
		var err error
		if st.to == "" {
			err = s.Remove(st.from, id)
		} else {
			err = s.Move(id, st.from, st.to)
		}
		if err != nil {
			t.Fatalf("%s -> %q: %v", st.from, st.to, err)
		}
		if has(id) != st.keep {
			t.Errorf("%s -> %q: log kept %v, want %v", st.from, st.to, has(id), st.keep)
		}
	}
}

func TestParseDeferLogMalformed(t *testing.T) {
	in := "garbage line\n\n" + // no '=': skipped, no record
		"status=4.0.0\nreason=no recipient\n\n" + // skipped
		"recipient=a@x\nfuture_field=1\nreason=ok\n\n" +
		"recipient=b@x\nreason=" + strings.Repeat("z", 3*deferValueMax) + "\n\n" + // too long: skipped
		"recipient=c@x\nreason=bell\a\n\n" +
		"recipient=d@x\nreason=cut short" // no end of record: skipped
	recs, err := ParseDeferLog(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []DeferReason{{Addr: "a@x", Reason: "ok"}, {Addr: "c@x", Reason: "bell?"}}
	if !reflect.DeepEqual(recs, want) {
		t.Errorf("got %+v\nwant %+v", recs, want)
	}
}

// FuzzParseDeferLog: the reader never panics, returns only records with
// values free of control characters and within bounds, and reads back
// what the writer wrote.
func FuzzParseDeferLog(f *testing.F) {
	f.Add([]byte("recipient=a@example.com\nstatus=4.4.1\nreason=x\n\n"), "b@example.com", "why")
	f.Add([]byte("recipient=\n\nrecipient=a\n"), "", "")
	f.Add([]byte("=\n\n\n=x\nreason\n"), "c\nd", "e\x00f")
	f.Fuzz(func(t *testing.T, data []byte, addr, reason string) {
		recs, err := ParseDeferLog(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("error from a bytes reader: %v", err)
		}
		for _, r := range recs {
			for _, v := range []string{r.Addr, r.Orig, r.Status, r.Reason} {
				if len(v) > deferValueMax+64 || strings.ContainsFunc(v, func(c rune) bool { return c < ' ' || c == 0x7f }) {
					t.Fatalf("value %q", v)
				}
			}
		}
		// Round trip, appended to whatever was there.
		if !bytes.HasSuffix(data, []byte("\n")) {
			data = append(data, '\n')
		}
		data = append(data, '\n')
		in := DeferReason{Addr: addr, Orig: "o" + addr, Status: "4.0.0", Reason: reason}
		data = appendDeferRecord(data, in)
		recs, err = ParseDeferLog(bytes.NewReader(data))
		if err != nil || len(recs) == 0 {
			t.Fatalf("round trip: %v, %v", recs, err)
		}
		got := recs[len(recs)-1]
		want := DeferReason{
			Addr:   string(appendDeferValue(nil, in.Addr)),
			Orig:   string(appendDeferValue(nil, in.Orig)),
			Status: in.Status,
			Reason: string(appendDeferValue(nil, in.Reason)),
		}
		if got != want {
			t.Fatalf("round trip: got %+v, want %+v", got, want)
		}
	})
}

// TestRemoveTakesTraceMarker: removing a queued message (postern queue
// delete) also removes qmgr's sendmail -v marker trace/ID; a message
// leaving active/ keeps it for qmgr to handle.
func TestRemoveTakesTraceMarker(t *testing.T) {
	s := newStore(t)
	for _, c := range []struct {
		queue string
		gone  bool
	}{{Deferred, true}, {Hold, true}, {Active, false}} {
		id := writeMessage(t, s, c.queue, fullEnvelope(), nil)
		marker := s.Path(Trace, id)
		if err := os.WriteFile(marker, nil, 0600); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(c.queue, id); err != nil {
			t.Fatal(err)
		}
		_, err := os.Stat(marker)
		if gone := err != nil; gone != c.gone {
			t.Errorf("remove from %s: marker gone = %v, want %v", c.queue, gone, c.gone)
		}
	}
}

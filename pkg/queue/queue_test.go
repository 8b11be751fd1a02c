package queue

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// newStore returns a store with every directory of the layout in a fresh
// temporary directory.
func newStore(t testing.TB) *Store {
	t.Helper()
	s := NewStore(t.TempDir())
	if _, err := s.Ensure(os.Getuid(), os.Getgid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	return s
}

func fullEnvelope() *Envelope {
	return &Envelope{
		Sender:     "sender@example.org",
		Arrival:    time.Unix(1700000000, 123456789),
		ClientName: "mail.example.org",
		ClientAddr: "192.0.2.1",
		HeloName:   "helo.example.org",
		Protocol:   "ESMTPSA",
		AuthUser:   "alice",
		BodyType:   "8BITMIME",
		SMTPUTF8:   true,
		DSNRet:     "HDRS",
		DSNEnvID:   "env=id+2B",
		Attrs:      map[string]string{"z": "last", "a": "first", "log_ident": "x=y=z", "empty": ""},
		Recipients: []Recipient{
			{Addr: "bob@example.com", Orig: "robert@example.com", Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;robert@example.com", Status: Pending},
			{Addr: "carol@example.com", Status: Delivered},
			{Addr: "dave@example.com", Status: Failed},
			{Addr: "", Status: Pending},
		},
	}
}

// writeMessage commits a message with env and content and returns its ID.
func writeMessage(t testing.TB, s *Store, queue string, env *Envelope, content []byte, extra ...Recipient) ID {
	t.Helper()
	w, err := s.Create(queue)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.Envelope(env); err != nil {
		t.Fatal(err)
	}
	// Odd write sizes, to cross chunk boundaries at odd places.
	for p := content; len(p) > 0; {
		n := min(len(p), 7777)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if w.Size() != int64(len(content)) {
		t.Fatalf("Size = %d, want %d", w.Size(), len(content))
	}
	for _, r := range extra {
		if err := w.AddRecipient(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

func testContent(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	s := newStore(t)
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 12345} {
		env := fullEnvelope()
		content := testContent(size)
		extra := []Recipient{
			{Addr: "eve@example.net", Orig: "list@example.org", Status: Pending},
			{Addr: "frank@example.net", Notify: "NEVER", Status: Pending},
		}
		id := writeMessage(t, s, Incoming, env, content, extra...)
		if !ValidID(string(id)) {
			t.Fatalf("invalid ID %q", id)
		}
		m, err := s.Open(Incoming, id)
		if err != nil {
			t.Fatal(err)
		}
		want := *env
		want.Recipients = append(append([]Recipient(nil), env.Recipients...), extra...)
		if !m.Envelope.Arrival.Equal(want.Arrival) {
			t.Errorf("Arrival = %v, want %v", m.Envelope.Arrival, want.Arrival)
		}
		got := m.Envelope
		got.Arrival = want.Arrival
		if !reflect.DeepEqual(got, want) {
			t.Errorf("size %d: envelope\n got %+v\nwant %+v", size, got, want)
		}
		if m.ID != id || m.Queue != Incoming || m.Size != int64(size) || m.Extracted != len(env.Recipients) {
			t.Errorf("ID %q Queue %q Size %d Extracted %d", m.ID, m.Queue, m.Size, m.Extracted)
		}
		for range 2 {
			b, err := io.ReadAll(m.Content())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, content) {
				t.Fatalf("size %d: content differs (got %d bytes)", size, len(b))
			}
		}
		m.Close()
	}
}

func TestMinimalEnvelope(t *testing.T) {
	s := newStore(t)
	w, err := s.Create(Incoming)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Envelope(&Envelope{}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(Incoming, w.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e := m.Envelope
	if e.Sender != "" || e.Attrs != nil || len(e.Recipients) != 0 || m.Size != 0 || e.SMTPUTF8 {
		t.Errorf("unexpected %+v", e)
	}
	if d := before.Sub(e.Arrival); d < 0 || d > time.Minute {
		t.Errorf("zero arrival written as %v", e.Arrival)
	}
	if n, _ := io.Copy(io.Discard, m.Content()); n != 0 {
		t.Errorf("content %d bytes", n)
	}
}

func TestContentPreservedExactly(t *testing.T) {
	s := newStore(t)
	content := []byte("Subject: x\nbare LF\r\nCRLF\rCR\x00NUL\r\n.\r\n..dots\n")
	id := writeMessage(t, s, Incoming, &Envelope{Sender: "a@b"}, content)
	m, err := s.Open(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, _ := io.ReadAll(m.Content())
	if !bytes.Equal(b, content) {
		t.Errorf("got %q", b)
	}
}

func TestWriterOrder(t *testing.T) {
	s := newStore(t)
	w, err := s.Create(Incoming)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write before Envelope succeeded")
	}
	if err := w.AddRecipient(Recipient{Addr: "a", Status: Pending}); err == nil {
		t.Error("AddRecipient before Envelope succeeded")
	}
	if err := w.Commit(); err == nil {
		t.Error("Commit before Envelope succeeded")
	}
	if err := w.Envelope(&Envelope{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Envelope(&Envelope{}); err == nil {
		t.Error("second Envelope succeeded")
	}
	if err := w.AddRecipient(Recipient{Addr: "a", Status: Pending}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after AddRecipient succeeded")
	}
	if err := w.AddRecipient(Recipient{Addr: "a\x00b", Status: Pending}); err == nil {
		t.Error("NUL in address accepted")
	}
	if err := w.AddRecipient(Recipient{Addr: "a", Status: 'Z'}); err == nil {
		t.Error("bad status accepted")
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	if err := w.Abort(); err != nil {
		t.Errorf("Abort after Commit: %v", err)
	}
	if _, err := os.Stat(s.Path(Incoming, w.ID())); err != nil {
		t.Errorf("Abort after Commit removed the file: %v", err)
	}
}

func TestEnvelopeRejects(t *testing.T) {
	s := newStore(t)
	for name, env := range map[string]*Envelope{
		"attr name with =":    {Attrs: map[string]string{"a=b": "c"}},
		"empty attr name":     {Attrs: map[string]string{"": "c"}},
		"huge sender":         {Sender: strings.Repeat("x", maxMetaRecord+1)},
		"bad status":          {Recipients: []Recipient{{Addr: "a"}}},
		"arrival before 1970": {Arrival: time.Unix(-10, 0)},
	} {
		w, err := s.Create(Incoming)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Envelope(env); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if err := w.Commit(); err == nil {
			t.Errorf("%s: Commit succeeded after a rejected envelope", name)
		}
		w.Abort()
	}
	if ids, _ := s.List(Incoming); len(ids) != 0 {
		t.Errorf("left %v", ids)
	}
}

func TestAbort(t *testing.T) {
	s := newStore(t)
	w, err := s.Create(Incoming)
	if err != nil {
		t.Fatal(err)
	}
	w.Envelope(&Envelope{})
	w.Write([]byte("hello"))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(s.Dir(), Incoming))
	if len(ents) != 0 {
		t.Errorf("Abort left %v", ents)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Abort succeeded")
	}
}

func TestOpenMissing(t *testing.T) {
	s := newStore(t)
	_, err := s.Open(Incoming, "0000000000abc")
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrCorrupt) {
		t.Errorf("got %v", err)
	}
	if _, err := s.Open(Incoming, "../x"); err == nil {
		t.Error("bad ID accepted")
	}
}

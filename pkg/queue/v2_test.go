package queue

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestExtractedAttrV2: extracted-segment attributes make a version 2 file
// whose attributes override the envelope's; SetEnvelopeStatus marks
// envelope recipients before the commit.
func TestExtractedAttrV2(t *testing.T) {
	s := newStore(t)
	env := fullEnvelope()
	env.Attrs = map[string]string{"filter": "smtp:[127.0.0.1]:10024", "z": "last"}
	w, err := s.Create(Incoming)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.Envelope(env); err != nil {
		t.Fatal(err)
	}
	// Enough content that the envelope has left the write buffer.
	if _, err := w.Write(testContent(200 << 10)); err != nil {
		t.Fatal(err)
	}
	for i := range env.Recipients {
		if err := w.SetEnvelopeStatus(i, Delivered); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.SetEnvelopeStatus(len(env.Recipients), Delivered); err == nil {
		t.Error("SetEnvelopeStatus out of range succeeded")
	}
	if err := w.ExtractedAttr("filter", "lmtp:unix:private/filter"); err != nil {
		t.Fatal(err)
	}
	if err := w.ExtractedAttr("a", "x"); err == nil {
		t.Error("ExtractedAttr out of order succeeded")
	}
	if err := w.ExtractedAttr("g", "y"); err != nil {
		t.Fatal(err)
	}
	if err := w.AddRecipient(Recipient{Addr: "trap@example.net", Orig: "bob@example.com", Status: Pending}); err != nil {
		t.Fatal(err)
	}
	if err := w.ExtractedAttr("h", "z"); err == nil {
		t.Error("ExtractedAttr after AddRecipient succeeded")
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.Path(Incoming, w.ID()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("V\x012")) {
		t.Fatalf("file starts %q, want version 2", b[:3])
	}
	m, err := s.Open(Incoming, w.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Envelope.Attrs; got["filter"] != "lmtp:unix:private/filter" || got["g"] != "y" || got["z"] != "last" {
		t.Errorf("Attrs = %v", got)
	}
	rc := m.Envelope.Recipients
	if m.Extracted != len(env.Recipients) || len(rc) != len(env.Recipients)+1 {
		t.Fatalf("%d recipients, extracted at %d", len(rc), m.Extracted)
	}
	for i := 0; i < m.Extracted; i++ {
		if rc[i].Status != Delivered || rc[i].Addr != env.Recipients[i].Addr {
			t.Errorf("recipient %d = %+v", i, rc[i])
		}
	}
	if r := rc[m.Extracted]; r.Addr != "trap@example.net" || r.Status != Pending {
		t.Errorf("extracted recipient = %+v", r)
	}
	// The same records under version 1 are corrupt: 'U' in the extracted
	// segment is version 2 grammar.
	v1 := append([]byte(nil), b...)
	v1[2] = '1'
	if _, err := Parse(bytes.NewReader(v1), int64(len(v1))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("version 1 with extracted attributes: %v", err)
	}
	v3 := append([]byte(nil), b...)
	v3[2] = '3'
	if _, err := Parse(bytes.NewReader(v3), int64(len(v3))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("version 3: %v", err)
	}
}

// TestReadVersion1 reads the version 1 golden file, written before
// version 2 existed, with the version 2 reader; and a file without
// extracted attributes is still written as version 1.
func TestReadVersion1(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "v1.queue"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Envelope.Sender != "sender@example.org" || len(m.Envelope.Recipients) != 5 || m.Envelope.Attrs["a"] != "first" {
		t.Errorf("v1 file decodes to %+v", m.Envelope)
	}
	s := newStore(t)
	id := writeMessage(t, s, Incoming, &Envelope{Recipients: []Recipient{{Addr: "a@example.org", Status: Pending}}}, []byte("x\n"))
	got, _ := os.ReadFile(s.Path(Incoming, id))
	if !bytes.HasPrefix(got, []byte("V\x011")) {
		t.Errorf("plain file starts %q", got[:3])
	}
}

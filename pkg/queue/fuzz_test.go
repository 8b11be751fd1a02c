package queue

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the reader (Parse, and Walk). It must never panic, must
// wrap ErrCorrupt in every error, and must never return a message for a
// file that does not end in a complete END record: a successful parse
// means the file ends "E\x00" and cutting its last byte makes it fail.
func FuzzOpen(f *testing.F) {
	s := newStore(f)
	for _, size := range []int{0, 5, 300} {
		id := writeMessage(f, s, Incoming, fullEnvelope(), testContent(size),
			Recipient{Addr: "x@example.net", Status: Pending})
		b, err := os.ReadFile(s.Path(Incoming, id))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	id := writeMessage(f, s, Incoming, &Envelope{}, nil)
	b, _ := os.ReadFile(s.Path(Incoming, id))
	f.Add(b)
	// A version 2 file: extracted attributes and an extracted recipient.
	w, err := s.Create(Incoming)
	if err != nil {
		f.Fatal(err)
	}
	w.Envelope(fullEnvelope())
	w.Write([]byte("x\n"))
	w.ExtractedAttr("filter", "smtp:[127.0.0.1]:10024")
	w.AddRecipient(Recipient{Addr: "trap@example.net", Status: Pending})
	if err := w.Commit(); err != nil {
		f.Fatal(err)
	}
	b, _ = os.ReadFile(s.Path(Incoming, w.ID()))
	f.Add(b)
	f.Add([]byte("V\x011"))
	f.Add([]byte("V\x011T\x010S\x00M\x00C\xff\xff\xff\x7fX\x00E\x00"))

	f.Fuzz(func(t *testing.T, data []byte) {
		werr := Walk(bytes.NewReader(data), int64(len(data)), func(RecType, int64, []byte) error { return nil })
		if werr != nil && !errors.Is(werr, ErrCorrupt) {
			t.Fatalf("Walk error %v does not wrap ErrCorrupt", werr)
		}
		m, err := Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if werr != nil {
			t.Fatalf("Walk failed on a file that parses: %v", werr)
		}
		if !bytes.HasSuffix(data, []byte("E\x00")) {
			t.Fatalf("parsed a file without END")
		}
		if _, err := Parse(bytes.NewReader(data), int64(len(data)-1)); err == nil {
			t.Fatalf("parsed a file cut before its last byte")
		}
		n, err := io.Copy(io.Discard, m.Content())
		if err != nil || n != m.Size {
			t.Fatalf("content: %d bytes, %v; Size %d", n, err, m.Size)
		}
		if m.Extracted > len(m.Envelope.Recipients) || len(m.rcptOff) != len(m.Envelope.Recipients) {
			t.Fatalf("recipient bookkeeping")
		}
		for i, r := range m.Envelope.Recipients {
			if !r.Status.Valid() || data[m.rcptOff[i]] != byte(r.Status) {
				t.Fatalf("recipient %d status byte", i)
			}
		}
	})
}

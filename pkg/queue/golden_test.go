package queue

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// TestGolden pins the version 1 file format: a fixed message must encode
// to exactly testdata/v1.queue, and that file must decode to the message.
// Run with -update after an intended format change (and bump Version).
func TestGolden(t *testing.T) {
	s := newStore(t)
	env := fullEnvelope()
	content := []byte("From: a@example.org\r\nSubject: golden\r\n\r\nbody\r\n")
	id := writeMessage(t, s, Incoming, env, content, Recipient{Addr: "x@example.net", Orig: "list@example.org", Status: Pending})
	got, err := os.ReadFile(s.Path(Incoming, id))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "v1.queue")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("encoding differs from %s:\n got %q\nwant %q", golden, got, want)
	}
	m, err := Parse(bytes.NewReader(want), int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(m.Content())
	if !bytes.Equal(b, content) || !reflect.DeepEqual(m.Envelope.Recipients[:len(env.Recipients)], env.Recipients) ||
		m.Envelope.Sender != env.Sender || !m.Envelope.Arrival.Equal(env.Arrival) {
		t.Errorf("golden file decodes to %+v", m.Envelope)
	}
}

func TestWalk(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "v1.queue"))
	if err != nil {
		t.Fatal(err)
	}
	var types []byte
	err = Walk(bytes.NewReader(b), int64(len(b)), func(rt RecType, off int64, data []byte) error {
		if b[off] != byte(rt) {
			t.Errorf("offset %d is not a %c record", off, rt)
		}
		types = append(types, byte(rt))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(types), "VTSAAAAAAAAAUUUURRRRMCXRE"; got != want {
		t.Errorf("records %s, want %s", got, want)
	}
	// A truncated file walks up to the damage, then reports it.
	n := 0
	err = Walk(bytes.NewReader(b[:len(b)-5]), int64(len(b)-5), func(RecType, int64, []byte) error { n++; return nil })
	if !errors.Is(err, ErrCorrupt) || n != len(types)-2 {
		t.Errorf("truncated: %d records, %v", n, err)
	}
}

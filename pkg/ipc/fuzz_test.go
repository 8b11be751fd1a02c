package ipc

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the frame reader: it must never panic,
// never return more than the limits allow, and every frame it accepts must
// re-encode to exactly the bytes it came from (the encoding is canonical).
func FuzzRead(f *testing.F) {
	f.Add(frame(payload("protocol", "postern", "version", "1", "service", "cleanup")))
	f.Add(append(frame(payload("a", "b")), frame(payload())...))
	f.Add(frame([]byte{0x81, 0x00}))
	f.Add([]byte{0, 0, 0, 200, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	const maxFrame, maxAttrs = 256, 8
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		consumed := 0
		for {
			a, b, err := readFrame(r, buf, maxFrame, maxAttrs)
			buf = b
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(a) > maxAttrs {
				t.Fatalf("%d attributes, limit %d", len(a), maxAttrs)
			}
			var kv []string
			for _, x := range a {
				kv = append(kv, x.Name, x.Value)
			}
			enc := frame(payload(kv...))
			if len(enc)-4 > maxFrame {
				t.Fatalf("accepted a %d-byte payload, limit %d", len(enc)-4, maxFrame)
			}
			if payloadSize(a) != len(enc)-4 {
				t.Fatalf("payloadSize %d, encoded %d", payloadSize(a), len(enc)-4)
			}
			if !bytes.Equal(enc, data[consumed:consumed+len(enc)]) {
				t.Fatalf("frame %q re-encodes as %x, read from %x", a, enc, data[consumed:consumed+len(enc)])
			}
			consumed += len(enc)
		}
	})
}

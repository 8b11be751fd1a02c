package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// socketpair returns two connected Unix stream sockets.
func socketpair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// pair returns two Conns talking to each other.
func pair(t testing.TB, o Options) (*Conn, *Conn) {
	a, b := socketpair(t)
	return NewConn(a, o), NewConn(b, o)
}

// frame builds a raw frame around payload.
func frame(payload []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	return append(out, payload...)
}

// payload builds a raw payload from alternating names and values.
func payload(kv ...string) []byte {
	p := binary.AppendUvarint(nil, uint64(len(kv)/2))
	for _, s := range kv {
		p = binary.AppendUvarint(p, uint64(len(s)))
		p = append(p, s...)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	cases := []Attrs{
		{},
		{{"a", "b"}},
		{{"", ""}},
		{{"sender", "a@example.org"}, {"rcpt", "b@example.org"}, {"rcpt", "c@example.org"}},
		{{"bin", "\x00\xff\r\n\x80 "}, {"big", strings.Repeat("x", 100000)}},
		{{strings.Repeat("n", 300), strings.Repeat("v", 20000)}},
	}
	a, b := pair(t, Options{})
	go func() {
		for _, c := range cases {
			if err := a.Send(c); err != nil {
				t.Error(err)
			}
		}
		if err := a.Flush(); err != nil {
			t.Error(err)
		}
		a.Close()
	}()
	for i, want := range cases {
		got, err := b.Read()
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(want) == 0 && len(got) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("case %d: got %q, want %q", i, got, want)
		}
	}
	if _, err := b.Read(); err != io.EOF {
		t.Errorf("after last frame: %v, want io.EOF", err)
	}
	if _, err := b.Read(); err != io.EOF {
		t.Errorf("EOF is not sticky: %v", err)
	}
}

func TestEncoding(t *testing.T) {
	a, b := socketpair(t)
	c := NewConn(a, Options{})
	go func() {
		c.Write(Attrs{{"k", "v"}, {"", "xyz"}})
		c.Close()
	}()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0, 10, 2, 1, 'k', 1, 'v', 0, 3, 'x', 'y', 'z'}
	if !bytes.Equal(got, want) {
		t.Errorf("wire bytes %v, want %v", got, want)
	}
}

func TestAttrs(t *testing.T) {
	var a Attrs
	a.Add("s", "str")
	a.AddInt("n", -42)
	a.AddBool("t", true)
	a.AddBool("f", false)
	a.Add("s", "second")
	a.Add("bad", "12x")
	if v, ok := a.Get("s"); !ok || v != "str" {
		t.Errorf("Get(s) = %q, %v", v, ok)
	}
	if _, ok := a.Get("none"); ok {
		t.Error("Get(none) found something")
	}
	if got := a.All("s"); !reflect.DeepEqual(got, []string{"str", "second"}) {
		t.Errorf("All(s) = %q", got)
	}
	if a.Str("none") != "" || a.Str("n") != "-42" {
		t.Error("Str")
	}
	if n, err := a.Int("n"); n != -42 || err != nil {
		t.Errorf("Int(n) = %d, %v", n, err)
	}
	if _, err := a.Int("bad"); err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("Int(bad) error %v does not name the attribute", err)
	}
	if _, err := a.Int("none"); err == nil || !strings.Contains(err.Error(), `"none"`) {
		t.Errorf("Int(none) error %v does not name the attribute", err)
	}
	if !a.Bool("t") || a.Bool("f") || a.Bool("none") || a.Bool("s") {
		t.Error("Bool")
	}
	if err := a.Require("s", "n", "t"); err != nil {
		t.Error(err)
	}
	err := a.Require("s", "x", "n", "y")
	if err == nil || !strings.Contains(err.Error(), `"x", "y"`) {
		t.Errorf("Require error %v does not list the missing attributes", err)
	}
}

func TestSendTooLarge(t *testing.T) {
	a, b := pair(t, Options{MaxFrame: 100, MaxAttrs: 3})
	if err := a.Write(Attrs{{"x", strings.Repeat("y", 100)}}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized send: %v", err)
	}
	if err := a.Write(Attrs{{"a", ""}, {"b", ""}, {"c", ""}, {"d", ""}}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("too many attributes: %v", err)
	}
	// A refused send writes nothing and leaves the Conn usable.
	if err := a.Write(Attrs{{"ok", "1"}}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Read()
	if err != nil || got.Str("ok") != "1" {
		t.Errorf("after refused sends: %q, %v", got, err)
	}
}

func TestReadErrors(t *testing.T) {
	big := binary.BigEndian.AppendUint32(nil, 101)
	cases := []struct {
		name string
		raw  []byte
		want error
	}{
		{"too large", big, ErrFrameTooLarge},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"too many attrs", frame(payload("a", "", "b", "", "c", "", "d", "")), ErrFrameTooLarge},
		{"empty payload", frame(nil), ErrMalformed},
		{"count past end", frame([]byte{3, 0, 0}), ErrMalformed},
		{"name past end", frame([]byte{1, 5, 'a', 0}), ErrMalformed},
		{"value past end", frame([]byte{1, 1, 'a', 9, 'b'}), ErrMalformed},
		{"missing value", frame([]byte{1, 1, 'a'}), ErrMalformed},
		{"trailing bytes", frame(append(payload("a", "b"), 0)), ErrMalformed},
		{"non-minimal varint", frame([]byte{0x81, 0x00, 0, 0}), ErrMalformed},
		{"overlong varint", frame([]byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0}), ErrMalformed},
		{"truncated header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated payload", frame(payload("a", "b"))[:6], io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := socketpair(t)
			c := NewConn(b, Options{MaxFrame: 100, MaxAttrs: 3})
			go func() {
				a.Write(tc.raw)
				// A valid frame after the bad one must not be read.
				if tc.want != io.ErrUnexpectedEOF {
					a.Write(frame(payload("x", "y")))
				}
				a.Close()
			}()
			_, err := c.Read()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if _, err2 := c.Read(); !errors.Is(err2, tc.want) {
				t.Errorf("error not sticky: second Read gave %v", err2)
			}
		})
	}
}

func TestWriteAfterPeerGone(t *testing.T) {
	a, b := pair(t, Options{})
	b.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = a.Write(Attrs{{"x", strings.Repeat("y", 10000)}})
	}
	if err == nil {
		t.Fatal("writes to a closed peer kept succeeding")
	}
	if err2 := a.Write(Attrs{{"x", "y"}}); err2 != err {
		t.Errorf("write error not sticky: %v then %v", err, err2)
	}
}

func TestReadTimeout(t *testing.T) {
	_, b := pair(t, Options{Timeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := b.Read()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

func TestWriteTimeout(t *testing.T) {
	a, _ := pair(t, Options{Timeout: 50 * time.Millisecond})
	var err error
	// The peer never reads: the socket buffer fills and a write blocks.
	for i := 0; i < 10000 && err == nil; i++ {
		err = a.Write(Attrs{{"x", strings.Repeat("y", 64<<10)}})
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
}

// listen serves each accepted connection with fn on a Unix socket and
// returns its path.
func listen(t *testing.T, fn func(*Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				c := NewConn(nc, Options{Timeout: 5 * time.Second})
				defer c.Close()
				fn(c)
			}()
		}
	}()
	return path
}

func TestDialHello(t *testing.T) {
	path := listen(t, func(c *Conn) {
		if err := Hello(c, "cleanup"); err != nil {
			t.Error(err)
			return
		}
		for {
			req, err := c.Read()
			if err != nil {
				return
			}
			var rep Attrs
			rep.Add("echo", req.Str("x"))
			c.Write(rep)
		}
	})
	c, err := Dial(path, "cleanup", Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Write(Attrs{{"x", "hi"}}); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Read()
	if err != nil || rep.Str("echo") != "hi" {
		t.Fatalf("reply %q, %v", rep, err)
	}

	_, err = Dial(path, "qmgr", Options{Timeout: 5 * time.Second})
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Service != "cleanup" || ve.WantService != "qmgr" {
		t.Fatalf("wrong service: %v", err)
	}
}

func TestDialVersionMismatch(t *testing.T) {
	cases := []Attrs{
		{{HelloProtocol, "postern"}, {HelloVersion, "2"}, {HelloService, "s"}},
		{{HelloProtocol, "postfix"}, {HelloVersion, "1"}, {HelloService, "s"}},
		{{"something", "else"}},
	}
	for _, hello := range cases {
		path := listen(t, func(c *Conn) { c.Write(hello) })
		_, err := Dial(path, "s", Options{Timeout: 5 * time.Second})
		var ve *VersionError
		if !errors.As(err, &ve) {
			t.Errorf("hello %q: got %v, want *VersionError", hello, err)
			continue
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `version "1"`) {
			t.Errorf("unclear error: %v", err)
		}
	}
}

func TestDialNoHello(t *testing.T) {
	// A server that says nothing: the hello read times out.
	path := listen(t, func(c *Conn) { time.Sleep(time.Second) })
	_, err := Dial(path, "s", Options{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent server: %v", err)
	}
	// A server that hangs up.
	path = listen(t, func(c *Conn) {})
	_, err = Dial(path, "s", Options{Timeout: 5 * time.Second})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("server hung up: %v", err)
	}
	// Nobody listening.
	if _, err := Dial(filepath.Join(t.TempDir(), "none"), "s", Options{}); err == nil {
		t.Error("dial to a missing socket succeeded")
	}
}

func TestTrigger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmgr")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		c.Close()
		got <- b
	}()
	if err := Trigger(path, 'W', time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if string(b) != "W" {
			t.Errorf("server read %q, want \"W\"", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no trigger received")
	}
	if err := Trigger(filepath.Join(t.TempDir(), "none"), 'W', time.Second); err == nil {
		t.Error("trigger to a missing socket succeeded")
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	client, server := pair(b, Options{})
	req := Attrs{
		{"request", "deliver"}, {"queue_id", "4BzQ1c2XJhz9v"}, {"sender", "alice@example.org"},
		{"rcpt", "bob@example.net"}, {"offset", "1234"}, {"flags", "0"},
	}
	go func() {
		for {
			r, err := server.Read()
			if err != nil {
				return
			}
			var rep Attrs
			rep.Add("status", "0")
			rep.Add("queue_id", r.Str("queue_id"))
			if server.Write(rep) != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		if err := client.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := client.Read(); err != nil {
			b.Fatal(err)
		}
	}
}

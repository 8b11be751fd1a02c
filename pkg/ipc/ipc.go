// Package ipc is the one request/reply protocol between Postern daemons:
// smtpd and pickup to cleanup, qmgr to the delivery agents, the admin tool
// to the daemons. It plays the part of Postfix's attribute protocol
// (attr_print/attr_scan): a message is a list of named string attributes,
// and each conversation (deliver.Request, deliver.Reply, ...) is a pair of
// Go structs in its own package that names its attributes as constants and
// maps them to and from Attrs. This package knows no conversation.
//
// # Wire format
//
// Over a Unix stream socket, each message is one frame:
//
//	frame   = length payload
//	length  = 4-byte big-endian unsigned size of payload
//	payload = uvarint(count) count*attr
//	attr    = uvarint(len(name)) name uvarint(len(value)) value
//
// uvarint is encoding/binary's unsigned varint (7-bit groups, low first).
// Names and values are arbitrary bytes. A payload must be consumed
// exactly: trailing bytes, a length past the end, a non-minimal or overlong
// varint are malformed.
//
// # Versioning
//
// The server speaks first: right after accepting, it sends the hello frame
// {protocol: "postern", version: Version, service: NAME} (Hello). The client
// (Dial) reads it and fails with a *VersionError unless the protocol,
// version and service all match what it expects. Version is bumped on any
// change of meaning in any conversation, so that a half-upgraded instance
// fails loudly at connect time rather than misreading a request.
// Unknown attributes are ignored by readers, so adding an optional
// attribute needs no bump; each conversation decides which ones it
// requires (Attrs.Require).
//
// # Bounds and errors
//
// A frame larger than Options.MaxFrame (DefaultMaxFrame if zero) or with
// more than Options.MaxAttrs attributes (DefaultMaxAttrs) is refused with an
// error wrapping ErrFrameTooLarge; a frame that does not parse, with one
// wrapping ErrMalformed; a peer that closes in the middle of a frame gives
// io.ErrUnexpectedEOF, and one that closes between frames io.EOF. Any read
// or write error leaves the Conn unusable: every later call returns the
// same error, since the stream position is lost. Sending a frame that is
// too large is refused before anything is written and leaves the Conn
// usable.
//
// Options.Timeout bounds each Read, Send and Flush (and Dial's connect);
// a timeout is an error for which errors.Is(err, os.ErrDeadlineExceeded).
//
// A Conn buffers in both directions: Send only queues a frame, Flush (or
// Write, which is Send+Flush) pushes it out, and Read fills a buffer, so a
// pipeline of small frames costs few system calls. A Conn is not safe for
// concurrent use.
//
// Trigger is the one-byte wake-up (Postfix's "W" to qmgr or pickup): no
// hello, no frame, no reply.
package ipc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Protocol and Version are sent in every hello frame.
const (
	Protocol = "postern"
	Version  = "1"
)

// Attribute names of the hello frame.
const (
	HelloProtocol = "protocol"
	HelloVersion  = "version"
	HelloService  = "service"
)

// Limits applied when Options leaves them zero.
const (
	DefaultMaxFrame = 1 << 20
	DefaultMaxAttrs = 4096
)

// bufSize is the size of each direction's buffer: big enough that a
// typical request (a few hundred bytes of envelope) goes in one syscall.
const bufSize = 16 << 10

var (
	// ErrFrameTooLarge is wrapped by errors about a frame over MaxFrame
	// bytes or MaxAttrs attributes.
	ErrFrameTooLarge = errors.New("ipc: frame too large")
	// ErrMalformed is wrapped by errors about a frame that does not parse.
	ErrMalformed = errors.New("ipc: malformed frame")
)

// VersionError is returned by Dial when the server's hello frame does not
// name the expected protocol, version and service.
type VersionError struct {
	Path                       string // socket path dialled
	Protocol, Version, Service string // what the server sent ("" if absent)
	WantService                string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("ipc: %s: server speaks protocol %q version %q for service %q; want protocol %q version %q for service %q",
		e.Path, e.Protocol, e.Version, e.Service, Protocol, Version, e.WantService)
}

// Options tunes a Conn. The zero value means the defaults and no timeout.
type Options struct {
	MaxFrame int           // largest payload accepted or sent; 0 = DefaultMaxFrame
	MaxAttrs int           // most attributes in one frame; 0 = DefaultMaxAttrs
	Timeout  time.Duration // per Read, Send, Flush and Dial's connect; 0 = none
}

// Conn is a framed, buffered attribute connection.
type Conn struct {
	c        net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	maxFrame int
	maxAttrs int
	timeout  time.Duration
	rerr     error  // sticky read error
	werr     error  // sticky write error
	buf      []byte // payload read buffer, reused
	// scratch holds a frame header or a length while it is encoded; a
	// field rather than a local so that it does not escape per call.
	scratch [4 + binary.MaxVarintLen64]byte
}

// NewConn wraps c. The Conn owns c from now on.
func NewConn(c net.Conn, o Options) *Conn {
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.MaxAttrs <= 0 {
		o.MaxAttrs = DefaultMaxAttrs
	}
	return &Conn{
		c:        c,
		r:        bufio.NewReaderSize(c, bufSize),
		w:        bufio.NewWriterSize(c, bufSize),
		maxFrame: o.MaxFrame,
		maxAttrs: o.MaxAttrs,
		timeout:  o.Timeout,
	}
}

// Raw returns the underlying connection (for credentials, descriptor
// passing or deadlines of the caller's own).
func (c *Conn) Raw() net.Conn { return c.c }

// Close closes the underlying connection without flushing.
func (c *Conn) Close() error { return c.c.Close() }

// Send encodes a into the write buffer. It writes to the socket only when
// the buffer fills; call Flush to push out what is queued.
func (c *Conn) Send(a Attrs) error {
	if c.werr != nil {
		return c.werr
	}
	if len(a) > c.maxAttrs {
		return fmt.Errorf("%w: %d attributes, limit %d", ErrFrameTooLarge, len(a), c.maxAttrs)
	}
	n := payloadSize(a)
	if n > c.maxFrame {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, c.maxFrame)
	}
	if c.timeout > 0 && c.w.Available() < 4+n {
		if err := c.c.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
			c.werr = fmt.Errorf("ipc: send: %w", err)
			return c.werr
		}
	}
	hdr := c.scratch[:]
	binary.BigEndian.PutUint32(hdr[:4], uint32(n))
	k := binary.PutUvarint(hdr[4:], uint64(len(a)))
	_, err := c.w.Write(hdr[:4+k])
	for _, x := range a {
		if err != nil {
			break
		}
		if err = c.writeString(x.Name); err == nil {
			err = c.writeString(x.Value)
		}
	}
	if err != nil {
		// Part of the frame may be on the wire: the stream is lost.
		c.werr = fmt.Errorf("ipc: send: %w", err)
		return c.werr
	}
	return nil
}

func (c *Conn) writeString(s string) error {
	k := binary.PutUvarint(c.scratch[:], uint64(len(s)))
	if _, err := c.w.Write(c.scratch[:k]); err != nil {
		return err
	}
	_, err := c.w.WriteString(s)
	return err
}

// Flush writes every queued frame to the socket.
func (c *Conn) Flush() error {
	if c.werr != nil {
		return c.werr
	}
	if c.w.Buffered() == 0 {
		return nil
	}
	if c.timeout > 0 {
		if err := c.c.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
			c.werr = fmt.Errorf("ipc: flush: %w", err)
			return c.werr
		}
	}
	if err := c.w.Flush(); err != nil {
		c.werr = fmt.Errorf("ipc: flush: %w", err)
		return c.werr
	}
	return nil
}

// Write sends a and flushes.
func (c *Conn) Write(a Attrs) error {
	if err := c.Send(a); err != nil {
		return err
	}
	return c.Flush()
}

// Read returns the next frame. It returns io.EOF if the peer closed
// cleanly between frames.
func (c *Conn) Read() (Attrs, error) {
	if c.rerr != nil {
		return nil, c.rerr
	}
	if c.timeout > 0 {
		if err := c.c.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
			c.rerr = fmt.Errorf("ipc: read: %w", err)
			return nil, c.rerr
		}
	}
	a, buf, err := readFrame(c.r, c.buf, c.maxFrame, c.maxAttrs)
	c.buf = buf
	if err != nil {
		if err != io.EOF {
			err = fmt.Errorf("ipc: read: %w", err)
		}
		c.rerr = err
		return nil, err
	}
	return a, nil
}

// WaitFrame waits at most idle for the peer to begin another frame, for a
// connection that stays open between conversations. It returns nil when
// the next frame can be read, io.EOF when the peer closed, and an error
// for which errors.Is(err, os.ErrDeadlineExceeded) when idle passed.
func (c *Conn) WaitFrame(idle time.Duration) error {
	if c.rerr != nil {
		return c.rerr
	}
	if c.r.Buffered() > 0 {
		return nil
	}
	if err := c.c.SetReadDeadline(time.Now().Add(idle)); err != nil {
		c.rerr = fmt.Errorf("ipc: read: %w", err)
		return c.rerr
	}
	if _, err := c.r.Peek(1); err != nil {
		if err != io.EOF {
			err = fmt.Errorf("ipc: read: %w", err)
		}
		c.rerr = err
		return err
	}
	if c.timeout <= 0 {
		c.c.SetReadDeadline(time.Time{})
	}
	return nil
}

// readFrame reads one frame from r, reusing buf for the payload, and
// returns the attributes and the (possibly grown) buffer.
func readFrame(r *bufio.Reader, buf []byte, maxFrame, maxAttrs int) (Attrs, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(maxFrame) {
		return nil, buf, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, buf, err
	}
	a, err := decodePayload(buf, maxAttrs)
	return a, buf, err
}

// decodePayload parses a payload. Every name and value is a substring of
// one string copy of p, so a frame costs two allocations whatever its
// attribute count.
func decodePayload(p []byte, maxAttrs int) (Attrs, error) {
	count, k := uvarint(p)
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad attribute count", ErrMalformed)
	}
	if count > uint64(maxAttrs) {
		return nil, fmt.Errorf("%w: %d attributes, limit %d", ErrFrameTooLarge, count, maxAttrs)
	}
	// Each attribute takes at least two bytes (two zero lengths), so a
	// count the payload cannot hold is refused before allocating for it.
	if count > uint64(len(p)-k)/2 {
		return nil, fmt.Errorf("%w: %d attributes in %d bytes", ErrMalformed, count, len(p))
	}
	s := string(p)
	pos := k
	a := make(Attrs, count)
	for i := range a {
		var err error
		if a[i].Name, pos, err = field(s, p, pos); err != nil {
			return nil, fmt.Errorf("%w: attribute %d name: %v", ErrMalformed, i, err)
		}
		if a[i].Value, pos, err = field(s, p, pos); err != nil {
			return nil, fmt.Errorf("%w: attribute %d (%q) value: %v", ErrMalformed, i, a[i].Name, err)
		}
	}
	if pos != len(p) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(p)-pos)
	}
	return a, nil
}

// field reads one length-prefixed string at pos.
func field(s string, p []byte, pos int) (string, int, error) {
	l, k := uvarint(p[pos:])
	if k <= 0 {
		return "", pos, errors.New("bad length")
	}
	pos += k
	if l > uint64(len(p)-pos) {
		return "", pos, fmt.Errorf("length %d past end of frame", l)
	}
	end := pos + int(l)
	return s[pos:end], end, nil
}

// uvarint is binary.Uvarint that also refuses non-minimal encodings (a
// trailing 0x00 group), so that every frame has exactly one encoding.
func uvarint(p []byte) (uint64, int) {
	v, k := binary.Uvarint(p)
	if k > 1 && p[k-1] == 0 {
		return 0, -1
	}
	return v, k
}

// payloadSize is the encoded size of a's payload.
func payloadSize(a Attrs) int {
	n := uvarintLen(uint64(len(a)))
	for _, x := range a {
		n += uvarintLen(uint64(len(x.Name))) + len(x.Name)
		n += uvarintLen(uint64(len(x.Value))) + len(x.Value)
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// Hello sends the server's hello frame for service and flushes it. A
// server calls it first thing on every accepted connection.
func Hello(c *Conn, service string) error {
	var a Attrs
	a.Add(HelloProtocol, Protocol)
	a.Add(HelloVersion, Version)
	a.Add(HelloService, service)
	return c.Write(a)
}

// Dial connects to the Unix socket at path, reads the server's hello and
// checks that it is protocol Protocol, version Version, for service.
// o.Timeout bounds the connect and the hello read.
func Dial(path, service string, o Options) (*Conn, error) {
	d := net.Dialer{Timeout: o.Timeout}
	nc, err := d.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("ipc: connect to %s: %w", path, err)
	}
	c := NewConn(nc, o)
	a, err := c.Read()
	if err != nil {
		c.Close()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("ipc: %s: reading hello: %w", path, err)
	}
	p, v, s := a.Str(HelloProtocol), a.Str(HelloVersion), a.Str(HelloService)
	if p != Protocol || v != Version || s != service {
		c.Close()
		return nil, &VersionError{Path: path, Protocol: p, Version: v, Service: s, WantService: service}
	}
	return c, nil
}

// Trigger wakes the service listening at path: connect, write the one
// request byte b, close. It waits for no answer. timeout bounds the whole
// exchange; 0 means none.
func Trigger(path string, b byte, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("ipc: trigger %s: %w", path, err)
	}
	defer c.Close()
	if timeout > 0 {
		c.SetDeadline(time.Now().Add(timeout))
	}
	if _, err := c.Write([]byte{b}); err != nil {
		return fmt.Errorf("ipc: trigger %s: %w", path, err)
	}
	if err := c.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("ipc: trigger %s: %w", path, err)
	}
	return nil
}

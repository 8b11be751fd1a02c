package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Recipient is one envelope recipient.
type Recipient struct {
	Addr   string     // the address to deliver to
	Orig   string     // the address before rewriting or alias expansion ("" if the same)
	Notify string     // DSN NOTIFY= (RFC 3461 §4.1), e.g. "SUCCESS,FAILURE", or ""
	ORcpt  string     // DSN ORCPT= (RFC 3461 §4.2) as received, e.g. "rfc822;a@b", or ""
	Status RcptStatus // Pending until marked done in place
}

// Envelope is everything about a message except its content.
type Envelope struct {
	Sender     string // "" is the null sender
	Arrival    time.Time
	ClientName string
	ClientAddr string
	HeloName   string
	Protocol   string // e.g. "ESMTP", "ESMTPSA", "UNKNOWN"
	AuthUser   string
	BodyType   string // "7BIT", "8BITMIME" or ""
	SMTPUTF8   bool
	DSNRet     string // "FULL", "HDRS" or ""
	DSNEnvID   string
	// Attrs holds further name=value attributes; names are non-empty
	// and contain no '=' or NUL. They are written sorted by name.
	Attrs      map[string]string
	Recipients []Recipient
}

// Message is an open, parsed queue file. The content is not read by Open;
// Content reads it from the file on demand. Readers from Content may be
// used concurrently with each other and with SetStatus; the other methods
// belong to one goroutine.
type Message struct {
	ID       ID
	Queue    string
	Envelope Envelope // Recipients: the envelope segment's, then the extracted segment's
	Size     int64    // content bytes
	// Extracted is the index in Envelope.Recipients of the first
	// recipient of the extracted segment (len(Recipients) if none).
	Extracted int

	r        io.ReaderAt
	f        *os.File // nil when parsed from memory
	writable bool
	chunks   []span
	rcptOff  []int64 // file offset of each recipient's status byte
	ino      uint64  // the file's inode and size, for Reopen: a queue
	fsize    int64   // file never changes size once committed
}

type span struct{ off, n int64 }

// Open opens and parses message id in queue. A file that does not parse,
// or has no END record, yields an error wrapping ErrCorrupt; a missing file
// an error wrapping fs.ErrNotExist. The file is opened for reading and
// writing (for SetStatus) when permitted, else read-only.
func (s *Store) Open(queue string, id ID) (*Message, error) {
	if err := checkName(queue, id); err != nil {
		return nil, err
	}
	m, err := OpenFile(s.Path(queue, id))
	if err != nil {
		return nil, fmt.Errorf("%s: open in %s: %w", id, queue, err)
	}
	m.ID, m.Queue = id, queue
	return m, nil
}

// OpenFile opens and parses the queue file at path, as Open does; it is
// for tools given a path. ID is the file's base name, Queue is empty.
func OpenFile(path string) (*Message, error) {
	// O_NOFOLLOW: a queue file is never a symlink, and maildrop/ holds
	// files written by local users. O_NONBLOCK: opening a FIFO someone
	// left in a queue must not hang; it is then refused as not regular.
	const flags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	writable := true
	f, err := os.OpenFile(path, os.O_RDWR|flags, 0)
	if errors.Is(err, os.ErrPermission) {
		writable = false
		f, err = os.OpenFile(path, os.O_RDONLY|flags, 0)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, corruptf("not a regular file")
	}
	m, err := Parse(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	m.f, m.writable = f, writable
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		m.ino = st.Ino
	}
	m.fsize = fi.Size()
	m.ID = ID(fi.Name())
	return m, nil
}

// Parse parses a queue file of size bytes read from r. The returned
// Message reads its content from r; SetStatus and Sync fail on it.
// Every error wraps ErrCorrupt.
func Parse(r io.ReaderAt, size int64) (*Message, error) {
	p := parser{sc: scanner{r: r, size: size}}
	m, err := p.parse()
	if err != nil {
		return nil, err
	}
	// m lives inside p: drop the read buffer, or every parsed message
	// keeps a window of its file in memory (qmgr holds thousands).
	p.sc.buf = nil
	m.r = r
	return m, nil
}

// Content returns a new reader over the content bytes, exactly as they
// were written. Each call starts at the beginning. Reads go straight from
// the file into the caller's buffer.
func (m *Message) Content() io.Reader {
	return &contentReader{r: m.r, chunks: m.chunks}
}

// SetStatus marks recipient i (an index into Envelope.Recipients) by
// rewriting its status byte in place. It is a single one-byte write, which
// a crash cannot tear; call Sync to make it durable.
func (m *Message) SetStatus(i int, st RcptStatus) error {
	if i < 0 || i >= len(m.rcptOff) {
		return fmt.Errorf("%s: set status: recipient index %d out of range", m.ID, i)
	}
	if !st.Valid() {
		return fmt.Errorf("%s: set status: invalid status %v", m.ID, st)
	}
	if m.f == nil || !m.writable {
		return fmt.Errorf("%s: set status: queue file not open for writing", m.ID)
	}
	if _, err := m.f.WriteAt([]byte{byte(st)}, m.rcptOff[i]); err != nil {
		return fmt.Errorf("%s: set status: %w", m.ID, err)
	}
	m.Envelope.Recipients[i].Status = st
	return nil
}

// Sync makes earlier SetStatus calls durable (fsync).
func (m *Message) Sync() error {
	if m.f == nil {
		return fmt.Errorf("%s: sync: no file", m.ID)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", m.ID, err)
	}
	return nil
}

// Close closes the file. Readers from Content fail afterwards.
func (m *Message) Close() error {
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	return err
}

// contentReader reads the content records' data in order, with ReadAt
// straight into the caller's buffer.
type contentReader struct {
	r      io.ReaderAt
	chunks []span
	i      int
	off    int64 // offset within chunks[i]
}

func (c *contentReader) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		for c.i < len(c.chunks) && c.off == c.chunks[c.i].n {
			c.i++
			c.off = 0
		}
		if c.i == len(c.chunks) {
			if total == 0 {
				return 0, io.EOF
			}
			return total, nil
		}
		ch := c.chunks[c.i]
		q := p
		if rem := ch.n - c.off; int64(len(q)) > rem {
			q = q[:rem]
		}
		n, err := c.r.ReadAt(q, ch.off+c.off)
		c.off += int64(n)
		total += n
		p = p[n:]
		if err != nil && !(err == io.EOF && n == len(q)) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
	}
	return total, nil
}

// scanner reads records from an io.ReaderAt through a small window, so the
// envelope costs few reads and content records are skipped unread.
type scanner struct {
	r    io.ReaderAt
	size int64
	off  int64
	buf  []byte
	boff int64
}

const scanWindow = 4096

// at returns n bytes at offset off; the slice is valid until the next call.
func (s *scanner) at(off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 || off+int64(n) > s.size {
		return nil, corruptf("truncated at offset %d", off)
	}
	if off >= s.boff && off+int64(n) <= s.boff+int64(len(s.buf)) {
		return s.buf[off-s.boff:][:n], nil
	}
	want := max(n, scanWindow)
	if rem := s.size - off; int64(want) > rem {
		want = int(rem)
	}
	if cap(s.buf) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	got, err := s.r.ReadAt(s.buf, off)
	if got < want {
		s.buf = s.buf[:0]
		if err == nil || err == io.EOF {
			return nil, corruptf("truncated at offset %d", off+int64(got))
		}
		return nil, fmt.Errorf("%w: read: %w", ErrCorrupt, err)
	}
	s.boff = off
	return s.buf[:n], nil
}

// next reads the next record header. It returns the type, the offset and
// length of the data, and reads the data unless skip is set.
func (s *scanner) next(skip func(RecType) bool) (t RecType, doff int64, n int, data []byte, err error) {
	hlen := int(min(int64(1+maxLenBytes), s.size-s.off))
	if hlen < 2 {
		return 0, 0, 0, nil, corruptf("truncated record at offset %d", s.off)
	}
	h, err := s.at(s.off, hlen)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	t = RecType(h[0])
	n, used, err := parseLen(h[1:])
	if err != nil {
		return 0, 0, 0, nil, fmt.Errorf("%w at offset %d", err, s.off)
	}
	limit := maxMetaRecord
	if t == RecContent {
		limit = maxContentRecord
	}
	if n > limit {
		return 0, 0, 0, nil, corruptf("record %q of %d bytes at offset %d exceeds %d", byte(t), n, s.off, limit)
	}
	doff = s.off + 1 + int64(used)
	if doff+int64(n) > s.size {
		return 0, 0, 0, nil, corruptf("record %q at offset %d truncated", byte(t), s.off)
	}
	if skip == nil || !skip(t) {
		if data, err = s.at(doff, n); err != nil {
			return 0, 0, 0, nil, err
		}
	}
	s.off = doff + int64(n)
	return t, doff, n, data, nil
}

type parser struct {
	sc scanner
	m  Message
}

func (p *parser) parse() (*Message, error) {
	m := &p.m
	env := &m.Envelope
	isContent := func(t RecType) bool { return t == RecContent }

	// Version first.
	t, _, _, data, err := p.sc.next(nil)
	if err != nil {
		return nil, err
	}
	if t != RecVersion {
		return nil, corruptf("first record is %q, not a version record", byte(t))
	}
	version, err := strconv.Atoi(string(data))
	if err != nil || version < 1 || version > Version || string(data) != strconv.Itoa(version) {
		return nil, corruptf("unsupported format version %q", data)
	}

	// Envelope: T S *A *U *R, then M.
	if t, _, _, data, err = p.sc.next(nil); err != nil {
		return nil, err
	}
	if t != RecTime {
		return nil, corruptf("missing arrival time record")
	}
	ns, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil || ns < 0 {
		return nil, corruptf("bad arrival time %q", data)
	}
	env.Arrival = time.Unix(0, ns)
	if t, _, _, data, err = p.sc.next(nil); err != nil {
		return nil, err
	}
	if t != RecSender {
		return nil, corruptf("missing sender record")
	}
	env.Sender = string(data)

	seen := map[string]bool{}
	lastUser := ""
	for {
		var doff int64
		if t, doff, _, data, err = p.sc.next(nil); err != nil {
			return nil, err
		}
		switch t {
		case RecAttr:
			if env.Attrs != nil || len(env.Recipients) > 0 {
				return nil, corruptf("attribute record out of order")
			}
			name, value, ok := bytes.Cut(data, []byte("="))
			if !ok || len(value) == 0 || seen[string(name)] {
				return nil, corruptf("bad or repeated attribute %q", name)
			}
			seen[string(name)] = true
			if err := setAttr(env, string(name), string(value)); err != nil {
				return nil, err
			}
			continue
		case RecUserAttr:
			if len(env.Recipients) > 0 {
				return nil, corruptf("attribute record out of order")
			}
			name, value, ok := bytes.Cut(data, []byte("="))
			if !ok || len(name) == 0 || bytes.IndexByte(name, 0) >= 0 {
				return nil, corruptf("bad attribute record")
			}
			if env.Attrs != nil && string(name) <= lastUser {
				return nil, corruptf("attribute %q out of order or repeated", name)
			}
			if env.Attrs == nil {
				env.Attrs = make(map[string]string)
			}
			lastUser = string(name)
			env.Attrs[lastUser] = string(value)
			continue
		case RecRecipient:
			if err := p.recipient(doff, data); err != nil {
				return nil, err
			}
			continue
		case RecMessage:
		default:
			return nil, corruptf("unexpected record %q in envelope", byte(t))
		}
		break
	}
	if len(data) != 0 {
		return nil, corruptf("message record not empty")
	}

	// Content: *C, then X.
	for {
		var doff int64
		var n int
		if t, doff, n, _, err = p.sc.next(isContent); err != nil {
			return nil, err
		}
		if t != RecContent {
			break
		}
		if n > 0 {
			m.chunks = append(m.chunks, span{doff, int64(n)})
			m.Size += int64(n)
		}
	}
	if t != RecExtracted {
		return nil, corruptf("unexpected record %q in content", byte(t))
	}
	m.Extracted = len(env.Recipients)

	// Extracted: *U (version 2), *R, then E. A 'U' record here overrides
	// the envelope's attribute of the same name.
	lastUser = ""
	for first := true; ; first = false {
		var doff int64
		if t, doff, _, data, err = p.sc.next(nil); err != nil {
			return nil, err
		}
		if t == RecUserAttr {
			if version < 2 || len(env.Recipients) > m.Extracted {
				return nil, corruptf("attribute record out of order")
			}
			name, value, ok := bytes.Cut(data, []byte("="))
			if !ok || len(name) == 0 || bytes.IndexByte(name, 0) >= 0 {
				return nil, corruptf("bad attribute record")
			}
			if !first && string(name) <= lastUser {
				return nil, corruptf("attribute %q out of order or repeated", name)
			}
			lastUser = string(name)
			if env.Attrs == nil {
				env.Attrs = make(map[string]string)
			}
			env.Attrs[lastUser] = string(value)
			continue
		}
		if t != RecRecipient {
			break
		}
		if err := p.recipient(doff, data); err != nil {
			return nil, err
		}
	}
	if t != RecEnd {
		return nil, corruptf("unexpected record %q in extracted segment", byte(t))
	}
	if len(data) != 0 {
		return nil, corruptf("end record not empty")
	}
	if p.sc.off != p.sc.size {
		return nil, corruptf("%d bytes after end record", p.sc.size-p.sc.off)
	}
	return m, nil
}

func (p *parser) recipient(doff int64, data []byte) error {
	if len(data) < 4 {
		return corruptf("short recipient record")
	}
	st := RcptStatus(data[0])
	if !st.Valid() {
		return corruptf("bad recipient status %#02x", data[0])
	}
	f := strings.Split(string(data[1:]), "\x00")
	if len(f) != 4 {
		return corruptf("recipient record has %d fields", len(f))
	}
	p.m.Envelope.Recipients = append(p.m.Envelope.Recipients, Recipient{Addr: f[0], Orig: f[1], Notify: f[2], ORcpt: f[3], Status: st})
	p.m.rcptOff = append(p.m.rcptOff, doff)
	return nil
}

func setAttr(env *Envelope, name, value string) error {
	switch name {
	case attrClientName:
		env.ClientName = value
	case attrClientAddr:
		env.ClientAddr = value
	case attrHeloName:
		env.HeloName = value
	case attrProtocol:
		env.Protocol = value
	case attrAuthUser:
		env.AuthUser = value
	case attrBodyType:
		env.BodyType = value
	case attrSMTPUTF8:
		if value != "1" {
			return corruptf("bad smtputf8 value %q", value)
		}
		env.SMTPUTF8 = true
	case attrDSNRet:
		env.DSNRet = value
	case attrDSNEnvID:
		env.DSNEnvID = value
	default:
		return corruptf("unknown attribute %q", name)
	}
	return nil
}

// Walk calls fn for each record of the queue file of size bytes in r, in
// order, with the record's type, the file offset of its header and its
// data (valid only during the call), as postcat does. It checks record
// framing and length limits but not the grammar, so it can show what a
// corrupt file holds; it stops after an END record, at the end of the
// file, at the first framing error (which wraps ErrCorrupt) or when fn
// returns an error.
func Walk(r io.ReaderAt, size int64, fn func(t RecType, off int64, data []byte) error) error {
	sc := scanner{r: r, size: size}
	for sc.off < sc.size {
		off := sc.off
		t, _, _, data, err := sc.next(nil)
		if err != nil {
			return err
		}
		if err := fn(t, off, data); err != nil {
			return err
		}
		if t == RecEnd {
			return nil
		}
	}
	return nil
}

// Release closes the file but keeps everything parsed, so a scheduler can
// hold many messages without a descriptor each; Reopen gets the file back
// for Content and SetStatus.
func (m *Message) Release() error {
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f, m.r = nil, nil
	return err
}

// Reopen opens a released message's file again at path (its queue may
// have changed by a Move). It fails if the name now belongs to another
// file than the one parsed.
func (m *Message) Reopen(path string) error {
	if m.f != nil {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("%s: reopen: %w", m.ID, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: reopen: %w", m.ID, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Ino != m.ino || fi.Size() != m.fsize {
		f.Close()
		return fmt.Errorf("%s: reopen: %s is another file now", m.ID, path)
	}
	m.f, m.r, m.writable = f, f, true
	return nil
}

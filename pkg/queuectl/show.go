package queuectl

// Showing one queue file, as postcat -q.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"time"

	"postern/pkg/queue"
)

// ShowFlags choose what Show prints; none set means all three, as
// postcat without -b, -e, -h.
type ShowFlags struct {
	Envelope bool // -e
	Header   bool // -h
	Body     bool // -b
}

// showQueues are searched in this order, as postcat -q searches
// Postfix's queues (corrupt/ standing in for saved/).
var showQueues = []string{queue.Maildrop, queue.Incoming, queue.Active, queue.Deferred, queue.Hold, queue.Corrupt}

// ErrNotFound wraps the error for a message that is in no queue.
var ErrNotFound = errors.New("no such message")

// Open finds message id in the queues postcat searches, looking twice
// in case it moves between queues meanwhile. It returns the open file and
// the queue it is in.
func Open(store *queue.Store, id string) (*os.File, string, error) {
	if !queue.ValidID(id) {
		return nil, "", fmt.Errorf("bad mail queue ID: %s", id)
	}
	var last error
	for tries := 0; tries < 2; tries++ {
		for _, q := range showQueues {
			f, err := os.OpenFile(store.Path(q, queue.ID(id)), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err == nil {
				return f, q, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				last = err
			}
		}
	}
	if last != nil {
		return nil, "", fmt.Errorf("open queue file %s: %w", id, last)
	}
	return nil, "", fmt.Errorf("open queue file %s: %w", id, ErrNotFound)
}

// Show prints the queue file f, which is name ("deferred/ID") in the
// queue, as postcat does; see the package doc. It returns the first
// error in the file's framing (after printing what came before it) or
// in writing.
func Show(w io.Writer, f io.ReaderAt, size int64, name string, flags ShowFlags, loc *time.Location) error {
	if !flags.Envelope && !flags.Header && !flags.Body {
		flags = ShowFlags{Envelope: true, Header: true, Body: true}
	}
	bw := bufio.NewWriter(w)
	s := &shower{w: bw, flags: flags, name: name, loc: loc}
	if flags.Envelope {
		s.marker("ENVELOPE RECORDS")
	}
	err := queue.Walk(f, size, s.record)
	if err == nil && !s.ended {
		err = fmt.Errorf("%s: %w: no end record", name, queue.ErrCorrupt)
	}
	if err != nil {
		s.endLine()
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return err
}

const (
	stateEnvelope = iota
	stateHeader
	stateBody
)

type shower struct {
	w     *bufio.Writer
	flags ShowFlags
	name  string
	loc   *time.Location
	state int
	ended bool
	// In the header, the current line so far (it is classified once
	// complete, as it may span content records); midLine: the last
	// byte written was not a newline.
	line    []byte
	midLine bool
}

func (s *shower) marker(text string) {
	fmt.Fprintf(s.w, "*** %s %s ***\n", text, s.name)
}

func (s *shower) envelope(format string, args ...any) {
	if s.state == stateEnvelope && s.flags.Envelope {
		fmt.Fprintf(s.w, format+"\n", args...)
	}
}

func (s *shower) record(t queue.RecType, off int64, data []byte) error {
	switch t {
	case queue.RecVersion:
		// Postfix files have no version record; postcat shows none.
	case queue.RecTime:
		ns, err := strconv.ParseInt(string(data), 10, 64)
		if err != nil {
			s.envelope("message_arrival_time: %s", data)
			break
		}
		// asctime(3) format, as postcat.
		s.envelope("message_arrival_time: %s", time.Unix(0, ns).In(s.loc).Format("Mon Jan _2 15:04:05 2006"))
	case queue.RecSender:
		s.envelope("sender: %s", data)
	case queue.RecAttr, queue.RecUserAttr:
		s.envelope("named_attribute: %s", data)
	case queue.RecRecipient:
		s.recipient(data)
	case queue.RecMessage:
		if s.flags.Envelope {
			s.marker("MESSAGE CONTENTS")
		}
		s.state = stateHeader
	case queue.RecContent:
		s.content(data)
	case queue.RecExtracted:
		s.endContent()
		if s.flags.Envelope {
			s.marker("HEADER EXTRACTED")
		}
		s.state = stateEnvelope
	case queue.RecEnd:
		s.endContent()
		s.state = stateEnvelope
		if s.flags.Envelope {
			s.marker("MESSAGE FILE END")
		}
		s.ended = true
	default:
		s.envelope("unknown_record_type %q: %q", byte(t), data)
	}
	return nil
}

// recipient shows an 'R' record as the records Postfix writes for one
// recipient, in Postfix's order.
func (s *shower) recipient(data []byte) {
	if len(data) == 0 {
		s.envelope("recipient: (empty record)")
		return
	}
	st := queue.RcptStatus(data[0])
	f := bytes.SplitN(data[1:], []byte{0}, 4)
	for len(f) < 4 {
		f = append(f, nil)
	}
	addr, orig, notify, orcpt := f[0], f[1], f[2], f[3]
	if len(orcpt) > 0 {
		s.envelope("dsn_original_recipient: %s", orcpt)
	}
	if len(notify) > 0 {
		s.envelope("dsn_notify_flags: %s", notify)
	}
	if len(orig) > 0 {
		s.envelope("original_recipient: %s", orig)
	}
	switch {
	case st == queue.Pending, st == queue.Warned:
		// Warned is still pending; only a delay warning was sent.
		s.envelope("recipient: %s", addr)
	case st.Done():
		s.envelope("done_recipient: %s", addr)
	default:
		s.envelope("recipient: %s (unknown status byte %q)", addr, byte(st))
	}
}

// content shows content bytes: header lines with -h, the rest with -b.
func (s *shower) content(data []byte) {
	for len(data) > 0 {
		if s.state == stateBody {
			if s.flags.Body {
				s.w.Write(data)
				s.midLine = data[len(data)-1] != '\n'
			}
			return
		}
		// Header: collect one line and classify it when complete.
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			s.line = append(s.line, data...)
			return
		}
		s.line = append(s.line, data[:i+1]...)
		data = data[i+1:]
		s.headerLine()
	}
}

// headerLine shows the complete line in s.line as a header line, or, if
// it is neither a header nor a continuation, starts the body with it.
func (s *shower) headerLine() {
	line := s.line
	s.line = s.line[:0]
	if isHeader(line) || (len(line) > 0 && (line[0] == ' ' || line[0] == '\t')) {
		if s.flags.Header {
			s.w.Write(line)
			s.midLine = line[len(line)-1] != '\n'
		}
		return
	}
	s.state = stateBody
	s.content(line)
}

// endContent shows what is left of the content and ends its last line.
func (s *shower) endContent() {
	if s.state == stateHeader && len(s.line) > 0 {
		s.headerLine()
	}
	s.endLine()
}

func (s *shower) endLine() {
	if s.midLine {
		s.w.WriteByte('\n')
		s.midLine = false
	}
}

// isHeader reports whether line starts with a header field name and a
// colon (RFC 5322 §2.2: printable ASCII but colon; Postfix also allows
// white space before the colon).
func isHeader(line []byte) bool {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] < 0x7f && line[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i < len(line) && line[i] == ':'
}

package sendmail

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// errHeaderTooLong is returned when a recipient header to extract from
// is longer than the limit (Postfix: "unable to extract recipients").
var errHeaderTooLong = errors.New("message header length exceeds safety limit")

// readError wraps a failure to read the input, as opposed to a failure
// to write the queue file.
type readError struct{ err error }

func (e *readError) Error() string { return "error reading input: " + e.err.Error() }

// hdrKind says what a header line means to -t.
type hdrKind int

const (
	hdrOther  hdrKind = iota
	hdrRcpt           // To, Cc, Bcc
	hdrResent         // Resent-To, Resent-Cc, Resent-Bcc
)

// copier turns the input of sendmail into queue file content, as
// Postfix's sendmail does:
//
//   - lines ending in CR LF (any number of CRs) end in LF
//     (sendmail_fix_line_endings = always);
//   - leading "From " lines (also ">From ") are dropped: they are mbox
//     separators, not headers;
//   - unless -i, a line holding only "." ends the input;
//   - with -t, recipients are collected from To:, Cc:, Bcc: or, when the
//     message has any, only from Resent-To:, Resent-Cc:, Resent-Bcc:, and
//     the Bcc: and Resent-Bcc: headers are left out of the message.
//
// Everything else is copied unchanged; a last line without a newline
// stays without one.
type copier struct {
	dotEnds     bool
	extract     bool
	headerLimit int

	rcpts, resentRcpts []string
	resent             bool

	inHeader bool
	kind     hdrKind
	dropping bool
	val      []byte
	err      error
}

// copyMessage copies in to out and returns the recipients extracted
// from the header (with extract). Write errors are returned as they are;
// read errors as *readError.
func copyMessage(in io.Reader, out io.Writer, dotEnds, extract bool, headerLimit int) ([]string, error) {
	c := &copier{dotEnds: dotEnds, extract: extract, headerLimit: headerLimit, inHeader: true}
	if err := c.run(in, out); err != nil {
		return nil, err
	}
	if c.resent {
		return c.resentRcpts, nil
	}
	return c.rcpts, nil
}

func (c *copier) run(in io.Reader, out io.Writer) error {
	br := bufio.NewReaderSize(in, 64<<10)
	bw := bufio.NewWriterSize(out, 64<<10)
	skipFrom := true
	midLine := false // the previous piece did not end a line
	for {
		piece, err := br.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if err != nil && err != io.EOF && !full {
			return &readError{err}
		}
		if len(piece) == 0 && err == io.EOF {
			break
		}
		complete := len(piece) > 0 && piece[len(piece)-1] == '\n'
		line := piece
		if complete {
			body := piece[:len(piece)-1]
			for len(body) > 0 && body[len(body)-1] == '\r' {
				body = body[:len(body)-1]
			}
			line = append(body, '\n') // body is a prefix of piece: no allocation
		}
		startOfLine := !midLine
		midLine = !complete
		if skipFrom && startOfLine {
			if bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
				// Drop the whole physical line, however long.
				for !complete && full {
					piece, err = br.ReadSlice('\n')
					full = errors.Is(err, bufio.ErrBufferFull)
					complete = len(piece) > 0 && piece[len(piece)-1] == '\n'
				}
				midLine = false
				if err == io.EOF {
					break
				}
				continue
			}
			skipFrom = false
		}
		if c.dotEnds && startOfLine && complete && len(line) == 2 && line[0] == '.' {
			break
		}
		if c.inHeader {
			if !c.header(line, startOfLine) {
				continue
			}
		}
		if _, werr := bw.Write(line); werr != nil {
			return werr
		}
		if c.err != nil {
			return c.err
		}
		if err == io.EOF {
			break
		}
	}
	c.endHeader()
	if c.err != nil {
		return c.err
	}
	return bw.Flush()
}

// header handles one piece of the header section and reports whether to
// write it.
func (c *copier) header(line []byte, startOfLine bool) bool {
	if !startOfLine {
		// The rest of an over-long line belongs to whatever it started.
		c.collect(line)
		return !c.dropping
	}
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && c.hasHeader() {
		c.collect(line)
		return !c.dropping
	}
	c.endHeader()
	name, ok := headerName(line)
	if !ok {
		// The empty line, or the first line that is not a header, starts
		// the body.
		c.inHeader = false
		return true
	}
	c.dropping = false
	c.kind = hdrOther
	c.val = c.val[:0]
	c.val = append(c.val, ':') // marks "a header is open"
	if !c.extract {
		return true
	}
	switch strings.ToLower(name) {
	case "bcc":
		c.kind, c.dropping = hdrRcpt, true
	case "to", "cc":
		c.kind = hdrRcpt
	case "resent-bcc":
		c.kind, c.dropping = hdrResent, true
	case "resent-to", "resent-cc":
		c.kind = hdrResent
	}
	if c.kind != hdrOther {
		c.collect(line[bytes.IndexByte(line, ':')+1:])
	}
	return !c.dropping
}

func (c *copier) hasHeader() bool { return len(c.val) > 0 }

func (c *copier) collect(p []byte) {
	if c.kind == hdrOther || c.err != nil {
		return
	}
	if c.headerLimit > 0 && len(c.val)+len(p) > c.headerLimit {
		c.err = errHeaderTooLong
		return
	}
	c.val = append(c.val, p...)
}

// endHeader extracts the recipients of the header just finished.
func (c *copier) endHeader() {
	if c.kind != hdrOther && c.err == nil {
		addrs := Addresses(string(c.val[1:]))
		if c.kind == hdrResent {
			c.resent = true
			c.resentRcpts = append(c.resentRcpts, addrs...)
		} else {
			c.rcpts = append(c.rcpts, addrs...)
		}
	}
	c.kind = hdrOther
	c.dropping = false
	c.val = c.val[:0]
}

// headerName returns the field name of a header line ("Name: value"):
// printable ASCII except colon (RFC 5322 §2.2), optionally followed by
// white space before the colon, as Postfix's is_header accepts.
func headerName(line []byte) (string, bool) {
	for i, b := range line {
		switch {
		case b == ':':
			if i == 0 {
				return "", false
			}
			return string(line[:i]), true
		case b == ' ' || b == '\t':
			if i == 0 {
				return "", false
			}
			j := i
			for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
				j++
			}
			if j < len(line) && line[j] == ':' {
				return string(line[:i]), true
			}
			return "", false
		case b < ' ' || b > '~':
			return "", false
		}
	}
	return "", false
}

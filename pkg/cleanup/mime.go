package cleanup

// The body as body_checks, mime_header_checks and nested_header_checks
// see it: a multipart body is followed from boundary to boundary; the
// headers of each part go to mime_header_checks (default $header_checks),
// the headers of an attached message/rfc822 to nested_header_checks
// (default $header_checks), and the other lines to body_checks, at most
// body_checks_size_limit bytes of each part. Boundary lines are checked
// by none. The scan runs only when one of those parameters is set.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"
)

// bodyScan is the MIME state of one message body.
type bodyScan struct {
	c     *Cleanup
	mc    *msgCtx
	write func([]byte) error
	// bounds is the stack of open multipart delimiters ("--boundary").
	bounds []string
	// inHeader: the lines are the header of a part (or, when nested, of an
	// attached message).
	inHeader bool
	nested   bool
	pend     []byte // the part header being read
	partCT   string // its Content-Type, as a whole header
	seen     int64  // body bytes of the current part given to body_checks
}

// scanActive says whether the body needs the scan.
func (c *Cleanup) scanActive() bool {
	return c.checks.body != nil || c.checks.mime != nil || c.checks.nested != nil
}

func newBodyScan(c *Cleanup, mc *msgCtx, write func([]byte) error) *bodyScan {
	s := &bodyScan{c: c, mc: mc, write: write}
	s.enter(mc.contentType)
	return s
}

// enter starts the body of a part whose Content-Type header is ct.
func (s *bodyScan) enter(ct string) {
	s.seen = 0
	typ, boundary := mediaType(ct)
	switch {
	case strings.HasPrefix(typ, "multipart/") && boundary != "":
		s.bounds = append(s.bounds, "--"+boundary)
	case typ == "message/rfc822":
		// The attached message starts with its own header.
		s.inHeader, s.nested, s.partCT = true, true, ""
	}
}

// line handles one body line (with its line ending, if any).
func (s *bodyScan) line(line []byte) error {
	if s.inHeader {
		switch {
		case len(bytes.TrimRight(line, "\r\n")) == 0:
			if err := s.flush(); err != nil {
				return err
			}
			s.inHeader = false
			ct := s.partCT
			s.partCT = ""
			if err := s.write(line); err != nil {
				return err
			}
			s.enter(ct)
			return nil
		case (line[0] == ' ' || line[0] == '\t') && len(s.pend) > 0:
			s.pend = append(s.pend, line...)
			return nil
		}
		if _, ok := headerName(line); ok {
			if err := s.flush(); err != nil {
				return err
			}
			s.pend = append(s.pend, line...)
			return nil
		}
		// Not a header: the part header ended without an empty line.
		if err := s.flush(); err != nil {
			return err
		}
		s.inHeader = false
		s.enter(s.partCT)
	}
	if len(s.bounds) > 0 && len(line) > 2 && line[0] == '-' && line[1] == '-' {
		t := string(bytes.TrimRight(line, "\r\n \t"))
		for i := len(s.bounds) - 1; i >= 0; i-- {
			switch t {
			case s.bounds[i] + "--":
				s.bounds = s.bounds[:i]
				s.seen = 0
				return s.write(line)
			case s.bounds[i]:
				s.bounds = s.bounds[:i+1]
				s.inHeader, s.nested, s.partCT = true, false, ""
				return s.write(line)
			}
		}
	}
	if s.c.checks.body != nil && s.seen < s.c.checks.bodyLimit {
		s.seen += int64(len(line))
		line = s.c.applyCheck(s.mc, s.c.checks.body, "body_checks", "body", strings.TrimRight(string(line), "\n"), line)
	}
	return s.write(line)
}

// flush checks and writes the part header held in pend.
func (s *bodyScan) flush() error {
	if len(s.pend) == 0 {
		return nil
	}
	out := s.pend
	if name, ok := headerName(out); ok && strings.EqualFold(name, "content-type") {
		s.partCT = string(out)
	}
	maps, title := s.c.checks.mime, "mime_header_checks"
	if s.nested {
		maps, title = s.c.checks.nested, "nested_header_checks"
	}
	if maps != nil {
		out = s.c.applyCheck(s.mc, maps, title, "header", headerKey(out), out)
	}
	err := s.write(out)
	s.pend = s.pend[:0]
	return err
}

// end finishes the scan at the end of the content.
func (s *bodyScan) end() error { return s.flush() }

// mediaType returns the lower-case media type and the boundary parameter
// of a whole Content-Type header; "" when there is none.
func mediaType(ct string) (typ, boundary string) {
	i := strings.IndexByte(ct, ':')
	if i < 0 {
		return "", ""
	}
	v := strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(ct[i+1:], "\r", ""), "\n", ""))
	t, params, err := mime.ParseMediaType(v)
	if err == nil {
		return t, params["boundary"]
	}
	// A malformed parameter list still names its type and, often, a usable
	// boundary.
	t = strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
	if j := strings.Index(strings.ToLower(v), "boundary="); j >= 0 {
		b := v[j+len("boundary="):]
		if strings.HasPrefix(b, `"`) {
			if k := strings.IndexByte(b[1:], '"'); k >= 0 {
				return t, b[1 : k+1]
			}
		}
		if k := strings.IndexAny(b, "; \t"); k >= 0 {
			b = b[:k]
		}
		return t, b
	}
	return t, ""
}

// scanBody feeds the rest of the body to scan line by line; a line
// longer than the reader's buffer goes in pieces.
func scanBody(br *bufio.Reader, scan *bodyScan) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
		if len(line) > 0 {
			if e := scan.line(line); e != nil {
				return e
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

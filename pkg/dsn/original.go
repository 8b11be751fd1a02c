package dsn

// This file reads the original message: as much of it as the notice
// returns, bounded by the size limit, with LF line endings.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"regexp"
)

type original struct {
	content     []byte // what the third part returns, LF line endings
	headersOnly bool   // content is the header block only
	unavailable bool   // there was no original to read
	messageID   string // the original's Message-ID, when well-formed
}

// readOriginal reads r. The whole message is kept when wantHeaders is false
// and it is at most limit bytes; otherwise only its header block, and of
// that only the whole fields within the first limit bytes. Reading stops
// after limit+1 bytes, or at the end of the headers when only they are
// wanted. CRLF becomes LF; a last line without a newline gets one.
func readOriginal(r io.Reader, wantHeaders bool, limit int64) (*original, error) {
	o := &original{headersOnly: wantHeaders}
	if r == nil {
		o.unavailable = true
		return o, nil
	}
	if limit <= 0 || limit == math.MaxInt64 {
		limit = math.MaxInt64 - 1
	}
	br := bufio.NewReader(io.LimitReader(r, limit+1))
	var (
		all        []byte // normalised content read so far
		read       int64  // raw bytes read
		inHeader   = true
		hdrEnd     int  // length of all that is whole header fields
		fieldStart = -1 // offset in all of the field being read
		over       bool // the original is larger than limit
	)
	for {
		line, err := br.ReadBytes('\n')
		read += int64(len(line))
		if len(line) > 0 && line[len(line)-1] != '\n' {
			read++ // the LF normalisation adds counts against the limit
		}
		if read > limit {
			over = true
		}
		if over && inHeader && fieldStart >= 0 && len(line) > 0 && line[0] != ' ' && line[0] != '\t' {
			// The line cut by the limit starts a new field or ends the
			// header block, so the field before it is whole.
			fieldStart = len(all)
		}
		if len(line) > 0 && !over {
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			line = append(line, '\n')
			if inHeader {
				body := line[:len(line)-1]
				switch {
				case len(body) > 0 && (body[0] == ' ' || body[0] == '\t') && fieldStart >= 0:
				case headerName.Match(body):
					fieldStart = len(all)
				default:
					inHeader = false
					hdrEnd = len(all)
				}
			}
			if inHeader || !wantHeaders {
				all = append(all, line...)
			}
		}
		if over || (!inHeader && wantHeaders) {
			break
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
	}
	if inHeader {
		hdrEnd = len(all)
		if over && fieldStart >= 0 {
			// The last field may go on beyond the limit: drop it whole.
			hdrEnd = fieldStart
		}
	}
	o.messageID = messageID(all[:hdrEnd])
	if over {
		o.headersOnly = true
	}
	if o.headersOnly {
		o.content = all[:hdrEnd]
	} else {
		o.content = all
	}
	return o, nil
}

// headerName matches the start of a header field: a field name of printable
// ASCII other than ':' (RFC 5322 §3.6.8), optional white space (obsolete
// syntax, §4.5), then ':'.
var headerName = regexp.MustCompile(`^[!-9;-~]+[ \t]*:`)

// msgIDSyntax is a conservative msg-id (RFC 5322 §3.6.4): angle brackets
// around printable ASCII without white space or more brackets.
var msgIDSyntax = regexp.MustCompile(`^<[!-;=?-~]+>$`)

// messageID returns the Message-ID of a header block when it is
// well-formed, unfolded, or "".
func messageID(hdr []byte) string {
	lines := bytes.SplitAfter(hdr, []byte("\n"))
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if len(l) < 11 || !bytes.EqualFold(l[:11], []byte("message-id:")) {
			continue
		}
		v := bytes.TrimSpace(l[11:])
		for j := i + 1; j < len(lines) && len(lines[j]) > 0 && (lines[j][0] == ' ' || lines[j][0] == '\t'); j++ {
			v = append(append([]byte{}, v...), bytes.TrimSpace(lines[j])...)
		}
		if len(v) <= maxWord && msgIDSyntax.Match(v) {
			return string(v)
		}
		return ""
	}
	return ""
}

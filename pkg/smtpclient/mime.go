// Content on the wire: CRLF line ends, dot-stuffing, and the 8BITMIME
// downgrade to quoted-printable.

package smtpclient

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// dotWriter turns message content into the DATA form (RFC 5321 §4.5.2):
// LF or CRLF line ends become CRLF, a line that starts with '.' gets one
// more, and Close adds the end-of-data line. It writes through a
// bufio.Writer and keeps its first error.
type dotWriter struct {
	w   *bufio.Writer
	bol bool // at the beginning of a line
	cr  bool // a '\r' ended the previous Write and is held back
	err error
}

func newDotWriter(w *bufio.Writer) *dotWriter { return &dotWriter{w: w, bol: true} }

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && d.err == nil {
		if d.cr {
			d.cr = false
			if p[0] != '\n' {
				d.w.WriteByte('\r')
				d.bol = false
			}
		}
		if d.bol && p[0] == '.' {
			d.w.WriteByte('.')
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			chunk := p
			if chunk[len(chunk)-1] == '\r' {
				chunk = chunk[:len(chunk)-1]
				d.cr = true
			}
			if len(chunk) > 0 {
				_, d.err = d.w.Write(chunk)
				d.bol = false
			}
			break
		}
		line := p[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		d.w.Write(line)
		_, d.err = d.w.WriteString("\r\n")
		d.bol = true
		p = p[i+1:]
	}
	if d.err != nil {
		return 0, d.err
	}
	return n, nil
}

// Close ends the last line if needed and writes the end-of-data line. It
// does not flush.
func (d *dotWriter) Close() error {
	if d.err != nil {
		return d.err
	}
	if d.cr {
		d.w.WriteByte('\r')
		d.bol = false
	}
	if !d.bol {
		d.w.WriteString("\r\n")
	}
	_, d.err = d.w.WriteString(".\r\n")
	return d.err
}

// maxMIMEDepth bounds multipart nesting during the downgrade.
const maxMIMEDepth = 20

// downgrade writes the message from r with every body part that holds
// 8-bit data in a 7bit, 8bit or binary (or absent) transfer encoding
// re-encoded as quoted-printable, which is what RFC 6152 §3 asks of a
// client whose server does not offer 8BITMIME. Multipart structure and
// boundaries are kept (preamble and epilogue are dropped); parts that are
// already 7-bit are copied as they are. Header fields are not changed
// except Content-Transfer-Encoding (and MIME-Version, added to a
// top-level message converted without one); 8-bit header text stays as it
// is, as Postfix does.
func downgrade(w io.Writer, r io.Reader) error {
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return err
	}
	return downgradeEntity(w, h, br, 0)
}

func downgradeEntity(w io.Writer, h textproto.Header, body io.Reader, depth int) error {
	mt, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	identity := cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"
	switch {
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < maxMIMEDepth && identity:
		if err := writeHeader(w, h, relabel(cte), false); err != nil {
			return err
		}
		b := params["boundary"]
		mr := textproto.NewMultipartReader(body, b)
		first := true
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			sep := "\r\n--" + b + "\r\n"
			if first {
				sep = sep[2:]
				first = false
			}
			if _, err := io.WriteString(w, sep); err != nil {
				return err
			}
			if err := downgradeEntity(w, p.Header, p, depth+1); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, "\r\n--"+b+"--\r\n")
		return err
	case mt == "message/rfc822" && depth < maxMIMEDepth && identity:
		if err := writeHeader(w, h, relabel(cte), false); err != nil {
			return err
		}
		br := bufio.NewReader(body)
		sub, err := textproto.ReadHeader(br)
		if err != nil {
			return err
		}
		return downgradeEntity(w, sub, br, depth+1)
	case identity:
		data, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if !has8bit(data) {
			if err := writeHeader(w, h, "", false); err != nil {
				return err
			}
			_, err := w.Write(data)
			return err
		}
		if err := writeHeader(w, h, "quoted-printable", depth == 0 && !h.Has("Mime-Version")); err != nil {
			return err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write(data); err != nil {
			return err
		}
		return qp.Close()
	default:
		if err := writeHeader(w, h, "", false); err != nil {
			return err
		}
		_, err := io.Copy(w, body)
		return err
	}
}

// relabel returns the transfer encoding a composite entity gets once its
// parts are 7-bit: "7bit" in place of 8bit or binary, else no change.
func relabel(cte string) string {
	if cte == "8bit" || cte == "binary" {
		return "7bit"
	}
	return ""
}

// writeHeader writes h in its original order and bytes, except that a
// non-empty cte replaces the Content-Transfer-Encoding field where it
// stands (or is added at the end), after a "MIME-Version: 1.0" when
// mimeVersion is set.
func writeHeader(w io.Writer, h textproto.Header, cte string, mimeVersion bool) error {
	done := cte == ""
	fs := h.Fields()
	for fs.Next() {
		if cte != "" && strings.EqualFold(fs.Key(), "Content-Transfer-Encoding") {
			if !done {
				if _, err := io.WriteString(w, "Content-Transfer-Encoding: "+cte+"\r\n"); err != nil {
					return err
				}
				done = true
			}
			continue
		}
		raw, err := fs.Raw()
		if err != nil {
			return err
		}
		if _, err := w.Write(raw); err != nil {
			return err
		}
	}
	if mimeVersion {
		if _, err := io.WriteString(w, "MIME-Version: 1.0\r\n"); err != nil {
			return err
		}
	}
	if !done {
		if _, err := io.WriteString(w, "Content-Transfer-Encoding: "+cte+"\r\n"); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

package dsn

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzWrite feeds arbitrary original content and recipient strings and
// checks that the notice always parses as a multipart/report with the three
// parts, one per-recipient block each, and the original intact in the third
// part: no content can end a part early or inject a field.
func FuzzWrite(f *testing.F) {
	f.Add([]byte(origMsg), "bob@example.com", "rfc822;bob@example.com", "host x said: 550 no", "smtp; 550 no", "mx.example.com", "alice@example.org", false, uint16(0), uint8(0))
	f.Add([]byte("A: b\n\n--4X3vqF3RdBz5Yqn.1726146423/mail.example.org--\n"), "x@y", "", "", "", "", "", false, uint16(0), uint8(0))
	f.Add([]byte("Subject: ü\r\n\r\nbody\r"), "jürgen@beispiel.de", "utf-8;jürgen@beispiel.de", "a\nb: c", "no-type", "", "álvaro@x", true, uint16(40), uint8(1))
	f.Add([]byte("\tcontinued\nX: y\n"), "a\r\nInjected: yes", "x;", strings.Repeat("w", 3000), ";", "h\x00", "\"q\"@x", false, uint16(10), uint8(2))
	f.Fuzz(func(t *testing.T, orig []byte, addr, orcpt, reason, diag, mta, sender string, utf8 bool, limit uint16, sel uint8) {
		n := baseNotice(Kind(sel % 4))
		n.Return = []string{"", ReturnFull, ReturnHeaders}[int(sel/3)%3]
		n.Postmaster = sel&0x40 != 0
		n.SMTPUTF8 = utf8
		n.SizeLimit = int64(limit)
		n.Sender = sender
		n.To = "postmaster@mail.example.org"
		n.EnvID = reason
		n.Recipients = []Recipient{
			{Addr: addr, Orig: reason, ORcpt: orcpt, Status: diag, Reason: reason, Diagnostic: diag, RemoteMTA: mta},
			{Addr: "fixed@example.com", Action: addr, Reason: mta},
		}
		var out bytes.Buffer
		err := Write(&out, n, bytes.NewReader(orig))
		if strings.TrimSpace(addr) == "" {
			if err == nil {
				t.Fatal("empty recipient address accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := parse(t, out.Bytes(), n)

		// The third part is the Return-Path line, then the original (or
		// its headers) with LF line endings, never anything else.
		rp, content, ok := bytes.Cut(p.part3, []byte("\n"))
		if !ok || !bytes.HasPrefix(rp, []byte("Return-Path: <")) || bytes.ContainsAny(rp, "\r\x00") {
			t.Fatalf("third part starts with %q", rp)
		}
		norm := normalise(orig)
		headersOnly := strings.HasSuffix(p.part3Type, "headers")
		switch {
		case !headersOnly:
			if n.SizeLimit > 0 && int64(len(orig)) > n.SizeLimit {
				t.Fatalf("%d bytes returned whole with a limit of %d", len(orig), n.SizeLimit)
			}
			if !bytes.Equal(content, norm) {
				t.Fatalf("returned message differs:\n%q\nwant\n%q", content, norm)
			}
		default:
			if !bytes.HasPrefix(norm, content) {
				t.Fatalf("returned headers are not a prefix of the original:\n%q\n%q", content, norm)
			}
			if n.SizeLimit > 0 && int64(len(content)) > n.SizeLimit {
				t.Fatalf("%d bytes of headers with a limit of %d", len(content), n.SizeLimit)
			}
		}
	})
}

// normalise is the test's own statement of the line-ending rule: every line
// loses one trailing CR and ends in LF.
func normalise(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	var out []byte
	lines := bytes.SplitAfter(b, []byte("\n"))
	for _, l := range lines {
		if len(l) == 0 {
			continue
		}
		l = bytes.TrimSuffix(l, []byte("\n"))
		l = bytes.TrimSuffix(l, []byte("\r"))
		out = append(out, l...)
		out = append(out, '\n')
	}
	return out
}

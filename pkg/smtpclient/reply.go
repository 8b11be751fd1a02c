// Server replies: reading and classifying them (RFC 5321 §4.2, RFC 3463).

package smtpclient

import (
	"bufio"
	"errors"
	"strings"
)

// Bounds on one reply. A server that sends more is broken or hostile.
const (
	maxReplyLine  = 4096 // bytes per line, CRLF included
	maxReplyLines = 200
)

// errMalformed is a reply that is not "DDD[ -]text".
var errMalformed = errors.New("malformed server reply")

// Reply is one server reply, possibly of several lines.
type Reply struct {
	Code  int
	Lines []string // each line as sent, code included, CRLF removed
}

// readReply reads one reply. A line longer than maxReplyLine is cut
// there (the rest is skipped); more than maxReplyLines lines, a line
// without a three-digit code, or a code outside 200-599 is malformed.
func readReply(br *bufio.Reader) (Reply, error) {
	var r Reply
	for {
		line, err := readLine(br)
		if err != nil {
			return r, err
		}
		if len(line) < 3 || !digit(line[0]) || !digit(line[1]) || !digit(line[2]) {
			return r, errMalformed
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if code < 200 || code > 599 {
			return r, errMalformed
		}
		if len(r.Lines) == 0 {
			r.Code = code
		}
		if len(r.Lines) == maxReplyLines {
			return r, errMalformed
		}
		r.Lines = append(r.Lines, line)
		if len(line) == 3 || line[3] != '-' {
			return r, nil
		}
	}
}

func digit(b byte) bool { return b >= '0' && b <= '9' }

// readLine reads one line without its line end, bounded by maxReplyLine.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(b) < maxReplyLine {
			n := min(len(frag), maxReplyLine-len(b))
			b = append(b, frag[:n]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	s := strings.TrimRight(string(b), "\r\n")
	return s, nil
}

// Class is the first digit of the code: 2, 3, 4 or 5.
func (r Reply) Class() int { return r.Code / 100 }

// Text is the reply as Postfix logs it: the lines joined with a space,
// continuation markers kept ("550-5.1.1 ... 550 5.1.1 ...").
func (r Reply) Text() string {
	return printable(strings.Join(r.Lines, " "))
}

// Enhanced returns the RFC 3463 status code of the reply: the one it
// starts with when its class agrees with the reply code, else one made
// from the code's class (Postfix does the same: "4.0.0", "5.0.0").
func (r Reply) Enhanced() string {
	if len(r.Lines) > 0 && len(r.Lines[0]) > 4 {
		if d := enhancedPrefix(r.Lines[0][4:]); d != "" && int(d[0]-'0') == r.Class() {
			return d
		}
	}
	switch r.Class() {
	case 2:
		return "2.0.0"
	case 4:
		return "4.0.0"
	default:
		return "5.0.0"
	}
}

// enhancedPrefix returns the "c.s.d" at the start of s (class 2, 4 or 5,
// subject 1-3 digits, detail 1-3 digits), or "".
func enhancedPrefix(s string) string {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return ""
	}
	i := 2
	for part := 0; part < 2; part++ {
		j := i
		for j < len(s) && digit(s[j]) && j-i < 3 {
			j++
		}
		if j == i {
			return ""
		}
		if part == 0 {
			if j >= len(s) || s[j] != '.' {
				return ""
			}
			i = j + 1
			continue
		}
		if j < len(s) && s[j] != ' ' {
			return ""
		}
		return s[:j]
	}
	return ""
}

// printable replaces control and non-ASCII bytes, which must not reach a
// log line or a bounce unescaped, with '?'.
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] < ' ' || b[j] > '~' {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return s
}

// parseEHLO reads the keywords of an EHLO/LHLO reply (RFC 5321 §4.1.1.1)
// into upper-case keyword → parameters.
func parseEHLO(r Reply) map[string]string {
	ext := make(map[string]string, len(r.Lines))
	for _, l := range r.Lines[1:] {
		if len(l) <= 4 {
			continue
		}
		kw, params, _ := strings.Cut(strings.TrimSpace(l[4:]), " ")
		// Some servers still announce AUTH=LOGIN (pre-RFC 4954 syntax).
		if k, v, ok := strings.Cut(kw, "="); ok && strings.EqualFold(k, "AUTH") {
			kw, params = k, strings.TrimSpace(v+" "+params)
		}
		kw = strings.ToUpper(kw)
		if old, ok := ext[kw]; ok && kw == "AUTH" {
			params = old + " " + params
		}
		ext[kw] = strings.TrimSpace(params)
	}
	return ext
}

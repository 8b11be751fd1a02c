package dsn

// This file holds the text hygiene: masking, wrapping and quoting of the
// strings that callers and remote servers supply.

import (
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxWord bounds an unbreakable run of text on one line, so that no line of
// the notice exceeds RFC 5322's 998 characters (§2.1.1) whatever a remote
// server said.
const maxWord = 900

// clean masks what must not reach a header or a text line: every control
// character (CR and LF above all, which would start a new field or line) and,
// unless utf8ok, every non-ASCII byte, each shown as '?'. A tab becomes a
// space. Invalid UTF-8 is masked too.
func clean(s string, utf8ok bool) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\t':
			b.WriteByte(' ')
		case r < 0x80 && (r < 0x20 || r == 0x7f):
			b.WriteByte('?')
		case r < 0x80:
			b.WriteByte(byte(r))
		case utf8ok && r != utf8.RuneError && !unicode.IsControl(r) &&
			r != '\u2028' && r != '\u2029':
			b.WriteString(s[i : i+size])
		default:
			b.WriteByte('?')
		}
		i += size
	}
	return b.String()
}

// maskToken keeps the characters of an RFC 2045 token (an address type,
// a diagnostic type, a mail name) and drops the rest.
func maskToken(s string) string {
	return strings.Map(func(r rune) rune {
		if r > ' ' && r < 0x7f && !strings.ContainsRune("()<>@,;:\\\"/[]?=", r) {
			return r
		}
		return -1
	}, s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// writeWrapped writes s as Postfix's line_wrap does for bounce reports:
// lines of at most wrapWidth bytes broken at spaces, the lines after the
// first indented by wrapIndent. A word longer than the line stays whole up
// to maxWord bytes, and is split (at a rune boundary) beyond that.
func writeWrapped(buf io.StringWriter, s string) {
	width := wrapWidth
	indent := ""
	for {
		s = strings.TrimLeft(s, " ")
		if len(s) <= width {
			buf.WriteString(indent + strings.TrimRight(s, " ") + "\n")
			return
		}
		cut := strings.LastIndexByte(s[:width+1], ' ')
		if cut <= 0 {
			// No space in reach: the first word is longer than the line.
			cut = strings.IndexByte(s, ' ')
			if cut < 0 {
				cut = len(s)
			}
			if cut > maxWord {
				cut = maxWord
				for cut > 0 && !utf8.RuneStart(s[cut]) {
					cut--
				}
			}
		}
		line := strings.TrimRight(s[:cut], " ")
		buf.WriteString(indent + line + "\n")
		s = s[cut:]
		if strings.TrimLeft(s, " ") == "" {
			return
		}
		width = wrapWidth - wrapIndent
		indent = "    "
	}
}

// quoteAddr writes addr for the To: header, quoting a local part that is
// not a dot-atom (RFC 5322 §3.4.1), as Postfix's quote_822_local.
func quoteAddr(addr string) string {
	local, domain := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain = addr[:i], addr[i:]
	}
	if dotAtom(local) {
		return addr
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if local[i] == '"' || local[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String() + domain
}

func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 0x80: // RFC 6532 §3.2 UTF8-non-ascii in atext
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r):
		default:
			return false
		}
	}
	return true
}

// bchars maps s onto the characters RFC 2046 §5.1.1 allows in a boundary,
// less space, replacing the others with '_'.
func bchars(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		case strings.ContainsRune("'()+_,-./:=?", r):
			return r
		}
		return '_'
	}, s)
}

// Package address holds the small, pure operations on RFC 5321 mailbox
// addresses that every daemon needs: splitting into local part and domain,
// case folding of the domain, recipient-delimiter extensions, and the
// angle-bracket form used in logs and headers.
//
// It is a leaf package: no configuration, no I/O.
package address

import (
	"strings"
)

// Split returns the local part and the domain of addr, split at the last
// '@'. An address without '@' has an empty domain.
func Split(addr string) (local, domain string) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr, ""
	}
	return addr[:i], addr[i+1:]
}

// Domain returns the domain of addr folded to lower case, without a
// trailing dot.
func Domain(addr string) string {
	_, d := Split(addr)
	return FoldDomain(d)
}

// FoldDomain lower-cases a domain and strips one trailing dot.
func FoldDomain(d string) string {
	d = strings.TrimSuffix(d, ".")
	return strings.ToLower(d)
}

// Join puts a local part and a domain back together; an empty domain gives
// the bare local part.
func Join(local, domain string) string {
	if domain == "" {
		return local
	}
	return local + "@" + domain
}

// StripExtension removes a recipient-delimiter extension from a local
// part: with delimiters "+", "user+foo" becomes "user" and the extension
// "foo". Each character of delims is a delimiter, as Postfix's
// recipient_delimiter. The special local parts of Postfix that start with a
// delimiter-like character (owner-*, *-request) are not treated specially
// here; callers that need that do it themselves.
func StripExtension(local, delims string) (base, ext string) {
	if delims == "" {
		return local, ""
	}
	i := strings.IndexAny(local, delims)
	if i <= 0 {
		return local, ""
	}
	return local[:i], local[i+1:]
}

// Bracket returns "<addr>", the form Postfix logs (from=<>, to=<a@b>).
func Bracket(addr string) string {
	return "<" + addr + ">"
}

// Unbracket strips one pair of surrounding angle brackets and any white
// space around the address, as found in MAIL FROM:<a@b> arguments.
func Unbracket(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = s[1 : len(s)-1]
	}
	return s
}

// IsNullSender reports whether s is the null reverse-path.
func IsNullSender(s string) bool {
	return s == "" || s == "<>"
}

// Valid reports whether addr is acceptable as an envelope address: not
// longer than RFC 5321 §4.5.3.1.3 allows, no control characters, no white
// space, and at most one unquoted '@' before the domain.
func Valid(addr string) bool {
	if len(addr) > 256 {
		return false
	}
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		if c < 0x20 || c == 0x7f || c == ' ' || c == '<' || c == '>' {
			return false
		}
	}
	local, domain := Split(addr)
	if strings.ContainsRune(addr, '@') && (local == "" || domain == "") {
		return false
	}
	return len(local) <= 64*4 && len(domain) <= 255
}

// DupFilter remembers addresses, case-insensitively, up to a limit, as
// Postfix's duplicate filter (been_here) bounded by
// duplicate_filter_limit: once it holds limit addresses it remembers no
// more, so later duplicates are let through rather than memory growing
// without bound. A limit of 0 means no limit.
type DupFilter struct {
	limit int
	m     map[string]bool
}

// NewDupFilter returns a filter remembering at most limit addresses.
func NewDupFilter(limit int) *DupFilter {
	return &DupFilter{limit: limit, m: map[string]bool{}}
}

// Seen reports whether addr was seen before, and remembers it if there
// is room.
func (f *DupFilter) Seen(addr string) bool {
	key := strings.ToLower(addr)
	if f.m[key] {
		return true
	}
	if f.limit <= 0 || len(f.m) < f.limit {
		f.m[key] = true
	}
	return false
}

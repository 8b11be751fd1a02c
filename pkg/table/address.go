package table

import (
	"errors"
	"os"
	"strings"
)

// AddressOptions control LookupAddress.
type AddressOptions struct {
	// Delimiter is recipient_delimiter: a set of characters, any of which
	// separates a local part from its extension. Empty means no extensions.
	Delimiter string
	// LocalDomain says the address's domain is local ($myorigin,
	// $mydestination, $inet_interfaces, $proxy_interfaces), which adds the
	// bare "user+ext" and "user" queries.
	LocalDomain bool
	// NoOwnerRequestSpecial turns off owner_request_special: by default,
	// when Delimiter contains '-', "owner-foo" and "foo-request" are not
	// split.
	NoOwnerRequestSpecial bool
}

// SplitLocal splits a local part into user and extension at the first
// character of delimiter, as Postfix does: "postmaster", "mailer-daemon"
// and "double-bounce" are never split, "owner-x" and "x-request" are not
// split when delimiter contains '-' (unless noOwnerRequest), and a split
// that would leave an empty user is not made. ext includes the delimiter
// character found ("+foo"), so that user+ext is the original. ok is false
// when nothing was split.
func SplitLocal(local, delimiter string, noOwnerRequest bool) (user, ext string, ok bool) {
	if delimiter == "" || local == "" {
		return local, "", false
	}
	switch strings.ToLower(local) {
	case "postmaster", "mailer-daemon", "double-bounce":
		return local, "", false
	}
	if !noOwnerRequest && strings.Contains(delimiter, "-") {
		l := strings.ToLower(local)
		if strings.HasPrefix(l, "owner-") || (len(l) > len("-request") && strings.HasSuffix(l, "-request")) {
			return local, "", false
		}
	}
	i := strings.IndexAny(local, delimiter)
	if i <= 0 {
		return local, "", false
	}
	return local[:i], local[i:], true
}

// LookupAddress searches t for a full address in the order of virtual(5)
// and canonical(5): user+ext@domain, user@domain, then (only if
// o.LocalDomain) user+ext and user, then @domain. Pattern tables (regexp,
// pcre, cidr, and unions or pipes containing one) are searched with the
// full address only, as Postfix does; with a Maps, the partial forms go to
// its fixed-key members only. An address without '@' is searched
// as user+ext, then user. The first error stops the search.
func LookupAddress(t Table, addr string, o AddressOptions) (string, bool, error) {
	v, _, ok, err := LookupAddressExt(t, addr, o)
	return v, ok, err
}

// LookupAddressExt is LookupAddress that also returns the extension (with
// its delimiter, "+foo") when the match was found with the extension
// stripped, for propagate_unmatched_extensions; ext is "" when the key that
// matched still had the extension.
func LookupAddressExt(t Table, addr string, o AddressOptions) (value, ext string, found bool, err error) {
	local, domain, hasDomain := addr, "", false
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain, hasDomain = addr[:i], addr[i+1:], true
	}
	if v, ok, err := t.Lookup(addr); err != nil || ok {
		return v, "", ok, err
	}
	if t = fixedPart(t); t == nil {
		return "", "", false, nil
	}
	user, ext, split := SplitLocal(local, o.Delimiter, o.NoOwnerRequestSpecial)
	if split {
		key := user
		if hasDomain {
			key = user + "@" + domain
		}
		if v, ok, err := t.Lookup(key); err != nil || ok {
			return v, ext, ok, err
		}
	}
	if !hasDomain {
		return "", "", false, nil
	}
	if o.LocalDomain {
		if v, ok, err := t.Lookup(local); err != nil || ok {
			return v, "", ok, err
		}
		if split {
			if v, ok, err := t.Lookup(user); err != nil || ok {
				return v, ext, ok, err
			}
		}
	}
	v, ok, err := t.Lookup("@" + domain)
	return v, "", ok, err
}

// LookupLocal searches an aliases table for a local part in the order of
// aliases(5): user+ext, then user. Pattern tables get only the first query.
func LookupLocal(t Table, local string, delimiter string) (string, bool, error) {
	if v, ok, err := t.Lookup(local); err != nil || ok {
		return v, ok, err
	}
	if t = fixedPart(t); t == nil {
		return "", false, nil
	}
	if user, _, split := SplitLocal(local, delimiter, false); split {
		return t.Lookup(user)
	}
	return "", false, nil
}

// SplitAliasValue splits the right-hand side of an aliases(5) entry (or a
// .forward or :include: line) on commas outside double quotes. Each element
// is trimmed; an element that is one quoted string ("|cmd arg", "/file
// name") is unquoted, backslash escapes resolved; an element only partly
// quoted ("a b"@example.com) is kept as written. Empty elements are
// dropped.
func SplitAliasValue(v string) []string {
	var out []string
	start := 0
	inQuotes := false
	add := func(s string) {
		s = strings.TrimSpace(s)
		if s == "" {
			return
		}
		if u, ok := unquoteWhole(s); ok {
			out = append(out, u)
			return
		}
		out = append(out, s)
	}
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			inQuotes = !inQuotes
		case ',':
			if !inQuotes {
				add(v[start:i])
				start = i + 1
			}
		}
	}
	if start <= len(v) {
		add(v[start:])
	}
	return out
}

// unquoteWhole unquotes s if it is exactly one double-quoted string.
func unquoteWhole(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s)-1:
			i++
			b.WriteByte(s[i])
		case c == '\\':
			// A backslash right before the closing quote escapes it, so
			// the string does not end there.
			return "", false
		case c == '"':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// ReadInclude reads a :include: file: destinations in the syntax of an
// aliases(5) right-hand side, with comments, blank lines and continuation
// lines; each logical line may hold several destinations separated by
// commas. Syntax errors name the file and line.
func ReadInclude(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseInclude(path, string(data))
}

func parseInclude(path, data string) ([]string, error) {
	lines, err := logicalLines(path, data)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, l := range lines {
		if strings.Count(stripEscaped(l.text), `"`)%2 != 0 {
			errs = append(errs, &SyntaxError{path, l.no, `unbalanced '"'`})
			continue
		}
		out = append(out, SplitAliasValue(l.text)...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// stripEscaped removes backslash-escaped characters, to count quotes.
func stripEscaped(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

package cleanup

// Header processing that needs a whole logical header (a header line and
// its continuation lines): address rewriting in sender and recipient
// headers. copyContent buffers only the headers some configured feature
// needs; the others stream through untouched.

import (
	"bytes"
	"strings"

	"postern/pkg/handoff"
)

// msgCtx is what header processing knows about the message.
type msgCtx struct {
	id         string
	sender     string
	fullName   string // for an added From: (sendmail -F)
	addMissing bool
	// local is the local rewrite context: header addresses are qualified
	// as envelope addresses are (append_at_myorigin, append_dot_mydomain).
	local bool
	// remoteDomain is remote_header_rewrite_domain for a remote client:
	// bare names in its headers get @remoteDomain.
	remoteDomain string
	// rewriteErr is the first address rewriting failure (a lookup error):
	// the message is deferred.
	rewriteErr error
	// client names the message's origin in the checks' log lines.
	client checkClient
	// The actions of header_checks and body_checks.
	reject   *handoff.Result
	discard  bool
	hold     bool
	redirect string
	filter   string
	// contentType is the message's Content-Type header, kept for the
	// MIME scan of the body (mime.go).
	contentType string
}

// qualifyHdr says header addresses are qualified in this context.
func (mc *msgCtx) qualifyHdr() bool { return mc.local || mc.remoteDomain != "" }

// addrHeaderClass returns the address class of a header (lower-case
// name), 0 if it carries no addresses cleanup rewrites.
func addrHeaderClass(name string) int {
	switch name {
	case "from", "sender", "reply-to", "errors-to", "return-receipt-to",
		"resent-from", "resent-sender", "resent-reply-to", "disposition-notification-to":
		return classHdrSender
	case "to", "cc", "bcc", "apparently-to", "resent-to", "resent-cc", "resent-bcc":
		return classHdrRcpt
	}
	return 0
}

// wantWhole says whether copyContent must buffer the header name.
func (c *Cleanup) wantWhole(name string, mc *msgCtx) bool {
	return c.checks.header != nil || c.dropHeaders[name] || ((c.hdrRewrite || mc.qualifyHdr()) && addrHeaderClass(name) != 0) ||
		(name == "content-type" && c.scanActive())
}

// processHeader returns what to write for one whole header (with its
// line endings), nil to drop it. As in Postfix: header_checks first, then
// message_drop_headers, then address rewriting of the header as it came.
func (c *Cleanup) processHeader(mc *msgCtx, name string, whole []byte) []byte {
	var prefix []byte
	if name == "content-type" && mc.contentType == "" {
		mc.contentType = string(whole)
	}
	if c.checks.header != nil {
		out := c.applyCheck(mc, c.checks.header, "header_checks", "header", headerKey(whole), whole)
		switch {
		case out == nil:
			return nil
		case len(out) > len(whole) && string(out[len(out)-len(whole):]) == string(whole):
			prefix = out[:len(out)-len(whole)] // PREPEND
		case string(out) != string(whole):
			return out // REPLACE: the new header is not processed further
		}
	}
	if c.dropHeaders[name] {
		return prefix
	}
	if class := addrHeaderClass(name); class != 0 && (c.hdrRewrite || mc.qualifyHdr()) {
		whole = c.rewriteHeaderAddrs(mc, class, whole)
	}
	if prefix != nil {
		return append(prefix, whole...)
	}
	return whole
}

// rewriteHeaderAddrs rewrites each address of an address header.
func (c *Cleanup) rewriteHeaderAddrs(mc *msgCtx, class int, whole []byte) []byte {
	colon := bytes.IndexByte(whole, ':')
	if colon < 0 {
		return whole
	}
	if !c.hdrRewrite && bytes.Count(whole[colon+1:], []byte("@")) > bytes.Count(whole[colon+1:], []byte(",")) {
		// Local context only, and every element has a domain: nothing to
		// qualify. This keeps plain local submissions cheap.
		return whole
	}
	value := string(whole[colon+1:])
	changed := false
	out := rewriteAddrList(value, func(a string) string {
		n := a
		if mc.local {
			n = c.qualify(n)
		} else if mc.remoteDomain != "" && !strings.ContainsRune(n, '@') {
			n += "@" + mc.remoteDomain
		}
		if c.hdrRewrite {
			r, err := c.rewrite(mc.id, n, class)
			if err != nil {
				if mc.rewriteErr == nil {
					mc.rewriteErr = err
				}
				return a
			}
			n = r
		}
		if n != a {
			changed = true
		}
		return n
	})
	if !changed {
		return whole
	}
	return append(whole[:colon+1:colon+1], out...)
}

// rewriteAddrList calls f on each address of an RFC 5322 address list
// (address-list, mailbox-list, groups, obsolete routes) and returns the
// list with each address replaced by f's result; display names, comments
// and folding stay as they are.
func rewriteAddrList(v string, f func(string) string) string {
	type span struct{ start, end int }
	var spans []span
	start, end := -1, -1
	hasAngle := false
	inQuote := false
	comment := 0
	endElem := func() {
		if !hasAngle && start >= 0 && end > start {
			spans = append(spans, span{start, end})
		}
		start, end, hasAngle = -1, -1, false
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch {
		case inQuote:
			if ch == '\\' {
				i++
			} else if ch == '"' {
				inQuote = false
			}
			end = min(i+1, len(v))
		case comment > 0:
			switch ch {
			case '\\':
				i++
			case '(':
				comment++
			case ')':
				comment--
			}
		case ch == '"':
			inQuote = true
			if start < 0 {
				start = i
			}
			end = i + 1
		case ch == '(':
			comment = 1
		case ch == '<':
			j := i + 1
			q := false
			for ; j < len(v); j++ {
				if q {
					if v[j] == '\\' {
						j++
					} else if v[j] == '"' {
						q = false
					}
					continue
				}
				if v[j] == '"' {
					q = true
				} else if v[j] == '>' {
					break
				}
			}
			if j >= len(v) {
				return v // unbalanced: leave the header alone
			}
			s, e := i+1, j
			for s < e && (v[s] == ' ' || v[s] == '\t') {
				s++
			}
			for e > s && (v[e-1] == ' ' || v[e-1] == '\t') {
				e--
			}
			// A source route (@a,@b:user@c) stays; the address follows it.
			if s < e && v[s] == '@' {
				if k := strings.IndexByte(v[s:e], ':'); k >= 0 {
					s += k + 1
				}
			}
			if s < e {
				spans = append(spans, span{s, e})
			}
			hasAngle = true
			i = j
		case ch == ':' && !hasAngle:
			// A group: what came before was its display name.
			start, end = -1, -1
		case ch == ',' || ch == ';':
			endElem()
		case ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n':
		default:
			if start < 0 {
				start = i
			}
			end = i + 1
		}
	}
	endElem()
	if len(spans) == 0 {
		return v
	}
	var b strings.Builder
	last := 0
	for _, s := range spans {
		b.WriteString(v[last:s.start])
		b.WriteString(f(v[s.start:s.end]))
		last = s.end
	}
	b.WriteString(v[last:])
	return b.String()
}

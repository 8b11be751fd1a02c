package cleanup

// header_checks and body_checks (header_checks(5)): each logical header
// (continuation lines joined, line breaks removed) is looked up in
// header_checks, each body line in body_checks, and the result is an
// action (the headers of MIME parts and attached messages go to
// mime_header_checks and nested_header_checks, see mime.go):
//
//	REJECT [text]      refuse the message: 5.7.1 and the text, or
//	                   "message content rejected"
//	DISCARD [text]     claim delivery, drop the message
//	WARN [text]        log a warning line
//	INFO [text]        log an info line
//	HOLD [text]        queue the message in hold/
//	IGNORE             delete the header or line
//	PREPEND text       insert text before the header or line
//	REPLACE text       replace the header or line with text
//	REDIRECT addr      send the message to addr instead of its recipients
//	FILTER tr:dest     record a content filter in the envelope ("filter")
//	DUNNO, OK          nothing
//
// After REJECT or DISCARD no further checks are made. The last REDIRECT
// and the last FILTER win, as in Postfix. Found in header_checks, they
// change the envelope, which is written once the header is complete:
// the recipients are replaced by the redirect address, the filter is the
// envelope attribute "filter" (overriding the content_filter of the
// receiving process). Found later (body_checks, or the MIME header checks
// of the body), they are recorded after the content, as Postfix records
// them in its extracted segment (lateActions): the filter as an
// extracted-segment attribute that overrides the envelope's, the
// redirect by marking every envelope recipient Delivered (discarded on
// purpose) and adding the redirect address as an extracted recipient.
// Either way qmgr delivers to the redirect address only, through the
// filter if there is one. The redirect recipient keeps the original
// recipient and DSN parameters of the first recipient, as Postfix's qmgr
// delivers a redirected message through the first recipient record.

import (
	"cmp"
	"strings"

	"postern/pkg/handoff"
	"postern/pkg/queue"
	"postern/pkg/table"
)

// checks holds the check tables; nil tables are not configured.
type checks struct {
	header, body, mime, nested *table.Maps
	bodyLimit                  int64
}

// checkClient is what the log lines of the checks name.
type checkClient struct {
	name, addr, helo, proto, from, to string
}

// applyCheck looks key up in maps and carries out the action. It returns
// the replacement for the header or line (with its line ending), the
// original when nothing changes, nil to delete it. class is "header" or
// "body".
func (c *Cleanup) applyCheck(mc *msgCtx, maps *table.Maps, title, class, key string, orig []byte) []byte {
	if mc.reject != nil || mc.discard {
		return orig
	}
	v, found, err := maps.Lookup(key)
	if err != nil {
		c.log.Warning("%s: %s map lookup problem -- message not accepted, try again later", mc.id, title)
		if mc.rewriteErr == nil {
			mc.rewriteErr = errDefer
		}
		return orig
	}
	if !found {
		return orig
	}
	verb, text := v, ""
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		verb, text = v[:i], strings.TrimSpace(v[i+1:])
	}
	switch strings.ToUpper(verb) {
	case "REJECT":
		dsn, msg := "5.7.1", "message content rejected"
		if text != "" {
			msg = text
			if d, rest, ok := splitDSN(text); ok && d[0] == '5' {
				dsn, msg = d, rest
			}
		}
		c.logCheck(mc, "reject", class, key, dsn+" "+msg)
		mc.reject = &handoff.Result{Status: handoff.PermFail, DSN: dsn, Text: msg}
	case "DISCARD":
		c.logCheck(mc, "discard", class, key, text)
		mc.discard = true
	case "WARN":
		c.logCheck(mc, "warning", class, key, text)
	case "INFO":
		c.logCheck(mc, "info", class, key, text)
	case "HOLD":
		c.logCheck(mc, "hold", class, key, text)
		mc.hold = true
	case "IGNORE":
		return nil
	case "PREPEND":
		if text == "" {
			c.log.Warning("%s: %s map: PREPEND action without text", mc.id, title)
			return orig
		}
		return append([]byte(text+"\n"), orig...)
	case "REPLACE":
		if text == "" {
			c.log.Warning("%s: %s map: REPLACE action without text", mc.id, title)
			return orig
		}
		return []byte(text + "\n")
	case "REDIRECT", "FILTER":
		if text == "" {
			c.log.Warning("%s: %s map: %s action without argument", mc.id, title, strings.ToUpper(verb))
			return orig
		}
		if strings.EqualFold(verb, "REDIRECT") {
			c.logCheck(mc, "redirect", class, key, text)
			mc.redirect = text
		} else {
			if !strings.Contains(text, ":") {
				c.log.Warning("%s: %s map: FILTER action without transport:destination: %s", mc.id, title, text)
				return orig
			}
			c.logCheck(mc, "filter", class, key, text)
			mc.filter = text
		}
	case "DUNNO", "OK":
	default:
		c.log.Warning("%s: unknown command in %s map: %s", mc.id, title, verb)
	}
	return orig
}

// attrFilter is the queue file attribute naming the content filter.
const attrFilter = "filter"

// attrTrace is the queue file attribute that asks qmgr for a delivery
// status report of the first delivery attempt (sendmail -v), as Postfix's
// trace_flags record with DEL_REQ_FLAG_RECORD.
const attrTrace = "trace"

// redirected is the recipient that replaces the message's recipients after
// a REDIRECT to addr; first is the first of them.
func (c *Cleanup) redirected(first queue.Recipient, addr string) queue.Recipient {
	orig := cmp.Or(first.Orig, first.Addr)
	if !c.enableOrig {
		orig = ""
	}
	return queue.Recipient{Addr: c.qualify(addr), Orig: orig, Notify: first.Notify, ORcpt: first.ORcpt, Status: queue.Pending}
}

// lateActions records a FILTER or REDIRECT found after the envelope was
// written (envRedirect and envFilter are what it holds): see the top of
// this file.
func (c *Cleanup) lateActions(w *queue.Writer, env *queue.Envelope, mc *msgCtx, envRedirect, envFilter string) error {
	if mc.filter != envFilter {
		if err := w.ExtractedAttr(attrFilter, mc.filter); err != nil {
			return err
		}
	}
	if mc.redirect != envRedirect {
		for i := range env.Recipients {
			if err := w.SetEnvelopeStatus(i, queue.Delivered); err != nil {
				return err
			}
		}
		if err := w.AddRecipient(c.redirected(env.Recipients[0], mc.redirect)); err != nil {
			return err
		}
	}
	return nil
}

// splitDSN splits "5.7.1 text" into the enhanced status code and text.
func splitDSN(s string) (dsn, rest string, ok bool) {
	i := strings.IndexByte(s, ' ')
	if i < 0 {
		i = len(s)
	}
	d := s[:i]
	parts := strings.Split(d, ".")
	if len(parts) != 3 {
		return "", s, false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return "", s, false
		}
	}
	if d[0] != '2' && d[0] != '4' && d[0] != '5' {
		return "", s, false
	}
	return d, strings.TrimSpace(s[i:]), true
}

// logCheck logs a check's action as Postfix's cleanup does: "ID: ACTION:
// header TEXT from name[addr]; from=<s> to=<r> proto=P helo=<h>: reason",
// with "from local" for a local submission, TEXT cut at 200 characters and
// ": reason" only when there is one.
func (c *Cleanup) logCheck(mc *msgCtx, action, class, key, reason string) {
	cl := mc.client
	var b strings.Builder
	b.WriteString(mc.id)
	b.WriteString(": ")
	b.WriteString(action)
	b.WriteString(": ")
	b.WriteString(class)
	b.WriteByte(' ')
	if len(key) > 200 {
		key = key[:200]
	}
	b.WriteString(key)
	b.WriteString(" from ")
	if cl.addr == "" {
		b.WriteString("local")
	} else {
		name := cl.name
		if name == "" {
			name = "unknown"
		}
		b.WriteString(name + "[" + cl.addr + "]")
	}
	b.WriteString("; from=<" + cl.from + ">")
	if cl.to != "" {
		b.WriteString(" to=<" + cl.to + ">")
	}
	if cl.proto != "" {
		b.WriteString(" proto=" + cl.proto)
	}
	if cl.helo != "" {
		b.WriteString(" helo=<" + cl.helo + ">")
	}
	if reason != "" {
		b.WriteString(": " + reason)
	}
	c.log.Printf("%s", b.String())
}

// headerKey is the lookup key of a whole header: its lines joined, the
// line breaks removed.
func headerKey(whole []byte) string {
	s := string(whole)
	s = strings.TrimRight(s, "\n")
	return strings.ReplaceAll(s, "\n", "")
}

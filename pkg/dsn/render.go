package dsn

// This file renders the three parts and the top-level header.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Postfix wraps report lines at 79 columns and indents what follows by 4
// (bounce_notify_util.c); the indent also makes a wrapped field a valid
// folded header field (RFC 5322 §2.2.3).
const (
	wrapWidth  = 79
	wrapIndent = 4
)

type builder struct {
	n        *Notice
	mailName string
	host     string
	date     time.Time
}

func newBuilder(n *Notice) *builder {
	b := &builder{n: n, mailName: n.MailName, date: n.Date}
	if b.mailName == "" {
		b.mailName = DefaultMailName
	}
	b.mailName = maskToken(b.mailName)
	b.host = clean(strings.TrimSpace(n.Hostname), false)
	if b.date.IsZero() {
		b.date = time.Now()
	}
	return b
}

// headersOnly says whether the third part holds the headers of the
// original rather than all of it, before SizeLimit is applied.
func (b *builder) headersOnly() bool {
	switch strings.ToUpper(b.n.Return) {
	case ReturnHeaders:
		return true
	case ReturnFull:
		return false
	}
	// Postfix: bounce_notify_service returns the full message unless
	// RET=HDRS; bounce_warn_service and bounce_trace_service send headers.
	return b.n.Kind != Failure
}

func (b *builder) subject() string {
	switch b.n.Kind {
	case Delay:
		if b.n.Postmaster {
			return "Postmaster Warning: Delayed Mail"
		}
		return "Delayed Mail (still being retried)"
	case Success:
		return "Successful Mail Delivery Report"
	case Trace:
		return "Mail Delivery Status Report"
	}
	if b.n.Postmaster {
		return "Postmaster Copy: Undelivered Mail"
	}
	return "Undelivered Mail Returned to Sender"
}

// boilerplate is the text of Postfix's built-in templates (bounce(5)).
func (b *builder) boilerplate() []string {
	head := []string{"This is the mail system at host " + b.host + ".", ""}
	tail := []string{
		"For further assistance, please send mail to postmaster.",
		"",
		"If you do so, please include this problem report. You can",
		"delete your own text from the attached returned message.",
		"",
		"                   The mail system",
	}
	switch b.n.Kind {
	case Delay:
		hours := int64(b.n.DelayWarningTime / time.Hour)
		days := int64(b.n.MaxQueueLifetime / (24 * time.Hour))
		body := []string{
			"####################################################################",
			"# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
			"####################################################################",
			"",
			"Your message could not be delivered for more than " + strconv.FormatInt(hours, 10) + " hour(s).",
			"It will be retried until it is " + strconv.FormatInt(days, 10) + " day(s) old.",
			"",
		}
		return append(append(head, body...), tail...)
	case Success:
		return append(head,
			"Your message was successfully delivered to the destination(s)",
			"listed below. If the message was delivered to mailbox you will",
			"receive no further notifications. Otherwise you may still receive",
			"notifications of mail delivery errors from other systems.",
			"",
			"                   The mail system",
		)
	case Trace:
		return append(head,
			"Enclosed is the mail delivery report that you requested.",
			"",
			"                   The mail system",
		)
	}
	body := []string{
		"I'm sorry to have to inform you that your message could not",
		"be delivered to one or more recipients. It's attached below.",
		"",
	}
	return append(append(head, body...), tail...)
}

// human renders the body of the text/plain part.
func (b *builder) human() []byte {
	var buf bytes.Buffer
	if !b.n.Postmaster {
		for _, l := range b.boilerplate() {
			buf.WriteString(l)
			buf.WriteByte('\n')
		}
	}
	u := b.n.SMTPUTF8
	for _, r := range b.n.Recipients {
		addr, orig := clean(r.Addr, u), clean(r.Orig, u)
		reason := clean(strings.TrimSpace(r.Reason), u)
		if reason == "" {
			_, reason = b.diagnostic(r)
		}
		var s string
		if orig != "" && !strings.EqualFold(orig, addr) {
			s = "<" + addr + "> (expanded from <" + orig + ">): " + reason
		} else {
			s = "<" + addr + ">: " + reason
		}
		buf.WriteByte('\n')
		writeWrapped(&buf, s)
	}
	return buf.Bytes()
}

// diagnostic returns the Diagnostic-Code type and text for r.
func (b *builder) diagnostic(r Recipient) (typ, text string) {
	u := b.n.SMTPUTF8
	if d := strings.TrimSpace(r.Diagnostic); d != "" {
		if i := strings.IndexByte(d, ';'); i > 0 {
			if t := maskToken(strings.TrimSpace(d[:i])); t != "" {
				return t, clean(strings.TrimSpace(d[i+1:]), u)
			}
		}
		return "X-" + b.mailName, clean(d, u)
	}
	text = clean(strings.TrimSpace(r.Reason), u)
	if text == "" {
		text = "delivery status " + b.status(r)
	}
	return "X-" + b.mailName, text
}

func (b *builder) action(r Recipient) string {
	def := [...]string{Failure: "failed", Delay: "delayed", Success: "delivered", Trace: "delivered"}[b.n.Kind]
	if b.n.Kind == Failure {
		return def
	}
	switch a := strings.ToLower(strings.TrimSpace(r.Action)); a {
	case "failed", "delayed", "delivered", "relayed", "expanded":
		return a
	}
	return def
}

func (b *builder) status(r Recipient) string {
	if s := strings.TrimSpace(r.Status); validStatus(s) {
		return s
	}
	if b.n.Kind == Trace {
		// A report mixes outcomes: the default follows the action.
		switch b.action(r) {
		case "failed":
			return "5.0.0"
		case "delayed":
			return "4.0.0"
		}
	}
	return [...]string{Failure: "5.0.0", Delay: "4.0.0", Success: "2.0.0", Trace: "2.0.0"}[b.n.Kind]
}

// validStatus checks RFC 3463 status-code syntax: class "." subject "."
// detail, class one of 2, 4, 5, subject and detail of 1 to 3 digits.
func validStatus(s string) bool {
	f := strings.Split(s, ".")
	if len(f) != 3 || (f[0] != "2" && f[0] != "4" && f[0] != "5") {
		return false
	}
	for _, d := range f[1:] {
		if len(d) < 1 || len(d) > 3 || strings.Trim(d, "0123456789") != "" {
			return false
		}
	}
	return true
}

// addrType is the RFC 3464 address type for addr: "utf-8" (RFC 6533 §3)
// for a non-ASCII address of an SMTPUTF8 message, else "rfc822".
func (b *builder) addrType(addr string) string {
	if b.n.SMTPUTF8 && !isASCII(addr) {
		return "utf-8"
	}
	return "rfc822"
}

// report renders the body of the delivery-status part (RFC 3464 §2.1):
// per-message fields, then one blank-line-separated block per recipient.
func (b *builder) report() []byte {
	var buf bytes.Buffer
	n, u := b.n, b.n.SMTPUTF8
	field := func(name, value string) {
		writeWrapped(&buf, name+": "+value)
	}
	field("Reporting-MTA", "dns; "+b.host)
	if env := clean(strings.TrimSpace(n.EnvID), false); env != "" {
		field("Original-Envelope-Id", env)
	}
	if id := clean(n.QueueID, false); id != "" {
		field("X-"+b.mailName+"-Queue-ID", id)
	}
	if s := clean(n.Sender, u); s != "" {
		field("X-"+b.mailName+"-Sender", b.addrType(s)+"; "+s)
	}
	if !n.ArrivalDate.IsZero() {
		field("Arrival-Date", mailDate(n.ArrivalDate))
	}
	for _, r := range n.Recipients {
		buf.WriteByte('\n')
		addr := clean(r.Addr, u)
		field("Final-Recipient", b.addrType(addr)+"; "+addr)
		if o := strings.TrimSpace(r.ORcpt); o != "" {
			typ, a := "rfc822", o
			if i := strings.IndexByte(o, ';'); i > 0 && maskToken(strings.TrimSpace(o[:i])) != "" {
				typ, a = maskToken(strings.TrimSpace(o[:i])), strings.TrimSpace(o[i+1:])
			}
			field("Original-Recipient", typ+"; "+clean(a, u))
		} else if o := clean(r.Orig, u); o != "" {
			field("Original-Recipient", b.addrType(o)+"; "+o)
		}
		field("Action", b.action(r))
		field("Status", b.status(r))
		if m := clean(strings.TrimSpace(r.RemoteMTA), u); m != "" {
			writeWrapped(&buf, "Remote-MTA: dns; "+m)
		}
		typ, text := b.diagnostic(r)
		writeWrapped(&buf, "Diagnostic-Code: "+typ+"; "+text)
		if !r.LastAttempt.IsZero() {
			field("Last-Attempt-Date", mailDate(r.LastAttempt))
		}
		if n.Kind == Delay && !n.ArrivalDate.IsZero() && n.MaxQueueLifetime > 0 {
			field("Will-Retry-Until", mailDate(n.ArrivalDate.Add(n.MaxQueueLifetime)))
		}
	}
	return buf.Bytes()
}

// third renders the header and body of the part with the original.
func (b *builder) third(o *original) (desc, ctype string, body []byte) {
	desc = "Message"
	if o.headersOnly {
		desc = "Message Headers"
	}
	// Postfix: only the failure and delay templates say "Undelivered".
	if b.n.Kind == Failure || b.n.Kind == Delay {
		desc = "Undelivered " + desc
	}
	switch {
	case b.n.SMTPUTF8 && o.headersOnly:
		ctype = "message/global-headers"
	case b.n.SMTPUTF8:
		ctype = "message/global"
	case o.headersOnly:
		ctype = "text/rfc822-headers"
	default:
		ctype = "message/rfc822"
	}
	if o.unavailable {
		return desc, ctype, []byte("\t--- Undelivered message unavailable ---\n")
	}
	// Postfix prepends Return-Path: because cleanup removed the original
	// one; header checks on the notice then see the sender.
	var buf bytes.Buffer
	buf.WriteString("Return-Path: <" + clean(b.n.Sender, b.n.SMTPUTF8) + ">\n")
	buf.Write(o.content)
	return desc, ctype, buf.Bytes()
}

func (b *builder) write(w io.Writer, o *original) error {
	n := b.n
	human := b.human()
	report := b.report()
	desc, ctype, orig := b.third(o)
	boundary := b.boundary(human, report, orig)

	eight := func(p []byte) bool { return !isASCII(string(p)) }
	topCTE := "7bit"
	if eight(human) || eight(report) || eight(orig) {
		topCTE = "8bit"
	}

	bw := bufferedWriter{bufio.NewWriter(w)}
	from := clean(strings.TrimSpace(n.From), n.SMTPUTF8)
	if from == "" {
		from = "MAILER-DAEMON@" + b.host
	}
	to := n.To
	if to == "" {
		to = n.Sender
	}
	writeWrapped(bw, "From: Mail Delivery System <"+from+">")
	bw.line("Subject: ", b.subject())
	writeWrapped(bw, "To: "+quoteAddr(clean(to, n.SMTPUTF8)))
	bw.line("Date: ", mailDate(b.date))
	if id := clean(strings.TrimSpace(n.MessageID), false); id != "" {
		writeWrapped(bw, "Message-ID: "+id)
	}
	// References and In-Reply-To thread the notice with the original in
	// the sender's mail reader, as Postfix does.
	if o.messageID != "" {
		bw.line("References: ", o.messageID)
		bw.line("In-Reply-To: ", o.messageID)
	}
	// RFC 3834 §5: a reply to a message is auto-replied; a notice to the
	// postmaster is not a reply to anything he sent.
	if n.Postmaster {
		bw.line("Auto-Submitted: auto-generated")
	} else {
		bw.line("Auto-Submitted: auto-replied")
	}
	bw.line("MIME-Version: 1.0")
	bw.line("Content-Type: multipart/report; report-type=delivery-status;")
	bw.line("\tboundary=\"", boundary, "\"")
	bw.line("Content-Transfer-Encoding: ", topCTE)
	bw.line()
	bw.line("This is a MIME-encapsulated message.")

	bw.line()
	bw.line("--", boundary)
	bw.line("Content-Description: Notification")
	if eight(human) {
		bw.line("Content-Type: text/plain; charset=utf-8")
		bw.line("Content-Transfer-Encoding: 8bit")
	} else {
		bw.line("Content-Type: text/plain; charset=us-ascii")
	}
	bw.line()
	bw.Write(human)

	bw.line()
	bw.line("--", boundary)
	bw.line("Content-Description: Delivery report")
	if n.SMTPUTF8 {
		bw.line("Content-Type: message/global-delivery-status")
		// RFC 6533 §6.2 lets message/global-delivery-status carry 8bit.
		if eight(report) {
			bw.line("Content-Transfer-Encoding: 8bit")
		}
	} else {
		bw.line("Content-Type: message/delivery-status")
	}
	bw.line()
	bw.Write(report)

	bw.line()
	bw.line("--", boundary)
	bw.line("Content-Description: ", desc)
	bw.line("Content-Type: ", ctype)
	if eight(orig) {
		bw.line("Content-Transfer-Encoding: 8bit")
	}
	bw.line()
	bw.Write(orig)
	bw.line()
	bw.line("--", boundary, "--")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dsn: %s: write notice: %w", n.QueueID, err)
	}
	return nil
}

// boundary returns a MIME boundary (RFC 2046 §5.1.1: at most 70 of the
// bchars) that occurs in none of the parts. It starts as Postfix's
// "queueid.time/host" and gains a counter while it collides; the loop ends
// because the parts are finite.
func (b *builder) boundary(parts ...[]byte) string {
	id := b.n.QueueID
	if id == "" {
		id = "dsn"
	}
	base := bchars(id + "." + strconv.FormatInt(b.date.Unix(), 10) + "/" + b.host)
	if len(base) > 56 {
		base = base[:56]
	}
	for i := 0; ; i++ {
		cand := base
		if i > 0 {
			cand = base + "/" + strconv.Itoa(i)
		}
		clash := false
		for _, p := range parts {
			if bytes.Contains(p, []byte(cand)) {
				clash = true
				break
			}
		}
		if !clash {
			return cand
		}
	}
}

// mailDate formats t as Postfix's mail_date: RFC 5322 date-time with a
// space-padded day and the zone name as a comment.
func mailDate(t time.Time) string {
	return t.Format("Mon, _2 Jan 2006 15:04:05 -0700 (MST)")
}

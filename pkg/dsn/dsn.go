// Package dsn builds delivery status notifications: the non-delivery
// reports ("bounces"), delay warnings and success notices that Postfix's
// bounce(8) daemon writes, and the delivery status report of "sendmail -v"
// that its trace(8) service writes, as RFC 3464 messages.
//
// Write renders one notice from a Notice and the original message. It is a
// pure function of its input: no configuration, no clock when Notice.Date
// is set, no I/O but the two streams. Choosing who gets a notice (DSN
// NOTIFY, notify_classes, double bounces) and submitting it belong to the
// caller; this package only formats.
//
// The message has LF line endings and this shape (RFC 6522 multipart/report,
// RFC 3464 delivery-status, RFC 3834 Auto-Submitted):
//
//	From: Mail Delivery System <MAILER-DAEMON@host>
//	Subject: Undelivered Mail Returned to Sender
//	To: sender@example.org
//	Date, Message-ID, References/In-Reply-To (the original's Message-ID)
//	Auto-Submitted: auto-replied (auto-generated for postmaster copies)
//	MIME-Version: 1.0
//	Content-Type: multipart/report; report-type=delivery-status; boundary="..."
//
//	1. text/plain "Notification": Postfix's default template text for the
//	   kind, then one "<addr> (expanded from <orig>): reason" paragraph per
//	   recipient, wrapped at 79 columns with a 4-space indent.
//	2. message/delivery-status "Delivery report": Reporting-MTA,
//	   Original-Envelope-Id, X-<MailName>-Queue-ID, X-<MailName>-Sender,
//	   Arrival-Date; per recipient Final-Recipient, Original-Recipient,
//	   Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date and,
//	   in a delay warning, Will-Retry-Until.
//	3. the original: message/rfc822 "Undelivered Message" (the whole
//	   message) or text/rfc822-headers "Undelivered Message Headers" (its
//	   header block), preceded by a Return-Path: with the original sender;
//	   "Message" and "Message Headers" in success notices and reports.
//
// What the third part holds follows Postfix: a failure notice returns the
// whole message unless RET=HDRS; delay warnings, success notices and
// delivery status reports return the headers; an explicit Notice.Return overrides the default for any
// kind. An original larger than SizeLimit (bounce_size_limit) is replaced by
// its headers, so that its MIME structure is never cut in the middle, and a
// header block that alone exceeds SizeLimit is cut after the last header
// field that fits whole.
//
// With SMTPUTF8 (the original was sent with SMTPUTF8, RFC 6531) the parts
// become message/global-delivery-status, message/global and
// message/global-headers (RFC 6533), non-ASCII addresses are reported with
// the "utf-8" address type, and UTF-8 text is kept. Without it every
// non-ASCII or control character in a reported string is shown as '?', as
// Postfix masks bounce log text. Control characters are always masked, so
// no caller-supplied string can start a new header field or line.
//
// The MIME boundary is derived from the queue ID, the time and the host name
// as Postfix does, and is extended until it occurs nowhere in the body, so
// no original content can end a part early.
package dsn

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Kind says what a notice reports, and selects Postfix's template for it.
type Kind int

const (
	// Failure is a non-delivery report: "Undelivered Mail Returned to
	// Sender" (Postfix's failure_template).
	Failure Kind = iota
	// Delay is a delay warning: "Delayed Mail (still being retried)"
	// (delay_template).
	Delay
	// Success is a report of delivery for NOTIFY=SUCCESS: "Successful Mail
	// Delivery Report" (success_template).
	Success
	// Trace is the report of a delivery attempt that the sender asked
	// for with "sendmail -v": "Mail Delivery Status Report" (Postfix's
	// verify_template). Each recipient keeps its own Action (delivered,
	// relayed, delayed or failed), and the original's headers are
	// returned.
	Trace
)

func (k Kind) String() string {
	switch k {
	case Failure:
		return "failure"
	case Delay:
		return "delay"
	case Success:
		return "success"
	case Trace:
		return "trace"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// DSN RET values (RFC 3461 §4.3), as the queue file stores them.
const (
	ReturnFull    = "FULL"
	ReturnHeaders = "HDRS"
)

// DefaultMailName is the name used in the X-<name>-Queue-ID and
// X-<name>-Sender fields and the X-<name> diagnostic type when
// Notice.MailName is empty (Postfix's mail_name).
const DefaultMailName = "Postern"

// Recipient is one recipient reported in a notice.
type Recipient struct {
	// Addr is the final recipient address (Final-Recipient).
	Addr string
	// Orig is the address before alias or virtual expansion; it gives
	// "(expanded from <orig>)" when it differs from Addr, and the
	// Original-Recipient field when ORcpt is empty.
	Orig string
	// ORcpt is the DSN ORCPT parameter, "addr-type;address" with the
	// xtext already decoded (RFC 3461 §4.2). When set it is the
	// Original-Recipient field, as RFC 3461 §6.3 requires.
	ORcpt string
	// Action is failed, delayed, delivered, relayed or expanded (RFC 3464
	// §2.3.3). Empty or unknown gives the kind's own: failed, delayed,
	// delivered. A Failure notice always says failed, as Postfix does.
	Action string
	// Status is the enhanced status code, "5.1.1" (RFC 3463). Empty or
	// malformed gives 5.0.0, 4.0.0 or 2.0.0 by kind.
	Status string
	// Reason is the human-readable text the delivery agent gave, e.g.
	// "host mx.example.com[192.0.2.1] said: 550 5.1.1 <u@example.com>:
	// user unknown (in reply to RCPT TO command)".
	Reason string
	// Diagnostic is the Diagnostic-Code value "type; text", e.g.
	// "smtp; 550 5.1.1 user unknown". Empty gives "X-<MailName>; Reason".
	Diagnostic string
	// RemoteMTA is the host name of the remote MTA that gave the
	// diagnostic; reported as "Remote-MTA: dns; host".
	RemoteMTA string
	// LastAttempt is the time of the last delivery attempt; the
	// Last-Attempt-Date field is written when it is set.
	LastAttempt time.Time
}

// Notice is everything a notice says besides the original message.
type Notice struct {
	Kind Kind
	// Postmaster marks a copy for the postmaster (notify_classes, double
	// bounces): Postfix's Postmaster-Subject, Auto-Submitted:
	// auto-generated, and no template text, only the recipient report.
	Postmaster bool

	// Hostname is myhostname: the Reporting-MTA and the host named in
	// the text. Required.
	Hostname string
	// MailName is mail_name; DefaultMailName when empty.
	MailName string
	// From is the notice's From address; MAILER-DAEMON@Hostname when
	// empty. The display name is always "Mail Delivery System".
	From string
	// To is who the notice goes to (the To: header); Sender when empty.
	To string
	// Sender is the original envelope sender (X-<MailName>-Sender and the
	// Return-Path: of the returned original); may be empty.
	Sender string

	QueueID     string    // the original's queue ID
	ArrivalDate time.Time // when the original was queued; Arrival-Date
	EnvID       string    // DSN ENVID (RFC 3461 §4.4), xtext decoded

	// Return is the DSN RET value, ReturnFull or ReturnHeaders; empty
	// means Postfix's choice for the kind (see the package doc).
	Return string
	// SizeLimit is bounce_size_limit: an original larger than this is
	// returned as headers only. Zero or negative means no limit.
	SizeLimit int64
	// SMTPUTF8 says the original was sent with SMTPUTF8: use the RFC 6533
	// types and keep UTF-8 text.
	SMTPUTF8 bool

	// DelayWarningTime and MaxQueueLifetime are delay_warning_time and
	// maximal_queue_lifetime, for the delay warning's text and its
	// Will-Retry-Until (ArrivalDate + MaxQueueLifetime).
	DelayWarningTime time.Duration
	MaxQueueLifetime time.Duration

	// Recipients are those this notice reports, already chosen by the
	// caller (DSN NOTIFY, notify_classes). At least one.
	Recipients []Recipient

	// Date is the notice's Date: header and part of the boundary;
	// time.Now() when zero.
	Date time.Time
	// MessageID, "<id@host>", is the notice's Message-ID: header; none is
	// written when empty (cleanup adds one).
	MessageID string
}

// Write writes the notice n about the message read from original to w.
// original may be nil when the message is no longer available; the third
// part then says so. Write reads at most SizeLimit+1 bytes of original when
// SizeLimit is set.
func Write(w io.Writer, n *Notice, original io.Reader) error {
	if err := n.check(); err != nil {
		return err
	}
	b := newBuilder(n)
	orig, err := readOriginal(original, b.headersOnly(), n.SizeLimit)
	if err != nil {
		return fmt.Errorf("dsn: %s: read original: %w", n.QueueID, err)
	}
	return b.write(w, orig)
}

func (n *Notice) check() error {
	switch {
	case n.Kind < Failure || n.Kind > Trace:
		return fmt.Errorf("dsn: unknown notice kind %d", int(n.Kind))
	case strings.TrimSpace(n.Hostname) == "":
		return errors.New("dsn: no host name")
	case n.To == "" && n.Sender == "":
		return errors.New("dsn: no recipient for the notice")
	case len(n.Recipients) == 0:
		return errors.New("dsn: no recipients to report")
	}
	for i, r := range n.Recipients {
		if strings.TrimSpace(r.Addr) == "" {
			return fmt.Errorf("dsn: recipient %d has no address", i)
		}
	}
	switch strings.ToUpper(n.Return) {
	case "", ReturnFull, ReturnHeaders:
	default:
		return fmt.Errorf("dsn: bad RET value %q", n.Return)
	}
	return nil
}

// bufferedWriter keeps the first write error so the rendering code can
// write without checking each line.
type bufferedWriter struct {
	*bufio.Writer
}

func (b bufferedWriter) line(parts ...string) {
	for _, p := range parts {
		b.WriteString(p)
	}
	b.WriteByte('\n')
}

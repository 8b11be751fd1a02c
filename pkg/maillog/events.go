package maillog

import (
	"strconv"
	"strings"
	"time"
)

// The mail events. Each method builds the text Postfix logs for the same
// event (the Postfix source file that does it is named beside each), so
// that log consumers parse it. Addresses are logged as given, between
// angle brackets; the null sender is "<>".

// Client is an SMTP client as smtpd logs it: "name[addr]", with ":port"
// when Options.ClientPortLogging is set. An empty Name is logged as
// "unknown", Postfix's name for a client whose address did not resolve.
type Client struct {
	Name, Addr string
	Port       string
}

func (l *Logger) namaddr(c Client) string {
	name := c.Name
	if name == "" {
		name = "unknown"
	}
	s := name + "[" + c.Addr + "]"
	if l.portLog && c.Port != "" {
		s += ":" + c.Port
	}
	return s
}

// Count is how many times one SMTP command was used in a session, and how
// many of those succeeded.
type Count struct {
	Name      string // command name, e.g. "ehlo"; logged in lower case
	OK, Total int
}

func idOrNoqueue(id string) string {
	if id == "" {
		return "NOQUEUE"
	}
	return id
}

// Connect logs smtpd's "connect from name[addr]".
func (l *Logger) Connect(c Client) {
	l.log(sevInfo, "connect from "+l.namaddr(c))
}

// Disconnect logs smtpd's end-of-session line with per-command counts
// (Postfix smtpd.c, smtpd_format_cmd_stats): "disconnect from name[addr]
// ehlo=1 mail=1 rcpt=0/1 data=1 quit=1 commands=4/5". A command is listed
// when it was used, as "name=ok", or "name=ok/total" when some failed, in
// the order given; commands= sums them and shows "/total" when some failed
// or when there was no command at all ("commands=0/0").
func (l *Logger) Disconnect(c Client, counts []Count) {
	var b strings.Builder
	b.WriteString("disconnect from ")
	b.WriteString(l.namaddr(c))
	ok, total := 0, 0
	for _, n := range counts {
		if n.Total <= 0 {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(strings.ToLower(n.Name))
		b.WriteByte('=')
		writeRatio(&b, n.OK, n.Total, false)
		ok += n.OK
		total += n.Total
	}
	b.WriteString(" commands=")
	writeRatio(&b, ok, total, total == 0)
	l.log(sevInfo, b.String())
}

func writeRatio(b *strings.Builder, ok, total int, force bool) {
	b.WriteString(strconv.Itoa(ok))
	if ok != total || force {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(total))
	}
}

// ClientLine logs smtpd's first line of a new message, the one log
// analysers count as "received": "ID: client=name[addr]", followed by
// ", sasl_method=M, sasl_username=U" for an authenticated session (Postfix
// smtpd.c). Empty fields are left out.
func (l *Logger) ClientLine(id string, c Client, saslMethod, saslUser string) {
	s := idOrNoqueue(id) + ": client=" + l.namaddr(c)
	if saslMethod != "" {
		s += ", sasl_method=" + saslMethod
	}
	if saslUser != "" {
		s += ", sasl_username=" + saslUser
	}
	l.log(sevInfo, s)
}

// Pickup logs pickup's line for a message taken from maildrop: "ID:
// uid=N from=<a>" (Postfix pickup.c).
func (l *Logger) Pickup(id string, uid int, from string) {
	l.log(sevInfo, id+": uid="+strconv.Itoa(uid)+" from=<"+from+">")
}

// Reject logs an SMTP policy rejection: "ID: reject: STAGE from
// name[addr]: REPLY; from=<a> to=<b> proto=ESMTP helo=<h>" (Postfix
// smtpd_check.c), with "NOQUEUE" for an empty id. stage is the command
// being refused as Postfix names it: CONNECT, EHLO, HELO, MAIL, RCPT,
// DATA, END-OF-MESSAGE, VRFY, ETRN. reply is the SMTP reply sent, e.g.
// "554 5.7.1 <b@example.org>: Relay access denied".
func (l *Logger) Reject(id, stage string, c Client, reply, from, to, proto, helo string) {
	l.Action(id, "reject", stage, c, reply, from, to, proto, helo)
}

// Action logs a policy action in the Reject format with another action
// word: "reject_warning", "hold", "discard", "filter", "redirect", "warn".
//
// from= is logged when from is not empty or when the stage is one where a
// sender exists (MAIL and later), so that the null sender shows as
// "from=<>" there and is absent at CONNECT or EHLO as in Postfix; to=,
// proto= and helo= are logged when not empty.
func (l *Logger) Action(id, action, stage string, c Client, reply, from, to, proto, helo string) {
	var b strings.Builder
	b.WriteString(idOrNoqueue(id))
	b.WriteString(": ")
	b.WriteString(action)
	b.WriteString(": ")
	b.WriteString(stage)
	b.WriteString(" from ")
	b.WriteString(l.namaddr(c))
	b.WriteString(": ")
	b.WriteString(reply)
	b.WriteByte(';')
	if from != "" || senderStage(stage) {
		b.WriteString(" from=<" + from + ">")
	}
	if to != "" {
		b.WriteString(" to=<" + to + ">")
	}
	if proto != "" {
		b.WriteString(" proto=" + proto)
	}
	if helo != "" {
		b.WriteString(" helo=<" + helo + ">")
	}
	l.log(sevInfo, b.String())
}

func senderStage(stage string) bool {
	switch strings.ToUpper(stage) {
	case "MAIL", "RCPT", "DATA", "BDAT", "END-OF-MESSAGE":
		return true
	}
	return false
}

// SessionAbort logs an abnormal end of an SMTP session as Postfix 3.10 and
// later do: "ID: REASON after CMD from name[addr]", "NOQUEUE" for an empty
// id. reason is "lost connection", "timeout" or "too many errors"; after is
// the last command, or "DATA (1234 bytes)" / "BDAT (1234 bytes)" with the
// bytes received when it ended inside message content.
func (l *Logger) SessionAbort(id, reason, after string, c Client) {
	l.log(sevInfo, idOrNoqueue(id)+": "+reason+" after "+after+" from "+l.namaddr(c))
}

// LostConnection logs "ID: lost connection after CMD from name[addr]".
func (l *Logger) LostConnection(id string, c Client, after string) {
	l.SessionAbort(id, "lost connection", after, c)
}

// Timeout logs "ID: timeout after CMD from name[addr]".
func (l *Logger) Timeout(id string, c Client, after string) {
	l.SessionAbort(id, "timeout", after, c)
}

// TooManyErrors logs "ID: too many errors after CMD from name[addr]".
func (l *Logger) TooManyErrors(id string, c Client, after string) {
	l.SessionAbort(id, "too many errors", after, c)
}

// MessageID logs cleanup's "ID: message-id=<x@y>"; msgid is the header
// value as it appears in the message, angle brackets included.
func (l *Logger) MessageID(id, msgid string) {
	l.log(sevInfo, id+": message-id="+msgid)
}

// Queued logs qmgr's line when a message enters the active queue: "ID:
// from=<a>, size=N, nrcpt=N (queue active)" (Postfix opened.c).
func (l *Logger) Queued(id, from string, size int64, nrcpt int) {
	l.log(sevInfo, id+": from=<"+from+">, size="+strconv.FormatInt(size, 10)+
		", nrcpt="+strconv.Itoa(nrcpt)+" (queue active)")
}

// Delivery is the outcome of one recipient, as a delivery agent or qmgr
// reports it.
type Delivery struct {
	To     string // recipient
	OrigTo string // original recipient; logged when set and not To (case-insensitively)
	Relay  string // "local", "mx.example.com[192.0.2.1]:25", ...; "" logs "none"
	// ConnUse is how many deliveries the connection has carried,
	// this one included; logged as conn_use= when above 1.
	ConnUse int
	Delay   time.Duration    // arrival to now
	Delays  [4]time.Duration // before qmgr, in qmgr, connection setup, transmission
	DSN     string           // enhanced status, "2.0.0"
	Status  string           // sent, deferred, bounced, expired, undeliverable, deliverable
	Text    string           // detail, logged in parentheses
}

// Delivered logs a recipient's delivery status (Postfix log_adhoc.c):
// "ID: to=<a>, orig_to=<b>, relay=local, delay=0.12,
// delays=0.01/0/0/0.11, dsn=2.0.0, status=sent (delivered to maildir)".
// The same line reports deferrals and bounces by d.Status. Times are
// formatted as Postfix does (FormatDelay).
func (l *Logger) Delivered(id string, d Delivery) {
	var b strings.Builder
	b.WriteString(id)
	b.WriteString(": to=<")
	b.WriteString(d.To)
	b.WriteByte('>')
	if d.OrigTo != "" && !strings.EqualFold(d.OrigTo, d.To) {
		b.WriteString(", orig_to=<" + d.OrigTo + ">")
	}
	relay := d.Relay
	if relay == "" {
		relay = "none"
	}
	b.WriteString(", relay=" + relay)
	if d.ConnUse > 1 {
		b.WriteString(", conn_use=" + strconv.Itoa(d.ConnUse))
	}
	b.WriteString(", delay=" + FormatDelay(d.Delay))
	for i, x := range d.Delays {
		if i == 0 {
			b.WriteString(", delays=")
		} else {
			b.WriteByte('/')
		}
		b.WriteString(FormatDelay(x))
	}
	b.WriteString(", dsn=" + d.DSN + ", status=" + d.Status + " (" + d.Text + ")")
	l.log(sevInfo, b.String())
}

// Removed logs qmgr's "ID: removed" when a message leaves the queue.
func (l *Logger) Removed(id string) {
	l.log(sevInfo, id+": removed")
}

// Expired logs qmgr's "ID: from=<a>, status=expired, returned to sender"
// when a message exceeds maximal_queue_lifetime.
func (l *Logger) Expired(id, from string) {
	l.log(sevInfo, id+": from=<"+from+">, status=expired, returned to sender")
}

// BounceNotice logs "ID: sender non-delivery notification: NEWID" when a
// bounce message NEWID is queued for message ID (Postfix bounce).
func (l *Logger) BounceNotice(id, newID string) {
	l.log(sevInfo, id+": sender non-delivery notification: "+newID)
}

// DelayNotice logs "ID: sender delay notification: NEWID" when a
// delay_warning_time message NEWID is queued for message ID.
func (l *Logger) DelayNotice(id, newID string) {
	l.log(sevInfo, id+": sender delay notification: "+newID)
}

// FormatDelay formats d as Postfix's delay= and delays= fields (Postfix
// format_tv with 2 significant digits and delay_logging_resolution_limit
// 2): rounded half up; below 1s, to 0.01s ("0.12", "0.05", "0"); from 1s to
// 10s, to 0.1s ("2.1"); from 10s, to whole seconds ("12", "1125");
// trailing zeros dropped. Negative durations (a clock that jumped back)
// log as 0.
func FormatDelay(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	const million = 1000000
	sec := int64(d / time.Second)
	usec := int64(d%time.Second) / int64(time.Microsecond)
	// res is the resolution in microseconds: two significant digits, but
	// never finer than 0.01s.
	var res int64
	switch {
	case sec >= 10:
		res = million
	case sec >= 1:
		res = million / 10
	default:
		res = million / 100
	}
	usec += res / 2
	if usec >= million {
		sec++
		usec -= million
	}
	s := strconv.FormatInt(sec, 10)
	if usec < res {
		return s
	}
	frac := []byte{'.'}
	for rem, n := usec, int64(million/10); rem >= res && n > 0; n /= 10 {
		frac = append(frac, byte('0'+rem/n))
		rem %= n
	}
	return s + string(frac)
}

// SkipServer logs why the smtp or lmtp client leaves a server for the
// next one, as Postfix's smtp(8) does at level info: a connection that
// failed is logged as Postfix's smtp_connect.c logs it, without a queue
// ID ("connect to mx1.example.net[192.0.2.1]:25: Connection refused",
// id ""); trouble later in the session, or a 4xx reply that sends
// recipients to a backup server, with the queue ID (smtp_trouble.c: "ID:
// lost connection with mx1.example.net[192.0.2.1] while receiving the
// initial server greeting", "ID: host mx1.example.net[192.0.2.1] said:
// 450 4.7.1 ... (in reply to RCPT TO command)").
func (l *Logger) SkipServer(id, reason string) {
	if id != "" {
		reason = id + ": " + reason
	}
	l.log(sevInfo, reason)
}

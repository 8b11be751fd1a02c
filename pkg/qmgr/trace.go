package qmgr

// Delivery status reports for "sendmail -v", the job of Postfix's trace(8)
// service with the DEL_REQ_FLAG_RECORD flag.
//
// sendmail given -v once records the request in the maildrop file; pickup
// passes it to cleanup, which writes the envelope attribute "trace" = "1"
// (Postfix's trace_flags record). When the first delivery attempt of such
// a message is over, before the other notices, the sender gets one
// "Mail Delivery Status Report" (dsn.Trace: Postfix's verify template, the
// original's headers only) with every recipient and its outcome:
// delivered or relayed, delayed with the deferral reason, failed with the
// reason (the non-delivery report for those still goes out as usual). The
// report includes the recipients that asked for DSN SUCCESS, so they get
// no separate success notice for that attempt, as Postfix flushes one
// trace log for both.
//
// The report is mail from the null sender that asks for no report itself.
// A message from the null sender gets none unless notify_classes has
// 2bounce, in which case 2bounce_notice_recipient gets it from
// double_bounce_sender; a message from double_bounce_sender never does
// (bounce_trace_service.c).
//
// Once: Postfix kills the trace_flags record after the report is queued.
// A Postern queue file changes only in its recipient status bytes, so
// qmgr instead leaves an empty file trace/<queue ID> when the message
// stays queued after its report, and sends no report while that file
// exists; the file goes when the message leaves the queue through qmgr.
// A report that cannot be queued is logged and tried again after the next
// attempt, as Postfix keeps the record then; a message that leaves the
// queue meanwhile is not kept for it. A crash between queuing the report
// and writing the file, or a message kept only because its bounce could
// not be queued, gets the report again: a duplicate at worst. A message
// deleted by the administrator leaves its (empty) file behind.
//
// A recipient's delivery text is the agent's when qmgr kept the result
// (msg.successes: recipients with NOTIFY=SUCCESS); for the others the
// report says which transport delivered it ("delivered via virtual
// service"). Whatever msg.successes holds, only the recipients that asked
// for DSN SUCCESS are left in it for the success notice.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"postern/pkg/dsn"
	"postern/pkg/queue"
)

// attrTrace is the queue file attribute with which cleanup records a
// request for a delivery report (sendmail -v).
const attrTrace = "trace"

// traced says whether the message with envelope env asked for a report of
// its first delivery attempt.
func traced(env *queue.Envelope) bool {
	return env.Attrs[attrTrace] == "1"
}

// traceMarker is the file that says msg's report was queued.
func (q *Qmgr) traceMarker(msg *message) string {
	return filepath.Join(q.store.Dir(), queue.Trace, string(msg.id))
}

// traceReport sends the delivery status report of a message whose attempt
// just ended, when it asked for one and has not had it (see the top of
// this file). It runs before the other notices of the attempt, with the
// queue file released.
func (q *Qmgr) traceReport(msg *message) {
	env := &msg.m.Envelope
	if !traced(env) {
		return
	}
	q.mu.Lock()
	deferred := msg.deferred
	q.mu.Unlock()
	// The message leaves the queue after this attempt unless recipients
	// are deferred and it has time left.
	leaving := !deferred || expired(env.Arrival, time.Now(), q.lifetimeFor(env.Sender))
	marker := q.traceMarker(msg)
	if _, err := os.Lstat(marker); err == nil {
		// Reported after an earlier attempt.
		q.traceDone(msg, false, false)
		if leaving {
			q.dropTraceMarker(msg)
		}
		return
	}

	id := string(msg.id)
	from, to := "", env.Sender
	switch {
	case strings.EqualFold(env.Sender, q.notices.doubleSender):
		q.log.Printf("%s: not sending trace/success notification for double-bounce message", id)
		q.traceDone(msg, !leaving, false)
		return
	case env.Sender == "":
		if !q.traceToPostmaster() {
			q.log.Printf("%s: not sending trace/success notification for single-bounce message", id)
			q.traceDone(msg, !leaving, false)
			return
		}
		from, to = q.notices.doubleSender, q.notices.doubleRcpt
	}
	notice := q.newNotice(msg, dsn.Trace, q.traceRecipients(msg))
	// bounce_trace_service returns the headers whatever RET says.
	notice.Return = dsn.ReturnHeaders
	err := q.withFile(msg, func() error {
		newID, err := q.submit(from, to, notice, msg.m.Content())
		if err == nil {
			q.log.Printf("%s: sender delivery status notification: %s", id, newID)
		}
		return err
	})
	if err != nil {
		// No marker: the next attempt tries again.
		q.log.Warning("%s: sender notification failed to %s: %v", id, to, err)
		q.traceDone(msg, false, false)
		return
	}
	q.traceDone(msg, !leaving, true)
}

// traceDone settles msg's report for this attempt. With mark it leaves
// the marker that stops later reports. A report that went out covered
// the recipients kept for a success notice; otherwise those that asked
// for DSN SUCCESS still get theirs.
func (q *Qmgr) traceDone(msg *message, mark, reported bool) {
	q.mu.Lock()
	keep := msg.successes[:0:0]
	for _, s := range msg.successes {
		if n := msg.m.Envelope.Recipients[s.index].Notify; !reported && n != "" && wantsNotice(n, "SUCCESS") {
			keep = append(keep, s)
		}
	}
	msg.successes = keep
	q.mu.Unlock()
	if !mark {
		return
	}
	f, err := os.OpenFile(q.traceMarker(msg), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = f.Close()
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		// The next attempt reports again: a duplicate at worst.
		q.log.Warning("%s: record delivery status notification: %v", msg.id, err)
	}
}

func (q *Qmgr) dropTraceMarker(msg *message) {
	if err := os.Remove(q.traceMarker(msg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.log.Warning("%s: remove %s: %v", msg.id, queue.Trace, err)
	}
}

// traceToPostmaster says whether notify_classes has 2bounce: the report
// about a message from the null sender then goes to
// 2bounce_notice_recipient (Postfix tests MAIL_ERROR_2BOUNCE alone here).
func (q *Qmgr) traceToPostmaster() bool {
	for _, c := range q.cfg.List("notify_classes") {
		if strings.EqualFold(c, "2bounce") {
			return true
		}
	}
	return false
}

// traceRecipients reports every recipient of msg in queue file order with
// the outcome of the attempt: failed, delayed, or delivered/relayed.
func (q *Qmgr) traceRecipients(msg *message) []dsn.Recipient {
	env := &msg.m.Envelope
	q.mu.Lock()
	fails, delays, done := byIndex(msg.failures), byIndex(msg.delays), byIndex(msg.successes)
	q.mu.Unlock()
	now := time.Now()
	rcpts := make([]dsn.Recipient, 0, len(env.Recipients))
	for i, r := range env.Recipients {
		d := dsn.Recipient{Addr: r.Addr, Orig: r.Orig, ORcpt: r.ORcpt}
		f, fok := fails[i]
		dl, dok := delays[i]
		s, sok := done[i]
		switch {
		case fok:
			d.Action = "failed"
		case dok:
			f, d.Action = dl, "delayed"
		case sok:
			f, d.Action = s, q.notices.action(s.transport)
		case r.Status == queue.Delivered:
			// Delivered in this attempt; qmgr keeps the agent's text only
			// for DSN SUCCESS, so the report names the transport.
			f.result.DSN, f.result.Text, d.Action = "2.0.0", "delivered", "delivered"
			if res, err := q.route(env, r.Addr); err == nil && res.Transport != "" {
				f.result.Text = "delivered via " + res.Transport + " service"
				d.Action = q.notices.action(res.Transport)
			}
		case r.Status == queue.Failed || r.Status == queue.Bounced:
			// Decided in an earlier run of qmgr (a crash after the
			// result): the reason is gone.
			f.result.DSN, f.result.Text, d.Action = "5.0.0", "delivery failed", "failed"
		default:
			f.result.DSN, f.result.Text, d.Action = "4.0.0", "delivery temporarily suspended", "delayed"
		}
		if f.when.IsZero() {
			f.when = now
		}
		d.Status, d.Reason, d.LastAttempt = f.result.DSN, f.result.Text, f.when
		d.RemoteMTA, d.Diagnostic = f.result.RemoteMTA, f.result.Diagnostic
		rcpts = append(rcpts, d)
	}
	return rcpts
}

package qmgr

// Delivery status notifications, the job of Postfix's bounce(8), defer(8)
// and trace(8) services, done here with pkg/dsn and queued through cleanup
// like any other message.
//
//   - Non-delivery: after an attempt that left recipients failed
//     permanently, the sender gets a report of those that asked for it
//     (DSN NOTIFY=FAILURE, or no NOTIFY), before the original is removed;
//     if it cannot be queued the original stays (deferred) and the report
//     is tried again with the next attempt. When other recipients are
//     still deferred, the reported ones are marked Bounced in the queue
//     file so that no later attempt reports them again. With notify_classes
//     "bounce" the postmaster (bounce_notice_recipient) also gets a copy
//     of every failed recipient with the original's headers. A report
//     about a message from the null sender (a bounce that bounced) goes,
//     with notify_classes "2bounce" or "bounce", to
//     2bounce_notice_recipient with the whole message, else it is
//     discarded. A failed notice from the double-bounce sender is
//     discarded with a warning: there is no triple bounce.
//   - Delay warnings: when an attempt leaves recipients deferred and the
//     message is older than delay_warning_time (0 = never), the sender
//     gets one warning for the recipients that want it (NOTIFY=DELAY, or
//     no NOTIFY), and with notify_classes "delay" the postmaster
//     (delay_notice_recipient) a copy. The recipients reported are then
//     marked Warned in the queue file, so the warning goes once.
//   - Success: a recipient delivered with NOTIFY=SUCCESS is reported to
//     the sender after the attempt that delivered it: "delivered" for
//     final delivery, "relayed" through the smtp and lmtp agents.
//
// Postmaster notices come from the double_bounce_sender address, so that
// one that fails is discarded and never bounces back.

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"postern/pkg/deliver"
	"postern/pkg/dsn"
	"postern/pkg/handoff"
	"postern/pkg/queue"
)

// failure is the last result of one recipient, kept until the message
// leaves active/: why it failed or was deferred, or how it was delivered.
type failure struct {
	index     int
	result    deliver.Result
	when      time.Time
	transport string
}

// wantsNotice applies the recipient's DSN NOTIFY (RFC 3461 §4.1) to a
// notice of kind ("SUCCESS", "FAILURE", "DELAY"): no NOTIFY means failures
// and delays are reported, never successes; NEVER means nothing is.
func wantsNotice(notify, kind string) bool {
	if notify == "" {
		return kind != "SUCCESS"
	}
	for _, n := range strings.Split(notify, ",") {
		if strings.EqualFold(strings.TrimSpace(n), kind) {
			return true
		}
	}
	return false
}

// notices holds what qmgr needs from main.cf to write notices.
type notices struct {
	delayWarning time.Duration   // delay_warning_time; 0: no delay warnings
	bounceCopy   bool            // notify_classes has bounce
	doubleBounce bool            // notify_classes has 2bounce or bounce
	delayCopy    bool            // notify_classes has delay
	bounceRcpt   string          // bounce_notice_recipient
	doubleRcpt   string          // 2bounce_notice_recipient
	delayRcpt    string          // delay_notice_recipient
	doubleSender string          // double_bounce_sender@myorigin
	relayAgents  map[string]bool // services whose successes are "relayed"
}

func (q *Qmgr) initNotices() {
	n := &q.notices
	n.delayWarning = q.cfg.Duration("delay_warning_time")
	for _, c := range q.cfg.List("notify_classes") {
		switch strings.ToLower(c) {
		case "bounce":
			n.bounceCopy, n.doubleBounce = true, true
		case "2bounce":
			n.doubleBounce = true
		case "delay":
			n.delayCopy = true
		}
	}
	n.bounceRcpt = q.cfg.Get("bounce_notice_recipient")
	n.doubleRcpt = q.cfg.Get("2bounce_notice_recipient")
	n.delayRcpt = q.cfg.Get("delay_notice_recipient")
	n.doubleSender = q.cfg.Get("double_bounce_sender")
	if !strings.Contains(n.doubleSender, "@") {
		n.doubleSender += "@" + q.cfg.Get("myorigin")
	}
	n.relayAgents = relayAgents(q.cfg.Get("config_directory"), q.cfg.Int("default_process_limit"))
}

// action is the DSN action of a successful delivery through transport.
func (n *notices) action(transport string) string {
	if n.relayAgents[transport] {
		return "relayed"
	}
	return "delivered"
}

// submit queues one notice to rcpt from sender and returns its queue ID.
func (q *Qmgr) submit(sender, rcpt string, n *dsn.Notice, content io.Reader) (string, error) {
	st, err := handoff.Open(filepath.Join(q.cfg.Get("queue_directory"), queue.Public, q.cfg.Get("cleanup_service_name")),
		&handoff.Request{
			Sender:         sender,
			Protocol:       "local",
			RewriteContext: handoff.ContextLocal,
			SMTPUTF8:       n.SMTPUTF8,
			Recipients:     []handoff.Recipient{{Addr: rcpt}},
		}, q.ipcTimeout)
	if err != nil {
		return "", err
	}
	n.To = rcpt
	if err := dsn.Write(st, n, content); err != nil {
		st.Abort()
		return "", err
	}
	res, err := st.Close()
	if err != nil {
		return "", err
	}
	if res.Status != handoff.OK {
		return "", fmt.Errorf("%s %s", res.DSN, res.Text)
	}
	return res.QueueID, nil
}

// newNotice fills what every notice about msg says.
func (q *Qmgr) newNotice(msg *message, kind dsn.Kind, rcpts []dsn.Recipient) *dsn.Notice {
	env := &msg.m.Envelope
	return &dsn.Notice{
		Kind:             kind,
		Hostname:         q.cfg.Get("myhostname"),
		MailName:         q.cfg.Get("mail_name"),
		Sender:           env.Sender,
		QueueID:          string(msg.id),
		ArrivalDate:      env.Arrival,
		EnvID:            env.DSNEnvID,
		Return:           env.DSNRet,
		SizeLimit:        q.cfg.Size("bounce_size_limit"),
		SMTPUTF8:         env.SMTPUTF8,
		DelayWarningTime: q.notices.delayWarning,
		MaxQueueLifetime: q.lifetime,
		Recipients:       rcpts,
	}
}

// postmasterCopy turns n into a copy for the postmaster: every recipient,
// the original as ret (headers, or the whole message for double bounces).
func postmasterCopy(n *dsn.Notice, all []dsn.Recipient, ret string) *dsn.Notice {
	c := *n
	c.Postmaster = true
	c.Recipients = all
	c.Return = ret
	return &c
}

// report builds the dsn recipients for the indexes in idx, with the
// results recorded in byIndex, and those the sender asked for (kind).
func report(env *queue.Envelope, idx []int, byIndex map[int]failure, action, kind string, def deliver.Result) (all, sender []dsn.Recipient) {
	for _, i := range idx {
		r := env.Recipients[i]
		f, ok := byIndex[i]
		if !ok {
			// Decided in an earlier run of qmgr (a crash between the
			// result and the notice): the reason is gone.
			f.result = def
		}
		d := dsn.Recipient{
			Addr: r.Addr, Orig: r.Orig, ORcpt: r.ORcpt,
			Action: action, Status: f.result.DSN, Reason: f.result.Text, LastAttempt: f.when,
			RemoteMTA: f.result.RemoteMTA, Diagnostic: f.result.Diagnostic,
		}
		all = append(all, d)
		if wantsNotice(r.Notify, kind) {
			sender = append(sender, d)
		}
	}
	return all, sender
}

func byIndex(fs []failure) map[int]failure {
	m := make(map[int]failure, len(fs))
	for _, f := range fs {
		m[f.index] = f
	}
	return m
}

// bounce queues the notices owed for msg's failed recipients, and with mark
// records them as Bounced. It returns an error only when a notice could not
// be queued and must be tried again; a postmaster copy is not worth keeping
// the message for.
func (q *Qmgr) bounce(msg *message, mark bool) error {
	if err := q.bounceNotices(msg); err != nil || !mark {
		return err
	}
	for i, r := range msg.m.Envelope.Recipients {
		if r.Status == queue.Failed {
			if err := msg.m.SetStatus(i, queue.Bounced); err != nil {
				// Reported again with the next attempt: a duplicate.
				return err
			}
		}
	}
	return msg.m.Sync()
}

func (q *Qmgr) bounceNotices(msg *message) error {
	env := &msg.m.Envelope
	var idx []int
	for i, r := range env.Recipients {
		if r.Status == queue.Failed {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	q.mu.Lock()
	results := byIndex(msg.failures)
	q.mu.Unlock()
	all, toSender := report(env, idx, results, "failed", "FAILURE", deliver.Result{DSN: "5.0.0", Text: "delivery failed"})
	id := string(msg.id)
	n := &q.notices
	notice := q.newNotice(msg, dsn.Failure, toSender)
	switch {
	case strings.EqualFold(env.Sender, n.doubleSender):
		q.log.Warning("%s: undeliverable postmaster notification discarded", id)
		return nil
	case env.Sender == "":
		if !n.doubleBounce {
			q.log.Printf("%s: undeliverable non-delivery notification discarded (the sender is the null address)", id)
			return nil
		}
		newID, err := q.submit(n.doubleSender, n.doubleRcpt, postmasterCopy(notice, all, dsn.ReturnFull), msg.m.Content())
		if err != nil {
			return fmt.Errorf("postmaster notification failed: %w", err)
		}
		q.log.Printf("%s: postmaster non-delivery notification: %s", id, newID)
		return nil
	}
	if len(toSender) > 0 {
		newID, err := q.submit("", env.Sender, notice, msg.m.Content())
		if err != nil {
			return fmt.Errorf("sender notification failed to %s: %w", env.Sender, err)
		}
		q.log.BounceNotice(id, newID)
	}
	if n.bounceCopy {
		newID, err := q.submit(n.doubleSender, n.bounceRcpt, postmasterCopy(notice, all, dsn.ReturnHeaders), msg.m.Content())
		if err != nil {
			q.log.Warning("%s: postmaster notice failed while bouncing to %s: %v", id, env.Sender, err)
		} else {
			q.log.Printf("%s: postmaster non-delivery notification: %s", id, newID)
		}
	}
	return nil
}

// notifySuccess reports recipients delivered in this attempt with
// NOTIFY=SUCCESS to the sender. The recipients are delivered whatever
// happens here, so a notice that cannot be queued is only logged.
func (q *Qmgr) notifySuccess(msg *message) {
	q.mu.Lock()
	done := msg.successes
	msg.successes = nil
	q.mu.Unlock()
	env := &msg.m.Envelope
	if env.Sender == "" {
		return
	}
	var rcpts []dsn.Recipient
	for _, s := range done {
		r := env.Recipients[s.index]
		rcpts = append(rcpts, dsn.Recipient{
			Addr: r.Addr, Orig: r.Orig, ORcpt: r.ORcpt, Action: q.notices.action(s.transport),
			Status: s.result.DSN, Reason: s.result.Text, LastAttempt: s.when,
			RemoteMTA: s.result.RemoteMTA, Diagnostic: s.result.Diagnostic,
		})
	}
	id := string(msg.id)
	err := q.withFile(msg, func() error {
		newID, err := q.submit("", env.Sender, q.newNotice(msg, dsn.Success, rcpts), msg.m.Content())
		if err == nil {
			q.log.Printf("%s: sender delivery status notification: %s", id, newID)
		}
		return err
	})
	if err != nil {
		q.log.Warning("%s: sender delivery status notification failed to %s: %v", id, env.Sender, err)
	}
}

// delayWarn sends the delay warning of a message about to be deferred,
// once it is older than delay_warning_time, for the recipients no warning
// has reported yet, and marks them Warned. A warning that cannot be
// queued is tried again after the next attempt.
func (q *Qmgr) delayWarn(msg *message) {
	env := &msg.m.Envelope
	n := &q.notices
	if n.delayWarning <= 0 || time.Since(env.Arrival) < n.delayWarning {
		return
	}
	var idx []int
	for i, r := range env.Recipients {
		if r.Status == queue.Pending {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	q.mu.Lock()
	results := byIndex(msg.delays)
	q.mu.Unlock()
	all, toSender := report(env, idx, results, "delayed", "DELAY", deliver.Result{DSN: "4.0.0", Text: "delivery temporarily suspended"})
	id := string(msg.id)
	notice := q.newNotice(msg, dsn.Delay, toSender)
	err := q.withFile(msg, func() error {
		switch {
		case strings.EqualFold(env.Sender, n.doubleSender):
			// Postmaster notices get no warnings about themselves.
		case env.Sender == "":
			if n.delayCopy {
				newID, err := q.submit(n.doubleSender, n.delayRcpt, postmasterCopy(notice, all, dsn.ReturnFull), msg.m.Content())
				if err != nil {
					return fmt.Errorf("postmaster notification failed: %w", err)
				}
				q.log.Printf("%s: postmaster delay notification: %s", id, newID)
			}
		default:
			if len(toSender) > 0 {
				newID, err := q.submit("", env.Sender, notice, msg.m.Content())
				if err != nil {
					return fmt.Errorf("sender notification failed to %s: %w", env.Sender, err)
				}
				q.log.DelayNotice(id, newID)
			}
			if n.delayCopy {
				newID, err := q.submit(n.doubleSender, n.delayRcpt, postmasterCopy(notice, all, dsn.ReturnHeaders), msg.m.Content())
				if err != nil {
					q.log.Warning("%s: postmaster notice failed while warning %s: %v", id, env.Sender, err)
				} else {
					q.log.Printf("%s: postmaster delay notification: %s", id, newID)
				}
			}
		}
		for _, i := range idx {
			if err := msg.m.SetStatus(i, queue.Warned); err != nil {
				return err
			}
		}
		return msg.m.Sync()
	})
	if err != nil {
		// Not marked: the next attempt warns again, a duplicate at worst.
		q.log.Warning("%s: delay warning: %v", id, err)
	}
}

// withFile runs fn with msg's queue file open (for its content and status
// bytes) in active/.
func (q *Qmgr) withFile(msg *message, fn func() error) error {
	msg.fmu.Lock()
	defer msg.fmu.Unlock()
	if err := msg.m.Reopen(q.store.Path(queue.Active, msg.id)); err != nil {
		return err
	}
	defer msg.m.Release()
	return fn()
}

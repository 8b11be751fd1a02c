package qmgr

// Non-delivery notifications. When a message leaves the queue with
// recipients that failed permanently, qmgr returns it to its sender as an
// RFC 3464 report (pkg/dsn), queued through cleanup like any other
// message, before the original is removed: if the notice cannot be queued
// the original stays (deferred) and the notice is tried again with the
// next attempt. Postfix's bounce(8) daemon does this job there.

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"postern/pkg/deliver"
	"postern/pkg/dsn"
	"postern/pkg/handoff"
	"postern/pkg/queue"
)

// failure is why one recipient failed, kept until the message is done.
type failure struct {
	index  int
	result deliver.Result
	when   time.Time
}

// wantsFailureNotice applies the recipient's DSN NOTIFY (RFC 3461 §4.1):
// no NOTIFY means failures are reported.
func wantsFailureNotice(notify string) bool {
	if notify == "" {
		return true
	}
	for _, n := range strings.Split(strings.ToUpper(notify), ",") {
		if strings.TrimSpace(n) == "FAILURE" {
			return true
		}
	}
	return false
}

// bounce queues the sender's non-delivery notice for msg's failed
// recipients. It returns an error only when the notice could not be
// queued and must be tried again.
func (q *Qmgr) bounce(msg *message) error {
	m := msg.m
	env := &m.Envelope
	byIndex := map[int]failure{}
	for _, f := range msg.failures {
		byIndex[f.index] = f
	}
	var rcpts []dsn.Recipient
	for i, r := range env.Recipients {
		if r.Status != queue.Failed || !wantsFailureNotice(r.Notify) {
			continue
		}
		f, ok := byIndex[i]
		if !ok {
			// Failed in an earlier run of qmgr that did not get to
			// send the notice (a crash): the reason is gone.
			f.result = deliver.Result{DSN: "5.0.0", Text: "delivery failed"}
		}
		rcpts = append(rcpts, dsn.Recipient{
			Addr: r.Addr, Orig: r.Orig, ORcpt: r.ORcpt,
			Action: "failed", Status: f.result.DSN, Reason: f.result.Text, LastAttempt: f.when,
		})
	}
	if len(rcpts) == 0 {
		return nil
	}
	id := string(msg.id)
	if env.Sender == "" {
		// A bounce that bounced: Postfix sends it to the postmaster only
		// when notify_classes has 2bounce.
		q.log.Printf("%s: undeliverable non-delivery notification discarded (the sender is the null address)", id)
		return nil
	}
	st, err := handoff.Open(filepath.Join(q.cfg.Get("queue_directory"), queue.Public, q.cfg.Get("cleanup_service_name")),
		&handoff.Request{
			Sender:         "",
			Protocol:       "local",
			RewriteContext: handoff.ContextLocal,
			Recipients:     []handoff.Recipient{{Addr: env.Sender}},
		}, q.ipcTimeout)
	if err != nil {
		return fmt.Errorf("queue non-delivery notification: %w", err)
	}
	notice := &dsn.Notice{
		Kind:             dsn.Failure,
		Hostname:         q.cfg.Get("myhostname"),
		MailName:         q.cfg.Get("mail_name"),
		Sender:           env.Sender,
		QueueID:          id,
		ArrivalDate:      env.Arrival,
		EnvID:            env.DSNEnvID,
		Return:           env.DSNRet,
		SizeLimit:        q.cfg.Size("bounce_size_limit"),
		SMTPUTF8:         env.SMTPUTF8,
		MaxQueueLifetime: q.lifetime,
		Recipients:       rcpts,
	}
	if err := dsn.Write(st, notice, m.Content()); err != nil {
		st.Abort()
		return fmt.Errorf("write non-delivery notification: %w", err)
	}
	res, err := st.Close()
	if err != nil {
		return fmt.Errorf("queue non-delivery notification: %w", err)
	}
	if res.Status != handoff.OK {
		return fmt.Errorf("queue non-delivery notification: %s %s", res.DSN, res.Text)
	}
	q.log.BounceNotice(id, res.QueueID)
	return nil
}

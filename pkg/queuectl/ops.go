package queuectl

// Operations on single messages: delete, hold, release, requeue, as
// postsuper's -d, -h, -H and -r.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"postern/pkg/maillog"
	"postern/pkg/queue"
)

// Op is one postsuper operation.
type Op int

const (
	Delete  Op = iota // postsuper -d: remove the message
	Hold              // postsuper -h: move it to hold/
	Release           // postsuper -H: move it from hold/ to deferred/, due now
	Requeue           // postsuper -r: move it to incoming/ to be resolved again
)

// opInfo is what differs between the operations.
var opInfo = [...]struct {
	name     string   // subcommand
	logged   string   // per-message log text after "ID: "
	summary  string   // report line before ": N messages"
	defaults []string // queues searched when none is named
}{
	Delete:  {"delete", "removed", "Deleted", []string{queue.Hold, queue.Incoming, queue.Active, queue.Deferred}},
	Hold:    {"hold", "placed on hold", "Placed on hold", []string{queue.Incoming, queue.Active, queue.Deferred}},
	Release: {"release", "released from hold", "Released from hold", []string{queue.Hold}},
	Requeue: {"requeue", "requeued", "Requeued", []string{queue.Hold, queue.Incoming, queue.Active, queue.Deferred}},
}

func (op Op) String() string { return opInfo[op].name }

// messageQueues are the queue names an operation may be restricted to.
var messageQueues = []string{queue.Maildrop, queue.Incoming, queue.Active, queue.Deferred, queue.Hold, queue.Corrupt}

// isQueueName reports whether s names a queue of messages.
func isQueueName(s string) bool {
	for _, q := range messageQueues {
		if s == q {
			return true
		}
	}
	return false
}

// Ctl performs the operations on one queue directory.
type Ctl struct {
	Store *queue.Store
	// Log receives postsuper's per-message lines; nil logs nothing.
	Log *maillog.Logger
	// Stderr receives the same lines and warnings, prefixed "postsuper: ";
	// nil discards them.
	Stderr io.Writer
	// Trigger wakes qmgr ('I' after a requeue, 'F' after a release);
	// nil does nothing. Its error is reported as a warning.
	Trigger func(b byte) error
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	counts  [len(opInfo)]int
	used    [len(opInfo)]bool
	failed  bool
	trigger map[byte]bool
}

func (c *Ctl) printf(format string, args ...any) {
	if c.Stderr != nil {
		fmt.Fprintf(c.Stderr, "postsuper: "+format+"\n", args...)
	}
}

func (c *Ctl) warnf(format string, args ...any) {
	c.printf("warning: "+format, args...)
	if c.Log != nil {
		c.Log.Warning(format, args...)
	}
}

func (c *Ctl) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Failed reports whether an operation failed for another reason than the
// message having gone (see the package doc on exit status).
func (c *Ctl) Failed() bool { return c.failed }

// Count returns how many messages op has handled so far.
func (c *Ctl) Count(op Op) int { return c.counts[op] }

// queuesFor returns the queues op searches: those named (in the order
// given) or op's defaults, without the ones op cannot take a message
// from.
func queuesFor(op Op, named []string) []string {
	qs := named
	if len(qs) == 0 {
		qs = opInfo[op].defaults
	}
	var out []string
	for _, q := range qs {
		switch {
		case op == Hold && (q == queue.Hold || q == queue.Maildrop):
			// Already held; maildrop mail has not been through cleanup
			// and must not be mixed with mail that has (postsuper).
			continue
		case op == Release && q != queue.Hold:
			continue
		case op == Requeue && (q == queue.Incoming || q == queue.Maildrop):
			// Already where requeue puts it, or not yet through cleanup.
			continue
		}
		out = append(out, q)
	}
	return out
}

// Do applies op to message id, looked for in queues (nil: op's defaults).
// It reports whether the message was found and handled. A message that
// moves between queues while it is looked for is looked for once more,
// as postsuper does.
func (c *Ctl) Do(op Op, id string, queues []string) bool {
	c.used[op] = true
	if !queue.ValidID(id) {
		c.warnf("invalid mail queue id: %s", id)
		return false
	}
	qs := queuesFor(op, queues)
	for tries := 0; tries < 2; tries++ {
		for _, q := range qs {
			if _, err := os.Lstat(c.Store.Path(q, queue.ID(id))); err != nil {
				continue
			}
			if op == Requeue && q == queue.Active {
				c.warnf("%s: message is being delivered (active queue); not requeued", id)
				return false
			}
			switch done, err := c.apply(op, q, queue.ID(id)); {
			case done:
				return true
			case err != nil:
				c.failed = true
				c.warnf("%s: %s: %v", id, op, err)
				return false
			}
			// Gone meanwhile (qmgr moved it): look further.
		}
	}
	return false
}

// DoAll applies op to every message of queues (nil: op's defaults), as
// postsuper's "ALL".
func (c *Ctl) DoAll(op Op, queues []string) {
	c.used[op] = true
	for _, q := range queuesFor(op, queues) {
		if op == Requeue && q == queue.Active {
			continue // see Do; ALL passes over them silently
		}
		ids, err := c.Store.List(q)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				c.failed = true
				c.warnf("%v", err)
			}
			continue
		}
		for _, id := range ids {
			if _, err := c.apply(op, q, id); err != nil {
				c.failed = true
				c.warnf("%s: %s: %v", id, op, err)
			}
		}
	}
}

// apply performs op on message id in queue q. (false, nil) means the
// message was no longer there.
func (c *Ctl) apply(op Op, q string, id queue.ID) (bool, error) {
	var err error
	switch op {
	case Delete:
		// Unlink, never recycle: see the package doc.
		if err = os.Remove(c.Store.Path(q, id)); err == nil {
			// Its deferral reasons go with it (informational: a
			// failure is not the deletion's).
			c.Store.RemoveDeferLog(id)
		}
	case Hold:
		err = c.Store.Move(id, q, queue.Hold)
	case Release:
		// Due now; qmgr never reads hold/, so the time is set before the
		// message becomes visible to it.
		if err = c.Store.SetNextAttempt(q, id, c.now()); err == nil {
			err = c.Store.Move(id, q, queue.Deferred)
		}
	case Requeue:
		err = c.Store.Move(id, q, queue.Incoming)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.counts[op]++
	text := string(id) + ": " + opInfo[op].logged
	c.printf("%s", text)
	if c.Log != nil {
		c.Log.Printf("%s", text)
	}
	switch op {
	case Release:
		c.wake('F')
	case Requeue:
		c.wake('I')
	}
	return true, nil
}

// wake notes a trigger to send at Finish, once however many messages.
func (c *Ctl) wake(b byte) {
	if c.trigger == nil {
		c.trigger = map[byte]bool{}
	}
	c.trigger[b] = true
}

// Finish sends the triggers the operations call for and reports, for each
// operation used, how many messages it handled ("Deleted: 2 messages"),
// in postsuper's order.
func (c *Ctl) Finish() {
	for _, b := range []byte{'I', 'F'} {
		if !c.trigger[b] || c.Trigger == nil {
			continue
		}
		if err := c.Trigger(b); err != nil {
			c.warnf("cannot wake the queue manager (%v); it takes the messages when it runs", err)
		}
	}
	c.trigger = nil
	for _, op := range []Op{Requeue, Delete, Hold, Release} {
		if !c.used[op] {
			continue
		}
		n := c.counts[op]
		s := "s"
		if n == 1 {
			s = ""
		}
		text := fmt.Sprintf("%s: %d message%s", opInfo[op].summary, n, s)
		c.printf("%s", text)
		if c.Log != nil {
			c.Log.Printf("%s", text)
		}
	}
}

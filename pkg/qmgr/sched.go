package qmgr

// Per-destination concurrency scheduling, as Postfix's qmgr_queue.c and
// qmgr_feedback.c (see Postfix's SCHEDULER_README).
//
// Each destination (transport and next hop) has a concurrency window: the
// number of deliveries qmgr runs to it at once. It starts at
// <transport>_initial_destination_concurrency and moves by feedback from
// the agents. A delivery that did not fail at the destination level is
// positive feedback (even when the server deferred or refused
// recipients); a "site" failure (deliver.Result.Site: no working session
// with any server of the destination) is negative feedback. The window
// never exceeds <transport>_destination_concurrency_limit and never drops
// below 1. Failures are also counted in pseudo-cohorts (one cohort is
// window-many deliveries): after
// <transport>_destination_concurrency_failed_cohort_limit failed cohorts
// the destination is dead (window 0). Its waiting and new deliveries are
// deferred without an agent call, with "delivery temporarily suspended: "
// and the last failure's reason, until minimal_backoff_time has passed
// (or a delivery still in flight succeeds, or a flush asks for delivery
// now); then it gets the initial window again. With
// <transport>_destination_rate_delay above zero the window is 1 and qmgr
// pauses that long after each delivery.
//
// A destination is a transport and next hop; for a transport whose
// recipient limit is 1 (local) it is a recipient and next hop, so local
// concurrency is per mailbox, as Postfix's. Across destinations, the
// deliveries in flight to one transport never exceed its master.cf
// maxproc (Postfix's qmgr hands a job only to a free agent); destinations
// that find every agent busy take turns, one job each, so no destination
// holds up the others beyond its window. A destination's state lives
// while it has jobs, is dead or is pausing, so memory follows the active
// queue, and no step scans more than one destination.

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"postern/pkg/address"
	"postern/pkg/mastercf"
)

// queueName names a recipient's destination queue: the next hop, or, for
// a transport with a recipient limit of 1 (local), the recipient's local
// part without its extension "@" the next hop, so that concurrency and
// feedback are per recipient (Postfix's qmgr_message_resolve: "delivery
// concurrency is changed from per-domain into per-recipient"). Folded to
// lower case.
func queueName(rcpt, nexthop, delims string, perRecipient bool) string {
	if !perRecipient {
		return strings.ToLower(nexthop)
	}
	local := rcpt
	if at := strings.LastIndexByte(rcpt, '@'); at >= 0 {
		local = rcpt[:at]
	}
	local, _ = address.StripExtension(local, delims)
	return strings.ToLower(local + "@" + nexthop)
}

// feedback is a window adjustment: base, or base/window when perWindow
// ("1/concurrency").
type feedback struct {
	base      float64
	perWindow bool
}

// value is the adjustment at the given window.
func (f feedback) value(window int) float64 {
	if f.perWindow && window > 0 {
		return f.base / float64(window)
	}
	return f.base
}

func (f feedback) String() string {
	if f.perWindow {
		return strconv.FormatFloat(f.base, 'g', -1, 64) + "/concurrency"
	}
	return strconv.FormatFloat(f.base, 'g', -1, 64)
}

// parseFeedback reads a feedback value as Postfix's qmgr_feedback_init:
// "N", "N/concurrency" or "N/M", with a result between 0 and 1.
func parseFeedback(s string) (feedback, error) {
	s = strings.TrimSpace(s)
	num, den, slash := strings.Cut(s, "/")
	num, den = strings.TrimSpace(num), strings.TrimSpace(den)
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || strings.ContainsAny(num, "xXpPnNiI_") {
		return feedback{}, fmt.Errorf("malformed feedback %q", s)
	}
	f := feedback{base: n}
	if slash {
		switch {
		case strings.EqualFold(den, "concurrency"):
			f.perWindow = true
		default:
			d, err := strconv.ParseFloat(den, 64)
			if err != nil || strings.ContainsAny(den, "xXpPnNiI_") || d < 1e-9 || d > 1<<31 || n < 0 {
				return feedback{}, fmt.Errorf("malformed feedback %q", s)
			}
			f.base = n / d
		}
	}
	if !(f.base >= 0 && f.base <= 1) {
		return feedback{}, fmt.Errorf("unreasonable feedback %q", s)
	}
	return f, nil
}

// schedParams are one transport's scheduling parameters.
type schedParams struct {
	initial     int // initial window
	limit       int // largest window; 0: no limit
	cohortLimit int // failed pseudo-cohorts before a destination is dead; 0: never
	pos, neg    feedback
	rateDelay   time.Duration
	retry       time.Duration // how long a dead destination stays dead
	debug       bool          // destination_concurrency_feedback_debug
}

// window is a destination's concurrency state (Postfix's QMGR_QUEUE
// window, success, failure and fail_cohorts). It is owned by the dest and
// changed under q.mu.
type window struct {
	p           *schedParams
	size        int // 0: dead
	success     float64
	failure     float64
	failCohorts float64
}

func newWindow(p *schedParams) window {
	return window{p: p, size: p.initial}
}

func (w *window) dead() bool { return w.size <= 0 }

// succeeded applies positive feedback after a delivery that did not fail
// at the destination; busy counts the deliveries in flight including this
// one. A dead destination comes back (Postfix: "back from the almost
// grave, best concurrency is anyone's guess"). It reports whether the
// destination came back.
func (w *window) succeeded(busy int) (revived bool) {
	w.failCohorts = 0
	if w.dead() {
		w.size = w.p.initial
		if busy > 0 {
			w.size = busy
		}
		w.success, w.failure = 0, 0
		return true
	}
	// Grow only up to the limit, and only while the window is within the
	// initial concurrency of what is actually in use: a window far above
	// real concurrency makes negative feedback ineffective.
	if (w.p.limit == 0 || w.p.limit > w.size) && w.size < busy+w.p.initial {
		fb := w.p.pos.value(w.size)
		w.success += fb
		for w.success+fb/2 >= 1 {
			w.size++
			w.success--
			w.failure = 0
		}
		if w.p.limit > 0 && w.size > w.p.limit {
			w.size = w.p.limit
		}
	}
	return false
}

// failed applies negative feedback after a site failure and reports
// whether the destination is now dead. It must not be called on a dead
// destination.
func (w *window) failed() (died bool) {
	if w.dead() {
		return false
	}
	w.failCohorts += 1 / float64(w.size)
	if w.p.cohortLimit > 0 && w.failCohorts >= float64(w.p.cohortLimit) {
		w.size = 0
		return true
	}
	fb := w.p.neg.value(w.size)
	w.failure -= fb
	for w.failure-fb/2 < 0 {
		w.size--
		w.success = 0
		w.failure++
	}
	if w.size < 1 {
		w.size = 1
	}
	return false
}

func (w *window) String() string {
	return fmt.Sprintf("limit %d window %d success %g failure %g fail_cohorts %g",
		w.p.limit, w.size, w.success, w.failure, w.failCohorts)
}

// schedParams returns the scheduling parameters of transport, read once.
// q.mu is held.
func (q *Qmgr) schedParams(transport string) *schedParams {
	if p := q.sched[transport]; p != nil {
		return p
	}
	p := &schedParams{
		initial:     q.tparam(transport, "initial_destination_concurrency", "initial_destination_concurrency"),
		limit:       q.param(transport, "destination_concurrency_limit"),
		cohortLimit: q.param(transport, "destination_concurrency_failed_cohort_limit"),
		pos:         q.feedbackParam(transport, "positive"),
		neg:         q.feedbackParam(transport, "negative"),
		rateDelay:   q.durationParam(transport, "destination_rate_delay"),
		retry:       q.minBackoff,
		debug:       q.cfg.Bool("destination_concurrency_feedback_debug"),
	}
	if p.limit < 0 {
		p.limit = 20
	}
	if p.cohortLimit < 0 {
		p.cohortLimit = 1
	}
	if p.rateDelay > 0 {
		// Postfix: a rate-limited destination has one delivery at a time.
		p.limit = 1
	}
	if p.initial <= 0 {
		q.log.Warning("%s: initial destination concurrency %d is below 1; using 5", transport, p.initial)
		p.initial = 5
	}
	if p.limit > 0 && p.initial > p.limit {
		p.initial = p.limit
	}
	if p.retry <= 0 {
		p.retry = 300 * time.Second
	}
	if p.debug {
		q.log.Printf("%s: destination concurrency initial %d limit %d positive feedback %s negative feedback %s failed cohort limit %d",
			transport, p.initial, p.limit, p.pos, p.neg, p.cohortLimit)
	}
	q.sched[transport] = p
	return p
}

// tparam is an integer <transport>_<name> when main.cf sets it, else the
// parameter fallback.
func (q *Qmgr) tparam(transport, name, fallback string) int {
	key := transport + "_" + name
	if v, ok := q.cfg.Raw(key); ok && v != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(q.cfg.Get(key))); err == nil {
			return n
		}
		q.log.Warning("%s: bad numerical value %q; using %s", key, q.cfg.Get(key), fallback)
	}
	return q.cfg.Int(fallback)
}

// durationParam is <transport>_<name> when set, else default_<name>.
func (q *Qmgr) durationParam(transport, name string) time.Duration {
	key := transport + "_" + name
	if v, ok := q.cfg.Raw(key); ok && v != "" {
		return q.cfg.Duration(key)
	}
	return q.cfg.Duration("default_" + name)
}

// feedbackParam reads <transport>_destination_concurrency_<kind>_feedback,
// else the default_ form. A bad value is a warning and gives 1, as in
// Postfix.
func (q *Qmgr) feedbackParam(transport, kind string) feedback {
	name := "destination_concurrency_" + kind + "_feedback"
	key := transport + "_" + name
	if v, ok := q.cfg.Raw(key); !ok || v == "" {
		key = "default_" + name
	}
	v := q.cfg.Get(key)
	f, err := parseFeedback(v)
	if err != nil {
		q.log.Warning("%s: ignoring malformed or unreasonable feedback: %s", key, v)
		return feedback{base: 1}
	}
	return f
}

// reviveDead gives every dead destination another chance at once: a
// flush asks for delivery now, and Postfix's qmgr unthrottles the dead
// queues that flushed mail goes to.
func (q *Qmgr) reviveDead() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range q.dests {
		if !d.win.dead() {
			continue
		}
		if d.revive != nil {
			d.revive.Stop()
			d.revive = nil
		}
		d.win.succeeded(d.running)
		q.debugWindow("qmgr_queue_unthrottle", d)
		q.release(d)
	}
}

// ready reports whether d may start a job now, agents permitting.
func (d *dest) ready() bool {
	return !d.win.dead() && !d.paused && d.running < d.win.size && len(d.pending) > 0
}

// agentSlots bounds the deliveries in flight to one transport by its
// agent's maxproc, as Postfix's qmgr hands a job only to a free agent
// process. Destinations that have work but find every slot taken wait in
// turn, one job per turn, so that no destination holds up the others
// beyond its window.
type agentSlots struct {
	limit   int // 0: no limit
	running int
	waiting []*dest
}

func (a *agentSlots) full() bool { return a.limit > 0 && a.running >= a.limit }

// wait queues d for a slot, once.
func (a *agentSlots) wait(d *dest) {
	if !d.waiting {
		d.waiting = true
		a.waiting = append(a.waiting, d)
	}
}

// kick hands free slots to the waiting destinations, one job per
// destination per turn. q.mu is held.
func (q *Qmgr) kick(a *agentSlots) {
	for !a.full() && len(a.waiting) > 0 {
		d := a.waiting[0]
		a.waiting[0] = nil
		a.waiting = a.waiting[1:]
		d.waiting = false
		switch {
		case q.closing:
		case d.win.dead():
			q.dispatch(d) // defers its jobs
		case d.ready():
			q.start(d)
			if d.ready() {
				a.wait(d)
			}
		}
		q.release(d)
	}
}

// agentSlots returns the slots of transport. q.mu is held.
func (q *Qmgr) agentSlots(transport string) *agentSlots {
	a := q.slots[transport]
	if a == nil {
		a = &agentSlots{limit: q.agentLimits[transport]}
		q.slots[transport] = a
	}
	return a
}

// agentLimits reads each unix service's maxproc from master.cf. Without
// a readable master.cf there are no limits.
func agentLimits(configDir string, defaultMaxproc int) map[string]int {
	m := map[string]int{}
	services, _, err := mastercf.Load(configDir, defaultMaxproc)
	if err != nil {
		return m
	}
	for _, s := range services {
		if s.Type == mastercf.TypeUnix {
			m[s.Name] = s.Maxproc
		}
	}
	return m
}

// Package qmgr is Postern's queue manager (Postfix's qmgr(8)): the
// scheduler between the queue and the delivery agents.
//
// It takes new mail from incoming/ into active/ (woken by cleanup's 'I'
// trigger and by master's periodic 'W'), brings deferred mail back when its
// retry time (the file's mtime) has come (every queue_run_delay, or at once
// on an 'F' flush trigger), resolves each pending recipient to a transport
// and next hop (pkg/resolve), groups recipients per destination (at most
// <transport>_destination_recipient_limit per request), and sends the
// requests to the agents at private/<transport>. Each destination has a
// concurrency window (sched.go, Postfix's scheduler): it starts at
// initial_destination_concurrency, grows with deliveries that work up to
// <transport>_destination_concurrency_limit, shrinks when the agent
// reports that the destination itself failed, and a destination that
// keeps failing is suspended for minimal_backoff_time, its mail deferred
// without an agent call; <transport>_destination_rate_delay spaces
// deliveries one at a time. It records each agent result in the queue file in place:
// Delivered and Failed recipients are done and never retried. When every
// recipient of a message has an answer the message leaves active/: to
// deferred/ with a back-off if any was deferred, else it is removed.
// Before that it queues the notices owed (bounce.go): non-delivery reports,
// success notices for NOTIFY=SUCCESS, one delay warning once the message is
// older than delay_warning_time, and the postmaster copies notify_classes
// asks for. A message whose attempt ends with recipients still deferred
// once its time in the queue has reached its lifetime
// (maximal_queue_lifetime, bounce_queue_lifetime for a bounce; 0: tried
// once) is returned to its sender rather than deferred (expire, as
// Postfix's qmgr_active.c): the last attempt always runs, and its deferral
// reasons are the report's. The error and retry transports (virtual alias
// misses, transport_maps entries) are answered here without an agent: the
// next hop is the reason.
//
// At start every file already in active/ (left by a crash or a stop) is
// scheduled again; recipients marked done are skipped, so a crash
// re-delivers at most the recipients whose result was not yet recorded. A
// file that does not parse goes to corrupt/ with a warning.
//
// Memory is bounded: at most qmgr_message_active_limit messages are in
// active/ at once; the rest wait in incoming/ and deferred/.
//
// Security: qmgr runs as mail_owner. It reads only queue files written by
// cleanup and talks only to agents through private/.
package qmgr

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"postern/pkg/config"
	"postern/pkg/deliver"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/resolve"
	"postern/pkg/server"
	"postern/pkg/table"
)

// Trigger bytes.
const (
	TriggerIncoming = 'I' // new mail in incoming/
	TriggerWakeup   = 'W' // periodic wake-up from master
	TriggerFlush    = 'F' // deliver deferred mail now
)

// Qmgr is the scheduler.
type Qmgr struct {
	cfg      *config.Config
	log      *maillog.Logger
	store    *queue.Store
	resolver *resolve.Resolver
	private  string

	activeLimit int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	runDelay    time.Duration
	lifetime    time.Duration // maximal_queue_lifetime
	// bounceLifetime is bounce_queue_lifetime, at most lifetime.
	bounceLifetime time.Duration
	ipcTimeout     time.Duration
	delims         string // recipient_delimiter
	notices        notices

	incoming chan struct{}
	deferred chan bool // true: flush (ignore retry times)

	mu     sync.Mutex
	active map[queue.ID]*message
	// resume is set when a deferred scan stopped at the active limit: the
	// scan goes on as room frees up (flush: true for a flush, which ignores
	// retry times), as Postfix's qmgr continues its queue scans.
	resume, resumeFlush bool
	// incomingLeft is set when an incoming/ scan stopped at the active
	// limit: only then does a message leaving active/ call for another
	// scan (cleanup's wake-ups cover new mail).
	incomingLeft bool
	// deferredLeft is the rest of a stopped deferred scan (run loop only).
	deferredLeft []queue.ID
	dests        map[string]*dest
	sched        map[string]*schedParams // per transport (sched.go)
	slots        map[string]*agentSlots  // per transport (sched.go)
	agentLimits  map[string]int          // master.cf maxproc per transport
	launch       func(*job)              // tests: instead of runJob
	closing      bool                    // no more deliveries start
	pools        map[string]*pool
	jobs         sync.WaitGroup
}

type message struct {
	id queue.ID
	// m is the parsed queue file. Its descriptor is released between
	// uses (qmgr holds up to qmgr_message_active_limit messages); fmu
	// serializes Reopen, SetStatus and Release among the message's jobs.
	m        *queue.Message
	fmu      sync.Mutex
	gone     bool // the file left active/ behind qmgr's back (under fmu)
	activeAt time.Time
	jobsLeft int
	deferred bool
	failures []failure // why recipients failed, for the bounce (under q.mu)
	// successes are recipients delivered with NOTIFY=SUCCESS in this
	// attempt, delays the deferred ones with their reasons, for the delay
	// warning and an expiry (under q.mu).
	successes []failure
	delays    []failure
}

type job struct {
	msg                       *message
	rcpts                     []int
	transport, queue, nexthop string // queue: the destination's name (queueName)
	dest                      *dest  // set under q.mu when the job is queued
}

// dest is one destination's queue (Postfix's in-core QMGR_QUEUE): jobs
// waiting, jobs running, and the concurrency window (sched.go). It exists
// while it has jobs, is dead or is pausing; all of it is under q.mu.
type dest struct {
	key                      string
	transport, name, nexthop string
	win                      window
	running                  int
	pending                  []*job
	// reason is why a dead destination is dead, "delivery temporarily
	// suspended: ..." (the DSN and text of the last site failure).
	reason deliver.Result
	// paused is set during the rate delay after a delivery.
	paused bool
	// agents is the transport's agent slots; waiting is set while d is
	// in their queue.
	agents  *agentSlots
	waiting bool
	revive  *time.Timer // brings a dead destination back
	pause   *time.Timer // ends the pause
}

// New builds the qmgr service.
func New(ctx context.Context, sc *server.Context) (any, error) {
	q, err := newQmgr(sc.Config, sc.Log)
	if err != nil {
		return nil, err
	}
	// qmgr's live heap grows with the active queue (up to
	// qmgr_message_active_limit parsed messages), unlike the other
	// workers': collect at the Go default to keep its peak near twice that.
	debug.SetGCPercent(100)
	sc.Go(q.run)
	return q, nil
}

func newQmgr(cfg *config.Config, log *maillog.Logger) (*Qmgr, error) {
	tables := table.NewCache(table.Options{Logger: log.Slog()})
	res, err := resolve.New(cfg, func(spec string) (table.Table, error) { return tables.Open(spec) })
	if err != nil {
		return nil, err
	}
	qdir := cfg.Get("queue_directory")
	q := &Qmgr{
		cfg:         cfg,
		log:         log,
		store:       queue.NewStore(qdir),
		resolver:    res,
		private:     filepath.Join(qdir, queue.Private),
		activeLimit: cfg.Int("qmgr_message_active_limit"),
		minBackoff:  cfg.Duration("minimal_backoff_time"),
		maxBackoff:  cfg.Duration("maximal_backoff_time"),
		runDelay:    cfg.Duration("queue_run_delay"),
		ipcTimeout:  cfg.Duration("ipc_timeout"),
		delims:      cfg.Get("recipient_delimiter"),
		incoming:    make(chan struct{}, 1),
		deferred:    make(chan bool, 1),
		active:      map[queue.ID]*message{},
		dests:       map[string]*dest{},
		sched:       map[string]*schedParams{},
		slots:       map[string]*agentSlots{},
		agentLimits: agentLimits(cfg.Get("config_directory"), cfg.Int("default_process_limit")),
		pools:       map[string]*pool{},
	}
	if q.activeLimit <= 0 {
		q.activeLimit = 20000
	}
	if q.runDelay <= 0 {
		q.runDelay = 300 * time.Second
	}
	var warn string
	q.lifetime, q.bounceLifetime, warn = queueLifetimes(cfg)
	if warn != "" {
		log.Warning("%s", warn)
	}
	q.initNotices()
	return q, nil
}

// Wake handles a trigger byte.
func (q *Qmgr) Wake(ctx context.Context, b byte) {
	switch b {
	case TriggerFlush:
		q.reviveDead()
		q.signalDeferred(true)
		q.signalIncoming()
	default:
		q.signalIncoming()
	}
}

func (q *Qmgr) signalIncoming() {
	select {
	case q.incoming <- struct{}{}:
	default:
	}
}

func (q *Qmgr) signalDeferred(flush bool) {
	select {
	case q.deferred <- flush:
	default:
		if flush {
			// A flush must not be lost behind a plain scan request.
			select {
			case <-q.deferred:
			default:
			}
			select {
			case q.deferred <- true:
			default:
			}
		}
	}
}

// run is the scheduler's main loop.
func (q *Qmgr) run(ctx context.Context) {
	q.recover()
	q.scanIncoming()
	q.scanDeferred(false)
	tick := time.NewTicker(q.runDelay)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			q.stopScheduling()
			q.jobs.Wait()
			q.closeAll()
			return
		case <-q.incoming:
			q.scanIncoming()
		case flush := <-q.deferred:
			q.scanDeferred(flush)
		case <-tick.C:
			q.scanDeferred(false)
			q.scanIncoming()
		}
	}
}

// recover schedules what a previous qmgr left in active/: as Postfix's
// qmgr, it moves those files back to incoming/, which is then scanned
// within qmgr_message_active_limit like new mail.
func (q *Qmgr) recover() {
	n, _ := q.store.CleanTemp(queue.Incoming, time.Hour)
	if n > 0 {
		q.log.Printf("removed %d stale temporary files from incoming", n)
	}
	ids, err := q.store.List(queue.Active)
	if err != nil {
		q.log.Warning("scan active queue: %v", err)
		return
	}
	for _, id := range ids {
		if err := q.store.Move(id, queue.Active, queue.Incoming); err != nil {
			q.log.Warning("%s: move back to incoming: %v", id, err)
		}
	}
}

func (q *Qmgr) room() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.active) < q.activeLimit
}

// roomOrMark is room, setting *left when there is none, under the same
// lock as the count: a message that leaves active/ after the check sees
// the mark (freed), so the stopped scan is always resumed.
func (q *Qmgr) roomOrMark(left *bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.active) < q.activeLimit {
		return true
	}
	*left = true
	return false
}

func (q *Qmgr) scanIncoming() {
	ids, err := q.store.List(queue.Incoming)
	if err != nil {
		q.log.Warning("scan incoming queue: %v", err)
		return
	}
	q.mu.Lock()
	q.incomingLeft = false
	q.mu.Unlock()
	for _, id := range ids {
		if !q.roomOrMark(&q.incomingLeft) {
			return
		}
		if err := q.store.Move(id, queue.Incoming, queue.Active); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				q.log.Warning("%s: move to active: %v", id, err)
			}
			continue
		}
		q.load(id)
	}
}

func (q *Qmgr) scanDeferred(flush bool) {
	// A scan that stopped at the active limit goes on where it stopped,
	// so a flush of a large queue lists deferred/ once, not once per
	// freed slot.
	ids := q.deferredLeft
	q.deferredLeft = nil
	q.mu.Lock()
	resuming := q.resume
	q.resume = false
	if resuming {
		flush = flush || q.resumeFlush
	}
	q.mu.Unlock()
	if !resuming || len(ids) == 0 {
		var err error
		if ids, err = q.store.List(queue.Deferred); err != nil {
			q.log.Warning("scan deferred queue: %v", err)
			return
		}
	}
	now := time.Now()
	for k, id := range ids {
		if !q.room() {
			q.deferredLeft = ids[k:]
			q.mu.Lock()
			q.resume, q.resumeFlush = true, flush
			q.mu.Unlock()
			return
		}
		if !flush {
			t, err := q.store.NextAttempt(queue.Deferred, id)
			if err != nil || t.After(now) {
				continue
			}
		}
		if err := q.store.Move(id, queue.Deferred, queue.Active); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				q.log.Warning("%s: move to active: %v", id, err)
			}
			continue
		}
		q.load(id)
	}
}

// load opens a message in active/ and schedules its pending recipients.
func (q *Qmgr) load(id queue.ID) {
	m, err := q.store.Open(queue.Active, id)
	if err != nil {
		if errors.Is(err, queue.ErrCorrupt) {
			q.log.Warning("%s: %v; moved to corrupt queue", id, err)
			if qerr := q.store.Quarantine(queue.Active, id); qerr != nil {
				q.log.Warning("%s: move to corrupt: %v", id, qerr)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			// Not the file's fault (out of descriptors, say): put it back
			// for a later attempt rather than leave it in active/ unseen.
			q.log.Warning("%s: open: %v; will try again", id, err)
			q.store.SetNextAttempt(queue.Active, id, time.Now().Add(time.Minute))
			q.store.Move(id, queue.Active, queue.Deferred)
		}
		return
	}
	env := &m.Envelope
	msg := &message{id: id, m: m, activeAt: time.Now()}
	q.log.Queued(string(id), env.Sender, m.Size, len(env.Recipients))

	groups := map[string]*job{}
	var order []*job
	for i, r := range env.Recipients {
		if r.Status.Done() {
			continue
		}
		res, err := q.route(env, r.Addr) // a content filter overrides the resolver (filter.go)
		if err != nil {
			q.log.Warning("%s: resolve %s: %v", id, r.Addr, err)
			q.finishRecipient(msg, i, deliver.Result{Index: i, Status: deliver.Defer, DSN: "4.3.0", Text: "address resolver failure"}, "", "none", "")
			continue
		}
		switch res.Transport {
		case "error":
			code, text := splitReason(res.Nexthop, "5.0.0")
			q.finishRecipient(msg, i, deliver.Result{Index: i, Status: deliver.Bounce, DSN: code, Text: text}, "", "none", "")
			continue
		case "retry":
			code, text := splitReason(res.Nexthop, "4.0.0")
			q.finishRecipient(msg, i, deliver.Result{Index: i, Status: deliver.Defer, DSN: code, Text: text}, "", "none", "")
			continue
		case "discard":
			q.finishRecipient(msg, i, deliver.Result{Index: i, Status: deliver.Sent, DSN: "2.0.0", Text: "discarded"}, "", "none", "")
			continue
		}
		limit := q.recipientLimit(res.Transport)
		rcpt := res.Recipient
		if rcpt == "" {
			rcpt = r.Addr
		}
		name := queueName(rcpt, res.Nexthop, q.delims, limit == 1)
		key := res.Transport + "\x00" + name
		j := groups[key]
		if j == nil || len(j.rcpts) >= limit {
			j = &job{msg: msg, transport: res.Transport, queue: name, nexthop: res.Nexthop}
			groups[key] = j
			order = append(order, j)
		}
		j.rcpts = append(j.rcpts, i)
	}
	// Results made above are written; the jobs reopen the file for theirs.
	m.Release()
	q.mu.Lock()
	q.active[id] = msg
	msg.jobsLeft = len(order)
	if len(order) == 0 {
		q.mu.Unlock()
		q.finish(msg)
		return
	}
	for _, j := range order {
		j.dest = q.dest(j.transport, j.queue, j.nexthop)
		j.dest.pending = append(j.dest.pending, j)
	}
	for _, j := range order {
		q.dispatch(j.dest)
	}
	q.mu.Unlock()
}

// param returns <transport>_<name> when main.cf sets it or Postfix
// defines it (local_destination_recipient_limit = 1, ...), else
// default_<name>.
func (q *Qmgr) param(transport, name string) int {
	key := transport + "_" + name
	if v, ok := q.cfg.Raw(key); ok && v != "" {
		return q.cfg.Int(key)
	}
	if _, ok := config.Lookup(key); ok {
		return q.cfg.Int(key)
	}
	return q.cfg.Int("default_" + name)
}

func (q *Qmgr) recipientLimit(transport string) int {
	n := q.param(transport, "destination_recipient_limit")
	if n <= 0 {
		n = 50
	}
	return n
}

// dest returns the queue of a destination (its name from queueName), made
// when first needed. q.mu is held.
func (q *Qmgr) dest(transport, name, nexthop string) *dest {
	key := transport + "\x00" + name
	d := q.dests[key]
	if d == nil {
		d = &dest{key: key, transport: transport, name: name, nexthop: nexthop, win: newWindow(q.schedParams(transport)), agents: q.agentSlots(transport)}
		q.dests[key] = d
	}
	return d
}

// dispatch starts jobs of d while its window allows. The jobs of a dead
// destination are deferred at once, without an agent. q.mu is held.
func (q *Qmgr) dispatch(d *dest) {
	if q.closing {
		return
	}
	if d.win.dead() {
		if len(d.pending) == 0 {
			return
		}
		jobs, reason := d.pending, d.reason
		d.pending = nil
		q.jobs.Add(1)
		go func() {
			defer q.jobs.Done()
			for _, j := range jobs {
				q.record(j, nil, nil, &reason)
				q.mu.Lock()
				done := q.jobDone(j)
				q.mu.Unlock()
				if done {
					q.finish(j.msg)
				}
			}
		}()
		return
	}
	for d.ready() {
		if d.agents.full() {
			d.agents.wait(d)
			return
		}
		q.start(d)
	}
}

// start runs d's next job. q.mu is held.
func (q *Qmgr) start(d *dest) {
	j := d.pending[0]
	d.pending[0] = nil
	d.pending = d.pending[1:]
	d.running++
	d.agents.running++
	q.jobs.Add(1)
	if q.launch != nil {
		go q.launch(j)
		return
	}
	go q.runJob(j)
}

// jobDone counts a finished job of its message and reports whether it was
// the message's last. q.mu is held.
func (q *Qmgr) jobDone(j *job) bool {
	j.msg.jobsLeft--
	return j.msg.jobsLeft == 0
}

func (q *Qmgr) runJob(j *job) {
	defer q.jobs.Done()
	msg := j.msg
	env := &msg.m.Envelope
	req := &deliver.Request{
		QueueID: string(msg.id),
		Queue:   queue.Active,
		Sender:  env.Sender,
		Nexthop: j.dest.nexthop,
		Arrival: env.Arrival,
		Active:  msg.activeAt,
	}
	for _, i := range j.rcpts {
		r := env.Recipients[i]
		req.Recipients = append(req.Recipients, deliver.Recipient{Index: i, Addr: r.Addr, Orig: r.Orig, Notify: r.Notify, ORcpt: r.ORcpt})
	}
	results, err := q.call(j.dest.transport, req)
	q.record(j, results, err, nil)
	q.mu.Lock()
	done := q.jobDone(j)
	q.delivered(j.dest, results, err)
	q.mu.Unlock()
	if done {
		q.finish(msg)
	}
}

// record writes a job's results into its message. suspended, when set,
// is the result of every recipient of a job for a dead destination,
// which no agent saw (qmgr logs it).
func (q *Qmgr) record(j *job, results []deliver.Result, err error, suspended *deliver.Result) {
	msg := j.msg
	msg.fmu.Lock()
	defer msg.fmu.Unlock()
	if rerr := msg.m.Reopen(q.store.Path(queue.Active, msg.id)); errors.Is(rerr, fs.ErrNotExist) {
		msg.gone = true // deleted or held by the admin meanwhile
	} else if rerr != nil {
		q.log.Warning("%s: %v", msg.id, rerr)
	}
	defer msg.m.Release()
	if suspended != nil {
		for _, i := range j.rcpts {
			r := *suspended
			r.Index = i
			q.finishRecipient(msg, i, r, "", "none", "")
		}
		return
	}
	got := map[int]bool{}
	for _, r := range results {
		if !contains(j.rcpts, r.Index) || got[r.Index] {
			continue
		}
		got[r.Index] = true
		q.finishRecipient(msg, r.Index, r, "", "", j.dest.transport)
	}
	if err != nil {
		q.log.Warning("%s: transport %s: %v", msg.id, j.dest.transport, err)
		for _, i := range j.rcpts {
			if !got[i] {
				q.finishRecipient(msg, i, deliver.Result{Index: i, Status: deliver.Defer, DSN: "4.3.0",
					Text: "delivery temporarily suspended: transport " + j.dest.transport + " unavailable"}, "", "none", "")
			}
		}
	}
}

// delivered accounts for a finished delivery to d: feedback, the rate
// delay pause, and the next jobs. q.mu is held.
func (q *Qmgr) delivered(d *dest, results []deliver.Result, err error) {
	if err == nil {
		// An agent that failed (err) says nothing about the destination,
		// as a crashed Postfix agent gives no queue feedback.
		q.feedback(d, results)
	}
	d.running--
	d.agents.running--
	if p := d.win.p; p.rateDelay > 0 && !d.win.dead() && !q.closing {
		d.paused = true
		d.pause = time.AfterFunc(p.rateDelay, func() { q.wake(d, false) })
	}
	// Destinations that waited for an agent go first; d queues behind
	// them if the transport is busy.
	q.kick(d.agents)
	q.dispatch(d)
	q.release(d)
}

// feedback adjusts d's window after a delivery: a site failure (the
// destination, not a recipient, failed) is negative feedback and may
// kill the destination, anything else is positive (Postfix's
// qmgr_deliver_update). q.mu is held; d.running still counts the job.
func (q *Qmgr) feedback(d *dest, results []deliver.Result) {
	var site *deliver.Result
	for k := range results {
		if results[k].Site && results[k].Status == deliver.Defer {
			site = &results[k]
			break
		}
	}
	if site == nil {
		if d.win.succeeded(d.running) && d.revive != nil {
			d.revive.Stop()
			d.revive = nil
		}
		q.debugWindow("qmgr_queue_unthrottle", d)
		return
	}
	if d.win.dead() {
		return // already dead: one reason is enough
	}
	if d.win.failed() {
		dsn, text := site.DSN, site.Text
		if !validStatus(dsn) || dsn[0] != '4' {
			dsn = "4.0.0"
		}
		if text == "" {
			text = "unknown error"
		}
		d.reason = deliver.Result{Status: deliver.Defer, DSN: dsn, Text: "delivery temporarily suspended: " + text}
		d.revive = time.AfterFunc(d.win.p.retry, func() { q.wake(d, true) })
	}
	q.debugWindow("qmgr_queue_throttle", d)
}

// wake ends the rate-delay pause of d, or (revive) gives a dead d another
// chance after minimal_backoff_time, as Postfix's unthrottle timer.
func (q *Qmgr) wake(d *dest, revive bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return
	}
	if revive {
		d.revive = nil
		if d.win.dead() {
			d.win.succeeded(d.running)
			q.debugWindow("qmgr_queue_unthrottle", d)
		}
	} else {
		d.paused, d.pause = false, nil
	}
	q.dispatch(d)
	q.release(d)
}

// release forgets d when nothing refers to it: no job, not dead, not
// pausing (Postfix's qmgr_queue_done). Its window starts afresh next
// time. q.mu is held.
func (q *Qmgr) release(d *dest) {
	if d.running == 0 && len(d.pending) == 0 && !d.win.dead() && !d.paused && !d.waiting && q.dests[d.key] == d {
		delete(q.dests, d.key)
	}
}

// stopScheduling starts no more deliveries and stops the timers.
func (q *Qmgr) stopScheduling() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closing = true
	for _, d := range q.dests {
		for _, t := range []*time.Timer{d.revive, d.pause} {
			if t != nil {
				t.Stop()
			}
		}
	}
}

func (q *Qmgr) debugWindow(fn string, d *dest) {
	if d.win.p.debug {
		q.log.Printf("%s: queue %s: %s", fn, d.name, d.win.String())
	}
}

// splitReason splits the next hop of the error and retry transports, "text"
// or "X.Y.Z text" as error(8) takes it, into a status and a text. A status
// of the wrong class (2.x.x, or 4.x.x for error) gives def.
func splitReason(nexthop, def string) (code, text string) {
	code, text = def, nexthop
	if c, rest, ok := strings.Cut(nexthop, " "); ok && validStatus(c) && c[0] == def[0] {
		code, text = c, strings.TrimSpace(rest)
	}
	if text == "" {
		text = "Address is undeliverable"
	}
	return code, text
}

// validStatus reports whether s is an RFC 3463 status code, class.subject.detail.
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || (parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// finishRecipient records one result. logStatus/relay are set when qmgr
// itself decided (no agent logged the line); transport is the agent's.
func (q *Qmgr) finishRecipient(msg *message, i int, r deliver.Result, logStatus, relay, transport string) {
	var st queue.RcptStatus
	switch r.Status {
	case deliver.Sent:
		st = queue.Delivered
		// Kept for a success notice, and for a sendmail -v report (which
		// names every delivered recipient with the agent's text).
		if n := msg.m.Envelope.Recipients[i].Notify; (n != "" && wantsNotice(n, "SUCCESS")) || traced(&msg.m.Envelope) {
			q.mu.Lock()
			msg.successes = append(msg.successes, failure{index: i, result: r, when: time.Now(), transport: transport})
			q.mu.Unlock()
		}
	case deliver.Bounce:
		st = queue.Failed
		q.mu.Lock()
		msg.failures = append(msg.failures, failure{index: i, result: r, when: time.Now()})
		q.mu.Unlock()
	default:
		q.mu.Lock()
		msg.deferred = true
		msg.delays = append(msg.delays, failure{index: i, result: r, when: time.Now()})
		q.mu.Unlock()
		if !msg.gone { // mailq's "(reason)", postqueue -j's delay_reason
			rc := msg.m.Envelope.Recipients[i]
			if err := q.store.AppendDeferLog(msg.id, queue.DeferReason{Addr: rc.Addr, Orig: rc.Orig, Status: r.DSN, Reason: r.Text}); err != nil {
				q.log.Warning("%s: %v", msg.id, err)
			}
		}
	}
	if st != 0 {
		if err := msg.m.SetStatus(i, st); err != nil {
			// The result is lost only in the file: the recipient will be
			// tried again, which may duplicate it but never loses it.
			q.log.Warning("%s: record status of recipient %d: %v", msg.id, i, err)
			q.mu.Lock()
			msg.deferred = true
			q.mu.Unlock()
		}
	}
	if relay != "" {
		rc := msg.m.Envelope.Recipients[i]
		status := logStatus
		if status == "" {
			status = map[deliver.Status]string{deliver.Sent: "sent", deliver.Defer: "deferred", deliver.Bounce: "bounced"}[r.Status]
		}
		now := time.Now()
		q.log.Delivered(string(msg.id), maillog.Delivery{
			To: rc.Addr, OrigTo: rc.Orig, Relay: relay,
			Delay:  now.Sub(msg.m.Envelope.Arrival),
			Delays: [4]time.Duration{msg.activeAt.Sub(msg.m.Envelope.Arrival), now.Sub(msg.activeAt), 0, 0},
			DSN:    r.DSN, Status: status, Text: r.Text,
		})
	}
}

// finish takes a message out of active/ once every job has answered.
func (q *Qmgr) finish(msg *message) {
	q.mu.Lock()
	deferred := msg.deferred
	q.mu.Unlock()
	// The message counts against qmgr_message_active_limit until its
	// file has left active/.
	defer func() {
		q.mu.Lock()
		delete(q.active, msg.id)
		q.mu.Unlock()
		q.freed()
	}()
	id := msg.id
	m := msg.m
	if msg.gone {
		// The admin deleted or held it while it was being delivered
		// (postern queue delete/hold): nothing is left to do. A removal
		// after the last job is caught below by the missing file.
		m.Close()
		return
	}
	q.traceReport(msg) // sendmail -v, before the other notices (trace.go)
	if len(msg.successes) > 0 {
		q.notifySuccess(msg)
	}
	if deferred {
		// Failed recipients are reported now, with this attempt's
		// reasons, not when the last deferred one is done (as Postfix's
		// bounce log is flushed after every attempt).
		if err := q.bounceWithFile(msg, true); err != nil {
			q.log.Warning("%s: %v", id, err)
		}
		// As Postfix's qmgr_active_done: an expired message gets no delay
		// warning, and one whose report could not be queued stays
		// deferred, to be tried (and expired) again.
		if expired(m.Envelope.Arrival, time.Now(), q.lifetimeFor(m.Envelope.Sender)) {
			if q.expire(msg) {
				m.Close()
				q.remove(id)
				return
			}
		} else {
			q.delayWarn(msg)
		}
		m.Close()
		age := time.Since(m.Envelope.Arrival)
		q.toDeferred(id, min(max(age, q.minBackoff), q.maxBackoff))
	} else if err := q.bounceWithFile(msg, false); err != nil {
		// Keep the message until its sender can be told.
		q.log.Warning("%s: %v", id, err)
		m.Close()
		q.toDeferred(id, q.minBackoff)
	} else {
		m.Close()
		q.remove(id)
	}
}

// toDeferred moves a message from active/ to deferred/, to be tried again
// after delay.
func (q *Qmgr) toDeferred(id queue.ID, delay time.Duration) {
	if err := q.store.SetNextAttempt(queue.Active, id, time.Now().Add(delay)); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			q.log.Warning("%s: set retry time: %v", id, err)
		}
	}
	if err := q.store.Move(id, queue.Active, queue.Deferred); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			q.log.Warning("%s: move to deferred: %v", id, err)
		}
	}
}

// remove deletes a message that is done from active/.
func (q *Qmgr) remove(id queue.ID) {
	if err := q.store.Remove(queue.Active, id); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			q.log.Warning("%s: remove: %v", id, err)
		}
	} else {
		q.log.Removed(string(id))
	}
}

// queueLifetimes reads maximal_queue_lifetime and bounce_queue_lifetime.
// As Postfix's qmgr, it lowers a bounce lifetime above the maximal one to
// it, and says so in warn.
func queueLifetimes(cfg *config.Config) (lifetime, bounce time.Duration, warn string) {
	lifetime = max(cfg.Duration("maximal_queue_lifetime"), 0)
	bounce = max(cfg.Duration("bounce_queue_lifetime"), 0)
	if bounce > lifetime {
		warn = "bounce_queue_lifetime is larger than maximal_queue_lifetime - adjusting bounce_queue_lifetime"
		bounce = lifetime
	}
	return lifetime, bounce, warn
}

// lifetimeFor is how long mail from sender may stay queued:
// bounce_queue_lifetime for a bounce (the null sender), else
// maximal_queue_lifetime.
func (q *Qmgr) lifetimeFor(sender string) time.Duration {
	if sender == "" {
		return q.bounceLifetime
	}
	return q.lifetime
}

// expired reports whether a message that arrived at arrival and still has
// deferred recipients when an attempt ends at now is to be returned: its
// time in the queue has reached lifetime (Postfix: event_time() >=
// create_time + lifetime). A lifetime of 0 expires it after its first
// attempt: "Specify 0 when mail delivery should be tried only once"
// (postconf(5)).
func expired(arrival, now time.Time, lifetime time.Duration) bool {
	return !now.Before(arrival.Add(lifetime))
}

// expire returns a message whose lifetime is over, as Postfix's qmgr
// flushes the defer log as a bounce: it logs "ID: from=<sender>,
// status=expired, returned to sender", every recipient not yet done fails
// with the status and text of its last deferral (Postfix's failure report
// keeps the 4.X.Y status under "Action: failed"), and the sender gets the
// non-delivery report. It reports whether the message is done. When the
// report cannot be queued the recipients are pending again and the
// message stays deferred: the next attempt tries them, and expires them,
// again.
func (q *Qmgr) expire(msg *message) bool {
	env := &msg.m.Envelope
	q.log.Expired(string(msg.id), env.Sender)
	q.mu.Lock()
	last := byIndex(msg.delays)
	q.mu.Unlock()
	now := time.Now()
	err := q.withFile(msg, func() error {
		undo := map[int]queue.RcptStatus{}
		revert := func() {
			for i, st := range undo {
				if err := msg.m.SetStatus(i, st); err != nil {
					q.log.Warning("%s: %v", msg.id, err)
				}
			}
		}
		var fails []failure
		for i, r := range env.Recipients {
			if r.Status.Done() {
				continue
			}
			f, ok := last[i]
			if !ok {
				// Deferred without a reason of this attempt (its
				// result could not be recorded in the file).
				f = failure{index: i, result: deliver.Result{Index: i, Status: deliver.Defer, DSN: "4.4.7", Text: "message expired"}, when: now}
			}
			if err := msg.m.SetStatus(i, queue.Failed); err != nil {
				revert()
				return err
			}
			undo[i] = r.Status
			fails = append(fails, f)
		}
		q.mu.Lock()
		msg.failures = append(msg.failures, fails...)
		q.mu.Unlock()
		if err := q.bounce(msg, false); err != nil {
			revert()
			return err
		}
		return nil
	})
	if err != nil {
		q.log.Warning("%s: %v", msg.id, err)
		return false
	}
	return true
}

// freed takes in more mail after a message left active/.
func (q *Qmgr) freed() {
	q.mu.Lock()
	incoming, resume, flush := q.incomingLeft, q.resume, q.resumeFlush
	q.mu.Unlock()
	if incoming {
		q.signalIncoming()
	}
	if resume {
		q.signalDeferred(flush)
	}
}

// bounceWithFile reopens the file for the bounce, which returns the
// original content. mark records the reported recipients as Bounced, for
// a message that stays in the queue.
func (q *Qmgr) bounceWithFile(msg *message, mark bool) error {
	failed := false
	for _, r := range msg.m.Envelope.Recipients {
		failed = failed || r.Status == queue.Failed
	}
	if !failed {
		return nil
	}
	return q.withFile(msg, func() error { return q.bounce(msg, mark) })
}

// pool keeps idle connections to one transport's agent.
type pool struct {
	mu   sync.Mutex
	idle []*deliver.Client
}

func (q *Qmgr) call(transport string, req *deliver.Request) ([]deliver.Result, error) {
	q.mu.Lock()
	p := q.pools[transport]
	if p == nil {
		p = &pool{}
		q.pools[transport] = p
	}
	q.mu.Unlock()
	p.mu.Lock()
	var cl *deliver.Client
	if n := len(p.idle); n > 0 {
		cl = p.idle[n-1]
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()
	fresh := false
	if cl == nil {
		var err error
		cl, err = deliver.Dial(filepath.Join(q.private, transport), transport, q.ipcTimeout)
		if err != nil {
			return nil, err
		}
		fresh = true
	}
	res, err := cl.Deliver(req)
	if err != nil && !fresh && len(res) == 0 {
		// An idle connection may have been closed by an agent that exited
		// (max_idle, reload): try once on a new one.
		cl.Close()
		cl, err = deliver.Dial(filepath.Join(q.private, transport), transport, q.ipcTimeout)
		if err != nil {
			return nil, err
		}
		res, err = cl.Deliver(req)
	}
	if err != nil {
		cl.Close()
		return res, err
	}
	p.mu.Lock()
	if len(p.idle) < 64 {
		p.idle = append(p.idle, cl)
		cl = nil
	}
	p.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	return res, nil
}

func (q *Qmgr) closeAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, p := range q.pools {
		for _, c := range p.idle {
			c.Close()
		}
		p.idle = nil
	}
	for _, m := range q.active {
		m.m.Close()
	}
}

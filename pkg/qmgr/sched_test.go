package qmgr

import (
	"errors"
	"math"
	"testing"
	"time"

	"postern/pkg/deliver"
)

func TestParseFeedback(t *testing.T) {
	for _, c := range []struct {
		in        string
		base      float64
		perWindow bool
		ok        bool
	}{
		{"1", 1, false, true},
		{"0", 0, false, true},
		{"0.5", 0.5, false, true},
		{" 1 ", 1, false, true},
		{"1/concurrency", 1, true, true},
		{"1 / concurrency", 1, true, true},
		{"0.5/Concurrency", 0.5, true, true},
		{"1/8", 0.125, false, true},
		{"3/4", 0.75, false, true},
		{"2", 0, false, false},
		{"-1", 0, false, false},
		{"2/concurrency", 0, false, false},
		{"1/0", 0, false, false},
		{"1/x", 0, false, false},
		{"", 0, false, false},
		{"fast", 0, false, false},
		{"inf", 0, false, false},
		{"nan", 0, false, false},
		{"0x1p-2", 0, false, false},
		{"/concurrency", 0, false, false},
	} {
		f, err := parseFeedback(c.in)
		if (err == nil) != c.ok {
			t.Errorf("parseFeedback(%q): err %v, want ok %v", c.in, err, c.ok)
			continue
		}
		if c.ok && (math.Abs(f.base-c.base) > 1e-12 || f.perWindow != c.perWindow) {
			t.Errorf("parseFeedback(%q) = %+v, want base %g perWindow %v", c.in, f, c.base, c.perWindow)
		}
	}
}

func FuzzParseFeedback(f *testing.F) {
	for _, s := range []string{"1", "1/concurrency", "1/8", "0.5", "x/y", "1/", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fb, err := parseFeedback(s)
		if err != nil {
			return
		}
		if !(fb.base >= 0 && fb.base <= 1) {
			t.Fatalf("parseFeedback(%q) = %+v out of [0,1]", s, fb)
		}
		for _, w := range []int{1, 5, 20} {
			if v := fb.value(w); math.IsNaN(v) || v < 0 || v > 1 {
				t.Fatalf("parseFeedback(%q).value(%d) = %g", s, w, v)
			}
		}
	})
}

func params(initial, limit, cohorts int, pos, neg string) *schedParams {
	p := &schedParams{initial: initial, limit: limit, cohortLimit: cohorts}
	var err error
	if p.pos, err = parseFeedback(pos); err != nil {
		panic(err)
	}
	if p.neg, err = parseFeedback(neg); err != nil {
		panic(err)
	}
	return p
}

// succeed feeds n successes with the window fully busy.
func succeed(w *window, n int) {
	for range n {
		w.succeeded(w.size)
	}
}

func TestWindowGrowthPerConcurrency(t *testing.T) {
	w := newWindow(params(5, 20, 1, "1/concurrency", "1/concurrency"))
	if w.size != 5 {
		t.Fatalf("initial window %d, want 5", w.size)
	}
	// 1/concurrency: one more after a window's worth of successes.
	succeed(&w, 4)
	if w.size != 5 {
		t.Fatalf("after 4 successes window %d, want 5", w.size)
	}
	succeed(&w, 1)
	if w.size != 6 {
		t.Fatalf("after 5 successes window %d, want 6", w.size)
	}
	succeed(&w, 6)
	if w.size != 7 {
		t.Fatalf("after 6 more successes window %d, want 7", w.size)
	}
}

func TestWindowGrowthNumeric(t *testing.T) {
	w := newWindow(params(5, 20, 1, "1", "1"))
	succeed(&w, 3)
	if w.size != 8 {
		t.Fatalf("feedback 1: after 3 successes window %d, want 8", w.size)
	}
	w = newWindow(params(5, 20, 1, "1/2", "1"))
	succeed(&w, 4)
	if w.size != 7 {
		t.Fatalf("feedback 1/2: after 4 successes window %d, want 7", w.size)
	}
}

func TestWindowCapAndBusy(t *testing.T) {
	w := newWindow(params(5, 8, 1, "1", "1"))
	succeed(&w, 100)
	if w.size != 8 {
		t.Fatalf("window %d, want the limit 8", w.size)
	}
	// No limit (0): the window still stays within initial of what is busy.
	w = newWindow(params(5, 0, 1, "1", "1"))
	for range 100 {
		w.succeeded(1)
	}
	if w.size != 6 {
		t.Fatalf("window %d with one delivery busy, want 6 (busy+initial)", w.size)
	}
	// An initial window above the limit would be clamped by schedParams;
	// a window never grows past busy+initial even under the limit.
	w = newWindow(params(2, 20, 1, "1", "1"))
	for range 10 {
		w.succeeded(1)
	}
	if w.size != 3 {
		t.Fatalf("window %d, want 3", w.size)
	}
}

func TestWindowShrinkAndDeath(t *testing.T) {
	// 1/concurrency from 5: the cohort count passes 1 at the fifth
	// failure (0.2+0.25+0.25+0.25+0.33), the window shrinks on the way.
	w := newWindow(params(5, 20, 1, "1/concurrency", "1/concurrency"))
	sizes := []int{4, 4, 4, 3}
	for k, want := range sizes {
		if w.failed() {
			t.Fatalf("dead after %d failures", k+1)
		}
		if w.size != want {
			t.Fatalf("after %d failures window %d, want %d", k+1, w.size, want)
		}
	}
	if !w.failed() || !w.dead() {
		t.Fatalf("not dead after 5 failures: %s", w.String())
	}
	if w.failed() {
		t.Fatal("a dead destination died again")
	}

	// At window 1 one failed delivery is a whole failed cohort.
	w = newWindow(params(1, 1, 1, "1/concurrency", "1/concurrency"))
	if !w.failed() {
		t.Fatalf("window 1: not dead after one failure: %s", w.String())
	}

	// A cohort limit of 2 at window 1 takes two failures.
	w = newWindow(params(1, 20, 2, "1", "1"))
	if w.failed() || w.size != 1 {
		t.Fatalf("cohort limit 2: dead or window %d after one failure", w.size)
	}
	if !w.failed() {
		t.Fatal("cohort limit 2: not dead after two failures")
	}

	// Cohort limit 0: never dead; the window stays at 1.
	w = newWindow(params(5, 20, 0, "1", "1"))
	for range 50 {
		if w.failed() {
			t.Fatal("cohort limit 0: dead")
		}
	}
	if w.size != 1 {
		t.Fatalf("cohort limit 0: window %d, want 1", w.size)
	}

	// A success between failures resets the cohort count.
	w = newWindow(params(1, 20, 2, "1", "1"))
	w.failed()
	w.succeeded(1)
	if w.failed() {
		t.Fatal("dead although a success came between the failures")
	}
}

func TestWindowRevive(t *testing.T) {
	w := newWindow(params(5, 20, 1, "1", "1"))
	for !w.failed() {
	}
	if !w.succeeded(0) {
		t.Fatal("a dead destination was not revived")
	}
	if w.dead() || w.size != 5 {
		t.Fatalf("revived window %d, want the initial 5", w.size)
	}
	// A success of a delivery still in flight revives at what is busy.
	for !w.failed() {
	}
	w.succeeded(3)
	if w.size != 3 {
		t.Fatalf("revived with 3 busy: window %d, want 3", w.size)
	}
	if w.succeeded(3) {
		t.Fatal("a live destination was revived")
	}
}

func TestQueueName(t *testing.T) {
	for _, c := range []struct {
		rcpt, nexthop, delims string
		per                   bool
		want                  string
	}{
		{"User@Example.COM", "Example.COM", "+", false, "example.com"},
		{"User+ext@example.com", "example.com", "+", true, "user@example.com"},
		{"joe-x@host", "mta.test", "+-", true, "joe@mta.test"},
		{"joe+x@host", "mta.test", "", true, "joe+x@mta.test"},
		{"+x@host", "mta.test", "+", true, "+x@mta.test"},
		{"\"a@b\"@host", "h", "+", true, "\"a@b\"@h"},
		{"bare", "h", "+", true, "bare@h"},
	} {
		if got := queueName(c.rcpt, c.nexthop, c.delims, c.per); got != c.want {
			t.Errorf("queueName(%q, %q, %q, %v) = %q, want %q", c.rcpt, c.nexthop, c.delims, c.per, got, c.want)
		}
	}
}

// testDest makes a Qmgr with one destination whose delivery is in flight.
func testDest(p *schedParams) (*Qmgr, *dest) {
	q := &Qmgr{dests: map[string]*dest{}}
	d := &dest{key: "smtp\x00x.example", transport: "smtp", name: "x.example", nexthop: "x.example", win: newWindow(p), running: 1,
		agents: &agentSlots{running: 1}}
	q.dests[d.key] = d
	return q, d
}

// waitFor polls cond under q.mu until it holds or the timeout passes.
func waitFor(q *Qmgr, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		q.mu.Lock()
		ok := cond()
		q.mu.Unlock()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDestDeathAndRevival(t *testing.T) {
	p := params(1, 20, 1, "1", "1")
	p.retry = 100 * time.Millisecond
	q, d := testDest(p)
	site := deliver.Result{Status: deliver.Defer, DSN: "4.4.1", Text: "connect to x.example[192.0.2.1]:25: Connection refused", Site: true}
	died := time.Now()
	q.mu.Lock()
	q.delivered(d, []deliver.Result{site}, nil)
	if !d.win.dead() {
		t.Fatalf("window 1, one site failure: not dead: %s", d.win.String())
	}
	want := "delivery temporarily suspended: connect to x.example[192.0.2.1]:25: Connection refused"
	if d.reason.Text != want || d.reason.DSN != "4.4.1" || d.reason.Status != deliver.Defer {
		t.Errorf("reason %+v, want 4.4.1 %q", d.reason, want)
	}
	if q.dests[d.key] != d {
		t.Error("a dead destination was forgotten")
	}
	q.mu.Unlock()
	if !waitFor(q, 5*time.Second, func() bool { return !d.win.dead() }) {
		t.Fatal("dead destination not revived after the back-off")
	}
	if since := time.Since(died); since < p.retry {
		t.Errorf("revived after %v, before the back-off %v", since, p.retry)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if d.win.size != 1 {
		t.Errorf("revived window %d, want the initial 1", d.win.size)
	}
	if _, ok := q.dests[d.key]; ok {
		t.Error("an idle revived destination is still held")
	}
}

func TestDestFeedbackKinds(t *testing.T) {
	q, d := testDest(params(5, 20, 1, "1", "1"))
	q.mu.Lock()
	defer q.mu.Unlock()
	// A recipient's deferral or bounce is no site failure: positive.
	q.delivered(d, []deliver.Result{{Status: deliver.Defer, DSN: "4.2.2", Text: "mailbox full"}, {Status: deliver.Bounce, DSN: "5.1.1"}}, nil)
	if d.win.size != 6 {
		t.Errorf("after a recipient-level deferral window %d, want 6", d.win.size)
	}
	// An agent that failed gives no feedback.
	d.running = 1
	q.delivered(d, nil, errors.New("transport smtp unavailable"))
	if d.win.size != 6 {
		t.Errorf("after an agent failure window %d, want 6", d.win.size)
	}
	// A site failure shrinks it (feedback 1: the first step overshoots
	// by one, as Postfix's hysteresis does).
	d.running = 1
	q.delivered(d, []deliver.Result{{Status: deliver.Defer, DSN: "4.4.2", Text: "lost connection", Site: true}}, nil)
	if d.win.size != 4 || d.win.dead() {
		t.Errorf("after a site failure window %d, want 4", d.win.size)
	}
	// A bad status in a site failure is sanitized.
	d.win.size = 1
	d.running = 1
	q.delivered(d, []deliver.Result{{Status: deliver.Defer, DSN: "2.0.0", Text: "", Site: true}}, nil)
	if !d.win.dead() || d.reason.DSN != "4.0.0" || d.reason.Text != "delivery temporarily suspended: unknown error" {
		t.Errorf("dead %v reason %+v", d.win.dead(), d.reason)
	}
	q.closing = true
	d.revive.Stop()
}

func TestDestRateDelayPause(t *testing.T) {
	p := params(1, 1, 1, "1", "1")
	p.rateDelay = 100 * time.Millisecond
	q, d := testDest(p)
	q.mu.Lock()
	q.delivered(d, []deliver.Result{{Status: deliver.Sent}}, nil)
	paused := time.Now()
	if !d.paused || q.dests[d.key] != d {
		t.Fatal("no pause after a delivery with a rate delay")
	}
	if d.win.size != 1 {
		t.Errorf("window %d with a rate delay, want 1", d.win.size)
	}
	q.mu.Unlock()
	if !waitFor(q, 5*time.Second, func() bool { return !d.paused }) {
		t.Fatal("pause never ended")
	}
	if since := time.Since(paused); since < p.rateDelay-5*time.Millisecond {
		t.Errorf("pause ended after %v, want %v", since, p.rateDelay)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.dests[d.key]; ok {
		t.Error("an idle destination is still held after its pause")
	}
}

func TestReviveDeadOnFlush(t *testing.T) {
	p := params(2, 20, 1, "1", "1")
	p.retry = time.Hour
	q, d := testDest(p)
	d.win.size = 1
	q.mu.Lock()
	q.delivered(d, []deliver.Result{{Status: deliver.Defer, DSN: "4.4.1", Site: true}}, nil)
	dead := d.win.dead()
	q.mu.Unlock()
	if !dead {
		t.Fatal("not dead")
	}
	q.reviveDead()
	if d.win.dead() || d.win.size != 2 || d.revive != nil {
		t.Errorf("after a flush: dead %v window %d timer %v", d.win.dead(), d.win.size, d.revive)
	}
	if _, ok := q.dests[d.key]; ok {
		t.Error("an idle revived destination is still held")
	}
}

func TestStopScheduling(t *testing.T) {
	p := params(1, 1, 1, "1", "1")
	p.rateDelay = 20 * time.Millisecond
	q, d := testDest(p)
	q.mu.Lock()
	q.delivered(d, []deliver.Result{{Status: deliver.Sent}}, nil)
	q.mu.Unlock()
	q.stopScheduling()
	time.Sleep(60 * time.Millisecond)
	q.mu.Lock()
	defer q.mu.Unlock()
	if !d.paused {
		t.Error("a stopped qmgr still ran a pause timer")
	}
}

// schedQmgr is a Qmgr whose jobs are recorded, not run.
func schedQmgr(p *schedParams, agentLimit int) (*Qmgr, *[]string) {
	var started []string
	q := &Qmgr{dests: map[string]*dest{}, sched: map[string]*schedParams{"smtp": p}, slots: map[string]*agentSlots{},
		agentLimits: map[string]int{"smtp": agentLimit}}
	q.launch = func(j *job) {
		q.mu.Lock()
		started = append(started, j.queue)
		q.mu.Unlock()
		q.jobs.Done()
	}
	return q, &started
}

func queueJobs(q *Qmgr, name string, n int) *dest {
	d := q.dest("smtp", name, name)
	for range n {
		d.pending = append(d.pending, &job{msg: &message{}, transport: "smtp", queue: name, nexthop: name, dest: d})
	}
	q.dispatch(d)
	return d
}

func TestDispatchWindow(t *testing.T) {
	q, started := schedQmgr(params(5, 20, 1, "1", "1"), 0)
	q.mu.Lock()
	d := queueJobs(q, "a.example", 12)
	q.mu.Unlock()
	q.jobs.Wait()
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(*started) != 5 || d.running != 5 || len(d.pending) != 7 {
		t.Fatalf("started %d, running %d, pending %d; want 5, 5, 7", len(*started), d.running, len(d.pending))
	}
	// A success grows the window by one (feedback 1) and frees a slot:
	// two more start.
	q.delivered(d, []deliver.Result{{Status: deliver.Sent}}, nil)
	if d.win.size != 6 || d.running != 6 {
		t.Errorf("after a success window %d running %d, want 6 and 6", d.win.size, d.running)
	}
}

func TestDispatchAgentSlotsTakeTurns(t *testing.T) {
	q, started := schedQmgr(params(5, 20, 1, "1", "1"), 3)
	q.mu.Lock()
	a := queueJobs(q, "a.example", 10)
	b := queueJobs(q, "b.example", 10)
	c := queueJobs(q, "c.example", 10)
	if a.agents.running != 3 || a.running != 3 || b.running != 0 || c.running != 0 {
		t.Fatalf("agents %d, a %d b %d c %d; want 3, 3, 0, 0", a.agents.running, a.running, b.running, c.running)
	}
	// Freed agents go to the waiting destinations in turn.
	ds := []*dest{a, b, c}
	for k := range 6 {
		for i := range ds {
			if d := ds[(k+i)%3]; d.running > 0 {
				q.delivered(d, []deliver.Result{{Status: deliver.Sent}}, nil)
				break
			}
		}
		if a.agents.running > 3 || a.running < 0 {
			t.Fatalf("%d deliveries in flight, above the agent limit 3 (a %d)", a.agents.running, a.running)
		}
	}
	q.mu.Unlock()
	q.jobs.Wait()
	q.mu.Lock()
	defer q.mu.Unlock()
	n := map[string]int{}
	for _, s := range *started {
		n[s]++
	}
	if n["b.example"] < 2 || n["c.example"] < 2 {
		t.Errorf("after 6 freed agents the others got b %d c %d, want >= 2 each (order %v)", n["b.example"], n["c.example"], *started)
	}
	if a.agents.running > 3 {
		t.Errorf("%d deliveries in flight, above the agent limit 3", a.agents.running)
	}
}

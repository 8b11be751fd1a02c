package qmgr

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/pkg/config"
	"postern/pkg/deliver"
	"postern/pkg/maillog"
	"postern/pkg/queue"
)

func TestQueueLifetimes(t *testing.T) {
	const day = 24 * time.Hour
	for _, c := range []struct {
		main             string
		lifetime, bounce time.Duration
		warn             bool
	}{
		{"", 5 * day, 5 * day, false},
		{"maximal_queue_lifetime = 2\n", 2 * day, 2 * day, true}, // default unit d; 5d bounce lowered
		{"maximal_queue_lifetime = 1h\nbounce_queue_lifetime = 3s\n", time.Hour, 3 * time.Second, false},
		{"maximal_queue_lifetime = 0\n", 0, 0, true},
		{"maximal_queue_lifetime = 0\nbounce_queue_lifetime = 0\n", 0, 0, false},
		{"bounce_queue_lifetime = 0\n", 5 * day, 0, false},
		{"maximal_queue_lifetime = 1d\nbounce_queue_lifetime = 1d\n", day, day, false},
	} {
		cfg, err := config.Parse(strings.NewReader(c.main), "main.cf")
		if err != nil {
			t.Fatal(err)
		}
		lifetime, bounce, warn := queueLifetimes(cfg)
		if lifetime != c.lifetime || bounce != c.bounce || (warn != "") != c.warn {
			t.Errorf("%q: lifetime %v, bounce %v, warning %q; want %v, %v, warning %v", c.main, lifetime, bounce, warn, c.lifetime, c.bounce, c.warn)
		}
		if c.warn && warn != "bounce_queue_lifetime is larger than maximal_queue_lifetime - adjusting bounce_queue_lifetime" {
			t.Errorf("%q: warning %q", c.main, warn)
		}
	}
}

func TestLifetimeFor(t *testing.T) {
	q := &Qmgr{lifetime: time.Hour, bounceLifetime: time.Minute}
	for sender, want := range map[string]time.Duration{
		"":                          time.Minute, // a bounce
		"user@example.org":          time.Hour,
		"MAILER-DAEMON@example.org": time.Hour, // only the null sender is a bounce
		"double-bounce@example.org": time.Hour,
	} {
		if got := q.lifetimeFor(sender); got != want {
			t.Errorf("lifetimeFor(%q) = %v, want %v", sender, got, want)
		}
	}
}

func TestExpired(t *testing.T) {
	arrival := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		after    time.Duration // attempt end - arrival
		lifetime time.Duration
		want     bool
	}{
		{0, 0, true}, // 0: tried once
		{time.Millisecond, 0, true},
		{-time.Second, 0, false}, // a clock that jumped back
		{time.Hour, 5 * 24 * time.Hour, false},
		{5*24*time.Hour - time.Second, 5 * 24 * time.Hour, false},
		{5 * 24 * time.Hour, 5 * 24 * time.Hour, true}, // reached
		{6 * 24 * time.Hour, 5 * 24 * time.Hour, true},
	} {
		if got := expired(arrival, arrival.Add(c.after), c.lifetime); got != c.want {
			t.Errorf("expired(+%v, lifetime %v) = %v, want %v", c.after, c.lifetime, got, c.want)
		}
	}
}

// expireEnv is a qmgr on a queue in a temporary directory, with no
// cleanup service (notices to a real sender cannot be queued) and its
// agents replaced by agent.
type expireEnv struct {
	q       *Qmgr
	logFile string
	mu      sync.Mutex
	msgs    map[queue.ID]*message // as the agent saw them
	done    chan queue.ID
}

func newExpireEnv(t *testing.T, main string, agent func(j *job) []deliver.Result) *expireEnv {
	t.Helper()
	dir := t.TempDir()
	store := queue.NewStore(dir)
	if _, err := store.Ensure(os.Getuid(), os.Getgid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(strings.NewReader("queue_directory = "+dir+"\nconfig_directory = "+dir+
		"\nmyhostname = mx.example.com\nmydomain = example.com\nmyorigin = example.com\nipc_timeout = 2s\n"+main), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "log")
	log, err := maillog.New(maillog.Options{Program: "qmgr", File: logFile, FilePrefixes: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := newQmgr(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &expireEnv{q: q, logFile: logFile, msgs: map[queue.ID]*message{}, done: make(chan queue.ID, 10)}
	q.launch = func(j *job) {
		defer q.jobs.Done()
		e.mu.Lock()
		e.msgs[j.msg.id] = j.msg
		e.mu.Unlock()
		results := agent(j)
		q.record(j, results, nil, nil)
		q.mu.Lock()
		done := q.jobDone(j)
		q.delivered(j.dest, results, nil)
		q.mu.Unlock()
		if done {
			q.finish(j.msg)
			e.done <- j.msg.id
		}
	}
	return e
}

// enqueue puts a message from sender to rcpts that arrived at arrival
// into active/.
func (e *expireEnv) enqueue(t *testing.T, sender string, arrival time.Time, rcpts ...string) queue.ID {
	t.Helper()
	w, err := e.q.store.Create(queue.Incoming)
	if err != nil {
		t.Fatal(err)
	}
	env := &queue.Envelope{Sender: sender, Arrival: arrival, Protocol: "ESMTP"}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r, Status: queue.Pending})
	}
	if err := w.Envelope(env); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: test\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.CommitTo(queue.Active); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

// attempt loads id and waits for its attempt to end.
func (e *expireEnv) attempt(t *testing.T, id queue.ID) *message {
	t.Helper()
	e.q.load(id)
	select {
	case got := <-e.done:
		if got != id {
			t.Fatalf("attempt of %s ended, want %s", got, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("attempt of %s did not end\n%s", id, e.log())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.msgs[id]
}

func (e *expireEnv) log() string {
	b, _ := os.ReadFile(e.logFile)
	return string(b)
}

// lines returns the log lines of message id without their syslog prefix.
func (e *expireEnv) lines(id queue.ID) []string {
	var out []string
	for _, l := range strings.Split(e.log(), "\n") {
		if _, rest, ok := strings.Cut(l, ": "+string(id)+": "); ok {
			out = append(out, string(id)+": "+rest)
		}
	}
	return out
}

func (e *expireEnv) exists(q string, id queue.ID) bool {
	_, err := os.Stat(e.q.store.Path(q, id))
	return err == nil
}

var greylisted = func(j *job) []deliver.Result {
	var rs []deliver.Result
	for _, i := range j.rcpts {
		rs = append(rs, deliver.Result{Index: i, Status: deliver.Defer, DSN: "4.3.0",
			Text: "host mx.slow.example[192.0.2.2] said: 451 4.3.0 Temporary trouble (in reply to RCPT TO command)"})
	}
	return rs
}

// A bounce past bounce_queue_lifetime gets a last attempt, is expired with
// its last deferral reason, and leaves the queue; maximal_queue_lifetime
// (longer) does not apply to it.
func TestExpireBounceAfterLastAttempt(t *testing.T) {
	e := newExpireEnv(t, "maximal_queue_lifetime = 1h\nbounce_queue_lifetime = 3s\n", greylisted)
	id := e.enqueue(t, "", time.Now().Add(-time.Minute), "u@slow.example", "v@slow.example")
	msg := e.attempt(t, id)
	if msg == nil {
		t.Fatal("no delivery attempt: an expired message must be tried once more")
	}
	want := []string{
		string(id) + ": from=<>, size=",
		string(id) + ": from=<>, status=expired, returned to sender",
		string(id) + ": undeliverable non-delivery notification discarded",
		string(id) + ": removed",
	}
	got := e.lines(id)
	if len(got) != len(want) {
		t.Fatalf("log lines:\n%s\nwant prefixes:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for k := range want {
		if !strings.HasPrefix(got[k], want[k]) {
			t.Errorf("line %d: %q, want %q...", k, got[k], want[k])
		}
	}
	for _, l := range got {
		if strings.Contains(l, "status=expired (") || strings.Contains(l, "to=<") {
			t.Errorf("per-recipient expiry line, Postfix logs one line per message: %s", l)
		}
	}
	q := e.q
	q.mu.Lock()
	fails := byIndex(msg.failures)
	q.mu.Unlock()
	for i := range 2 {
		f, ok := fails[i]
		if !ok || f.result.DSN != "4.3.0" || !strings.Contains(f.result.Text, "451 4.3.0 Temporary trouble") {
			t.Errorf("recipient %d reported with %+v, want its last deferral (4.3.0 ... Temporary trouble)", i, f.result)
		}
	}
	if e.exists(queue.Active, id) || e.exists(queue.Deferred, id) {
		t.Error("expired message still queued")
	}
}

// maximal_queue_lifetime = 0: the first deferral returns the message.
func TestExpireLifetimeZeroTriesOnce(t *testing.T) {
	e := newExpireEnv(t, "maximal_queue_lifetime = 0\n", greylisted)
	if !strings.Contains(e.log(), "warning: bounce_queue_lifetime is larger than maximal_queue_lifetime - adjusting bounce_queue_lifetime") {
		t.Errorf("no adjustment warning:\n%s", e.log())
	}
	// The double-bounce sender's notices are discarded, not queued, so
	// no cleanup service is needed.
	id := e.enqueue(t, "double-bounce@example.com", time.Now(), "u@slow.example")
	if e.attempt(t, id) == nil {
		t.Fatal("not tried")
	}
	log := strings.Join(e.lines(id), "\n")
	for _, w := range []string{
		": from=<double-bounce@example.com>, status=expired, returned to sender",
		": removed",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	if e.exists(queue.Deferred, id) || e.exists(queue.Active, id) {
		t.Error("message kept")
	}
}

// Within its lifetime a deferred message is deferred, not expired.
func TestExpireNotYet(t *testing.T) {
	e := newExpireEnv(t, "maximal_queue_lifetime = 1h\n", greylisted)
	id := e.enqueue(t, "", time.Now().Add(-time.Minute), "u@slow.example")
	e.attempt(t, id)
	if log := strings.Join(e.lines(id), "\n"); strings.Contains(log, "expired") || strings.Contains(log, "removed") {
		t.Errorf("expired within its lifetime:\n%s", log)
	}
	if !e.exists(queue.Deferred, id) {
		t.Fatal("not in deferred/")
	}
	m, err := e.q.store.Open(queue.Deferred, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if st := m.Envelope.Recipients[0].Status; st != queue.Pending {
		t.Errorf("recipient status %v, want pending", st)
	}
}

// A report that cannot be queued (no cleanup service here) leaves the
// message deferred with its recipients pending: the next attempt tries
// them again, as Postfix keeps the defer log when its flush fails.
func TestExpireReportFails(t *testing.T) {
	e := newExpireEnv(t, "maximal_queue_lifetime = 1s\n", greylisted)
	id := e.enqueue(t, "user@example.org", time.Now().Add(-time.Hour), "u@slow.example", "w@slow.example")
	e.attempt(t, id)
	log := strings.Join(e.lines(id), "\n")
	if !strings.Contains(log, ": from=<user@example.org>, status=expired, returned to sender") {
		t.Errorf("no expiry line:\n%s", log)
	}
	if strings.Contains(log, ": removed") || !e.exists(queue.Deferred, id) {
		t.Fatalf("message not kept after its report failed:\n%s", log)
	}
	m, err := e.q.store.Open(queue.Deferred, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i, r := range m.Envelope.Recipients {
		if r.Status != queue.Pending {
			t.Errorf("recipient %d status %v, want pending", i, r.Status)
		}
	}
}

// A recipient that failed permanently and one deferred in the last
// attempt: the failed one is bounced as before, the deferred one expires.
func TestExpireMixed(t *testing.T) {
	e := newExpireEnv(t, "maximal_queue_lifetime = 0\n", func(j *job) []deliver.Result {
		var rs []deliver.Result
		for _, i := range j.rcpts {
			r := deliver.Result{Index: i, Status: deliver.Defer, DSN: "4.4.1", Text: "connect to mx.slow.example[192.0.2.2]:25: Connection refused"}
			if i == 0 {
				r = deliver.Result{Index: i, Status: deliver.Bounce, DSN: "5.1.1", Text: "host said: 550 5.1.1 User unknown"}
			}
			rs = append(rs, r)
		}
		return rs
	})
	id := e.enqueue(t, "double-bounce@example.com", time.Now(), "gone@slow.example", "u@slow.example")
	msg := e.attempt(t, id)
	e.q.mu.Lock()
	fails := byIndex(msg.failures)
	e.q.mu.Unlock()
	if f := fails[0]; f.result.DSN != "5.1.1" {
		t.Errorf("bounced recipient: %+v", f.result)
	}
	if f := fails[1]; f.result.DSN != "4.4.1" || !strings.Contains(f.result.Text, "Connection refused") {
		t.Errorf("expired recipient: %+v", f.result)
	}
	if e.exists(queue.Deferred, id) || e.exists(queue.Active, id) {
		t.Errorf("message kept\n%s", e.log())
	}
}

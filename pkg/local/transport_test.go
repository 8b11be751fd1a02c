package local

import (
	"net"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/pkg/deliver"
	"postern/pkg/ipc"
)

// fakeAgent is a delivery agent on private/<name>: it records requests
// and answers each recipient with result (Index set from the request).
type fakeAgent struct {
	mu     sync.Mutex
	reqs   []*deliver.Request
	result deliver.Result
}

func (f *fakeAgent) requests() []*deliver.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*deliver.Request(nil), f.reqs...)
}

func startFakeAgent(t *testing.T, private, name string, result deliver.Result) *fakeAgent {
	t.Helper()
	if err := os.MkdirAll(private, 0700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(private, name))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAgent{result: result}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				ic := ipc.NewConn(c, ipc.Options{Timeout: 5 * time.Second})
				if ipc.Hello(ic, name) != nil {
					return
				}
				for {
					req, err := deliver.ReadRequest(ic)
					if err != nil {
						return
					}
					f.mu.Lock()
					f.reqs = append(f.reqs, req)
					f.mu.Unlock()
					var res []deliver.Result
					for _, r := range req.Recipients {
						o := f.result
						o.Index = r.Index
						res = append(res, o)
					}
					if deliver.WriteResults(ic, res) != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("fake agent did not stop")
		}
	})
	return f
}

// testJob is a recipient job for addr with a request as qmgr sends it.
func testJob(u *unixAgent, addr string) *recipientJob {
	local, domain, _ := strings.Cut(addr, "@")
	j := &recipientJob{u: u, addr: addr, local: strings.ToLower(local), domain: domain,
		r:   deliver.Recipient{Index: 7, Addr: addr, Orig: addr, Notify: "FAILURE", ORcpt: "rfc822;" + addr},
		req: &deliver.Request{QueueID: "4Q1", Queue: "active", Sender: "s@example.org", Nexthop: domain, Arrival: time.Unix(100, 0), Active: time.Unix(200, 0)}}
	j.user = j.local
	if i := strings.IndexByte(j.local, '+'); i > 0 {
		j.user, j.ext = j.local[:i], j.local[i+1:]
	}
	return j
}

func currentUser(t *testing.T) string {
	t.Helper()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return me.Username
}

const noAccount = "nosuchuser-postern-test"

// Postfix's order after aliases and .forward: mailbox_transport_maps,
// mailbox_transport (any recipient), mailbox_command_maps,
// mailbox_command, home_mailbox, mail_spool_directory (accounts),
// fallback_transport_maps, fallback_transport, luser_relay (no account).
// With command_execution_directory = $ (which fails to expand) an
// outcome "bad command_execution_directory" shows the mailbox command
// step was reached.
func TestDeliveryMethodOrder(t *testing.T) {
	me := currentUser(t)
	const (
		mtMaps = "mailbox_transport_maps = inline:{" + noAccount + "=mapped:[10.0.0.1], " + "%ME%=mapped}\n"
		mt     = "mailbox_transport = lmtp:inet:127.0.0.1:24\n"
		fbMaps = "fallback_transport_maps = inline:{" + noAccount + "=fbmapped:next.example}\n"
		fb     = "fallback_transport = fb\n"
		luser  = "luser_relay = catchall@relay.example\n"
		cmd    = "mailbox_command = exit 75\ncommand_execution_directory = $\n"
		cmdMap = "mailbox_command_maps = inline:{ {%ME%=exit 76} }\ncommand_execution_directory = $\n"
	)
	for _, c := range []struct {
		name, conf, user string
		agent, nexthop   string // the transport and nexthop passed to, or ""
		text             string // else the outcome's text
		forward          []string
	}{
		{"account: mailbox_transport before mailbox_command", mt + cmd + fb, me, "lmtp", "inet:127.0.0.1:24", "", nil},
		{"no account: mailbox_transport before fallback", mt + fb + luser, noAccount, "lmtp", "inet:127.0.0.1:24", "", nil},
		{"maps before mailbox_transport", mtMaps + mt, noAccount, "mapped", "[10.0.0.1]", "", nil},
		{"map value without nexthop: the request's", mtMaps + mt, me, "mapped", "localhost.example", "", nil},
		{"maps miss: mailbox_transport", mtMaps + mt, "other-" + noAccount, "lmtp", "inet:127.0.0.1:24", "", nil},
		{"account: mailbox_command, not fallback", cmd + fb + luser, me, "", "", "bad command_execution_directory", nil},
		{"account: mailbox_command_maps (mailbox_command empty)", cmdMap + "home_mailbox = Maildir/\n", me, "", "", "bad command_execution_directory", nil},
		{"no account: fallback_transport_maps", fbMaps + fb + luser, noAccount, "fbmapped", "next.example", "", nil},
		{"no account: fallback_transport before luser_relay", fb + luser, noAccount, "fb", "localhost.example", "", nil},
		{"no account: luser_relay", luser + cmd, noAccount, "", "", "", []string{"catchall@relay.example"}},
		{"no account: bounce", cmd, noAccount, "", "", `unknown user: "` + noAccount + `"`, nil},
		{"postmaster without alias: discarded", "", "postmaster", "", "", "discarded", nil},
		{"mailer-daemon without alias: discarded", "", "mailer-daemon", "", "", "discarded", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := testUnixAgent(t, "", "queue_directory = $dir/queue\nforward_path =\n"+strings.ReplaceAll(c.conf, "%ME%", me))
			agents := map[string]*fakeAgent{}
			for _, name := range []string{"lmtp", "mapped", "fb", "fbmapped"} {
				agents[name] = startFakeAgent(t, u.private, name, deliver.Result{Status: deliver.Sent, DSN: "2.0.0", Text: "delivered via " + name})
			}
			j := testJob(u, c.user+"@localhost.example")
			j.deliverUser(false)
			for name, a := range agents {
				reqs := a.requests()
				if name != c.agent {
					if len(reqs) != 0 {
						t.Errorf("passed to %s: %+v", name, reqs[0])
					}
					continue
				}
				if len(reqs) != 1 {
					t.Fatalf("%d requests to %s, want 1; outcomes %+v", len(reqs), name, j.out)
				}
				want := &deliver.Request{QueueID: "4Q1", Queue: "active", Sender: "s@example.org", Nexthop: c.nexthop,
					Arrival: time.Unix(100, 0), Active: time.Unix(200, 0), Recipients: []deliver.Recipient{j.r}}
				if !reflect.DeepEqual(reqs[0], want) {
					t.Errorf("request\n%+v, want\n%+v", reqs[0], want)
				}
				wantOut := []outcome{{Index: 7, Status: deliver.Sent, DSN: "2.0.0", Text: "delivered via " + name}}
				if !reflect.DeepEqual(j.out, wantOut) || !reflect.DeepEqual(j.passed, []bool{true}) {
					t.Errorf("outcomes %+v passed %v, want %+v passed", j.out, j.passed, wantOut)
				}
			}
			if c.agent == "" {
				if c.text != "" && (len(j.out) != 1 || j.out[0].Text != c.text || j.passed[0]) {
					t.Errorf("outcomes %+v passed %v, want %q", j.out, j.passed, c.text)
				}
				if c.text == "" && len(j.out) != 0 {
					t.Errorf("outcomes %+v, want none", j.out)
				}
				if !reflect.DeepEqual(j.forward, c.forward) {
					t.Errorf("forward %q, want %q", j.forward, c.forward)
				}
			}
		})
	}
}

// The agent's answer is the recipient's: a deferral or bounce passes
// through unchanged, with the recipient's own index.
func TestPassResult(t *testing.T) {
	for _, res := range []deliver.Result{
		{Status: deliver.Defer, DSN: "4.4.1", Text: "connect to 127.0.0.1[127.0.0.1]:24: Connection refused"},
		{Status: deliver.Bounce, DSN: "5.1.1", Text: "host 127.0.0.1[127.0.0.1] said: 550 5.1.1 no such user (in reply to RCPT TO command)"},
	} {
		u := testUnixAgent(t, "", "queue_directory = $dir/queue\nforward_path =\nmailbox_transport = lmtp\n")
		startFakeAgent(t, u.private, "lmtp", res)
		j := testJob(u, noAccount+"@localhost.example")
		j.deliverUser(false)
		res.Index = 7
		if !reflect.DeepEqual(j.out, []outcome{res}) || !j.passed[0] {
			t.Errorf("outcomes %+v passed %v, want %+v", j.out, j.passed, res)
		}
	}
}

// Hand-offs that cannot happen defer the recipient, with Postfix's texts.
func TestPassFailures(t *testing.T) {
	for _, c := range []struct {
		conf, dsn, text string
	}{
		{"mailbox_transport = nosuchservice\n", "4.3.0", "mail transport unavailable"},
		{"mailbox_transport = lm/tp:inet:x\n", "4.3.5", "mail system configuration error"},
		{"mailbox_transport = :inet:x\n", "4.3.5", "mail system configuration error"},
		{"mailbox_transport = local\n", "4.3.5", "mail system configuration error"},
		{"mailbox_transport = wrongname\n", "4.3.0", "mail transport unavailable"},
		{"mailbox_transport_maps = hash:$dir/missing\nmailbox_transport = lmtp\n", "4.3.0", "table lookup failure"},
		{"fallback_transport_maps = hash:$dir/missing\nfallback_transport = lmtp\n", "4.3.0", "table lookup failure"},
		{"luser_relay = ${\n", "4.3.5", "mail system configuration error"},
	} {
		u := testUnixAgent(t, "", "queue_directory = $dir/queue\nforward_path =\n"+c.conf)
		// An agent that calls itself another service fails the hello.
		startFakeAgent(t, u.private, "lmtp", deliver.Result{Status: deliver.Sent})
		if err := os.Symlink(filepath.Join(u.private, "lmtp"), filepath.Join(u.private, "wrongname")); err != nil {
			t.Fatal(err)
		}
		j := testJob(u, noAccount+"@localhost.example")
		j.deliverUser(false)
		if len(j.out) != 1 || j.out[0].Status != deliver.Defer || j.out[0].DSN != c.dsn || j.out[0].Text != c.text || j.passed[0] {
			t.Errorf("%q: outcomes %+v, want defer %s %q", c.conf, j.out, c.dsn, c.text)
		}
	}
}

func TestSplitService(t *testing.T) {
	for _, c := range []struct{ in, transport, nexthop string }{
		{"lmtp:unix:private/dovecot-lmtp", "lmtp", "unix:private/dovecot-lmtp"},
		{"lmtp:inet:127.0.0.1:24", "lmtp", "inet:127.0.0.1:24"},
		{"lmtp", "lmtp", "def.example"},
		{"lmtp:", "lmtp", "def.example"},
		{" smtp:[relay.example]:587 ", "smtp", "[relay.example]:587"},
		{":x", "", "x"},
	} {
		tr, nh := splitService(c.in, "def.example")
		if tr != c.transport || nh != c.nexthop {
			t.Errorf("splitService(%q) = %q %q, want %q %q", c.in, tr, nh, c.transport, c.nexthop)
		}
	}
}

// luser_relay takes local(8)'s attributes, ${name?value} and
// ${name:value}, and main.cf parameters; no expansion filter applies.
func TestLuserRelayExpansion(t *testing.T) {
	for _, c := range []struct {
		relay, rcpt string
		want        []string
		bounce      bool
	}{
		{"$user@relay.example", "Joe+Tag@Local.Example", []string{"joe@relay.example"}, false},
		{"$local@relay.example", "joe+tag@local.example", []string{"joe+tag@relay.example"}, false},
		{"admin+$local", "joe+tag@local.example", []string{"admin+joe+tag"}, false},
		{"admin${extension?+$extension}@x.example", "joe+tag@local.example", []string{"admin+tag@x.example"}, false},
		{"admin${extension?+$extension}@x.example", "joe@local.example", []string{"admin@x.example"}, false},
		{"${extension:noext}@x.example", "joe@local.example", []string{"noext@x.example"}, false},
		{"$user$recipient_delimiter$domain@x.example", "joe@local.example", []string{"joe+local.example@x.example"}, false},
		{"lusers@$myorigin", "joe@local.example", []string{"lusers@host.example"}, false},
		{"\"a b;c\"@x.example", "joe@local.example", []string{"\"a b;c\"@x.example"}, false},
		// The relay is the recipient itself: an unknown user, no loop.
		{"$recipient", "joe@local.example", nil, true},
		{"$user", "joe@host.example", nil, true},
	} {
		u := testUnixAgent(t, "", "forward_path =\nluser_relay = "+c.relay+"\n")
		j := testJob(u, c.rcpt)
		j.deliverUnknown()
		if !reflect.DeepEqual(j.forward, c.want) {
			t.Errorf("%q for %s: forward %q, want %q", c.relay, c.rcpt, j.forward, c.want)
		}
		if bounced := len(j.out) == 1 && j.out[0].Status == deliver.Bounce && j.out[0].DSN == "5.1.1"; bounced != c.bounce || (!c.bounce && len(j.out) != 0) {
			t.Errorf("%q for %s: outcomes %+v", c.relay, c.rcpt, j.out)
		}
	}
}

// A transport value from main.cf or a table never names a socket outside
// private/, and splitting never loses the nexthop.
func FuzzSplitService(f *testing.F) {
	for _, s := range []string{"lmtp:unix:private/dovecot-lmtp", "lmtp", ":x", "../x:y", "a/b", ".", "..:z", "lmtp:", " smtp:[h]:25 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tr, nh := splitService(s, "def")
		if strings.Contains(tr, ":") {
			t.Fatalf("transport %q has a colon", tr)
		}
		if nh == "" {
			t.Fatalf("empty nexthop for %q", s)
		}
		if !validTransport(tr) {
			return
		}
		const private = "/q/private"
		if p := filepath.Join(private, tr); filepath.Dir(p) != private {
			t.Fatalf("transport %q leaves private/: %s", tr, p)
		}
	})
}

// A recipient named by itself more than once (an alias and an :include:
// file) reaches its mailbox step once: one hand-off, not two.
func TestMailboxStepOnce(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "list")
	if err := os.WriteFile(inc, []byte(noAccount+"\n"), 0644); err != nil {
		t.Fatal(err)
	}
	u := testUnixAgent(t, noAccount+": "+noAccount+", :include:"+inc+"\n", "queue_directory = $dir/queue\nforward_path =\nmailbox_transport = lmtp\n")
	a := startFakeAgent(t, u.private, "lmtp", deliver.Result{Status: deliver.Sent, DSN: "2.0.0", Text: "ok"})
	j := testJob(u, noAccount+"@localhost.example")
	j.deliver()
	if n := len(a.requests()); n != 1 || len(j.out) != 1 {
		t.Errorf("%d hand-offs, outcomes %+v; want 1", n, j.out)
	}
}

// An alias that names the recipient itself keeps a copy: the recipient
// goes on to its mailbox step as well as to the other addresses.
func TestAliasSelfKeepsCopy(t *testing.T) {
	u := testUnixAgent(t, noAccount+": "+noAccount+", other@example.org\n", "queue_directory = $dir/queue\nforward_path =\nmailbox_transport = lmtp\n")
	a := startFakeAgent(t, u.private, "lmtp", deliver.Result{Status: deliver.Sent, DSN: "2.0.0", Text: "ok"})
	j := testJob(u, noAccount+"@localhost.example")
	j.deliver()
	if n := len(a.requests()); n != 1 || len(j.out) != 1 || !reflect.DeepEqual(j.forward, []string{"other@example.org"}) {
		t.Errorf("%d hand-offs, outcomes %+v, forward %q", n, j.out, j.forward)
	}
}

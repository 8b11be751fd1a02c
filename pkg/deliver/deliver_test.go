package deliver

import (
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"postern/pkg/ipc"
)

// TestRoundTrip sends a request through a socket to a fake agent and
// checks the results come back as the agent wrote them, the Site flag
// and the optional Remote-MTA and Diagnostic-Code included.
func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smtp")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := []Result{
		{Index: 0, Status: Defer, DSN: "4.4.1", Text: "connect to x[192.0.2.1]:25: Connection refused", Site: true},
		{Index: 3, Status: Sent, DSN: "2.0.0", Text: "250 ok"},
		{Index: 4, Status: Bounce, DSN: "5.1.1", Text: "host mx.x[192.0.2.2] said: 550 5.1.1 no (in reply to RCPT TO command)",
			RemoteMTA: "mx.x", Diagnostic: "smtp; 550 5.1.1 no"},
	}
	got := make(chan *Request, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		ic := ipc.NewConn(c, ipc.Options{Timeout: 5 * time.Second})
		if ipc.Hello(ic, "smtp") != nil {
			got <- nil
			return
		}
		req, err := ReadRequest(ic)
		got <- req
		if err == nil {
			WriteResults(ic, want)
		}
	}()
	cl, err := Dial(path, "smtp", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := &Request{QueueID: "ABC", Queue: "active", Sender: "s@example.org", Nexthop: "x",
		Arrival: time.Unix(100, 0), Active: time.Unix(200, 0),
		Recipients: []Recipient{{Index: 0, Addr: "a@x"}, {Index: 3, Addr: "b@x", Notify: "SUCCESS"}, {Index: 4, Addr: "c@x"}}}
	res, err := cl.Deliver(req)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("results %+v, want %+v", res, want)
	}
	select {
	case r := <-got:
		if r == nil || r.QueueID != "ABC" || len(r.Recipients) != 3 || r.Recipients[1].Notify != "SUCCESS" || !r.Arrival.Equal(req.Arrival) {
			t.Errorf("agent read %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("agent did not read the request")
	}
}

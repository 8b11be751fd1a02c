// Package deliver is the protocol between qmgr and the delivery agents
// (local, virtual, smtp, lmtp), as Postfix's deliver_request. Both ends
// import it; it runs over pkg/ipc on the agent's socket,
// private/<transport>.
//
// One connection carries any number of requests, one at a time:
//
//	agent → qmgr   hello {protocol, version, service=<transport>}
//	qmgr  → agent  {req=deliver, queue_id, queue, sender, nexthop,
//	                arrival, active, nrcpt}
//	qmgr  → agent  {index, addr, orig, notify, orcpt}        (nrcpt times)
//	agent → qmgr   {index, status, dsn, text[, site=1]
//	                [, remote_mta, diagnostic]}               (nrcpt times)
//
// remote_mta and diagnostic are optional (an older peer neither sends
// nor reads them): they are the RFC 3464 Remote-MTA and Diagnostic-Code
// of a result that a remote server's reply decided.
//
// The agent reads the message content from the queue file itself; it never
// changes the file. qmgr records each result in the file (pkg/queue
// SetStatus) and decides what happens to the message. The agent logs each
// recipient's delivery line (to=, relay=, delay=, delays=, dsn=, status=),
// because only it knows the relay and the timings.
package deliver

import (
	"fmt"
	"strconv"
	"time"

	"postern/pkg/ipc"
)

// Status is the outcome for one recipient.
type Status string

const (
	Sent   Status = "sent"   // delivered; done
	Defer  Status = "defer"  // temporary failure; try again later
	Bounce Status = "bounce" // permanent failure; done, a bounce is owed
)

// Recipient is one recipient of a request. Index is its position in the
// queue file's recipient list.
type Recipient struct {
	Index  int
	Addr   string
	Orig   string
	Notify string
	ORcpt  string
}

// Request asks an agent to deliver one message to some of its recipients.
type Request struct {
	QueueID    string
	Queue      string
	Sender     string
	Nexthop    string
	Arrival    time.Time // when the message was queued
	Active     time.Time // when qmgr took it into the active queue
	Recipients []Recipient
}

// Result is the agent's answer for one recipient.
type Result struct {
	Index  int
	Status Status
	DSN    string // enhanced status code, "2.0.0"
	Text   string // as logged and as put in a bounce
	// Site says the destination, not this recipient, failed: the agent
	// got no working session with any server of the next hop (every one
	// unreachable, refused the connection, greeted with an error, or
	// failed the handshake or a mandatory TLS). qmgr counts it against
	// the destination's concurrency and may suspend delivery to it
	// (Postfix's "site" failure). Only a deferral carries it.
	Site bool
	// RemoteMTA is the host name of the server whose reply decided the
	// result ("mx.example.net"), for the Remote-MTA field of a delivery
	// status notification ("dns; mx.example.net"); "" when no server
	// replied (connection trouble, a local error).
	RemoteMTA string
	// Diagnostic is the Diagnostic-Code value of that reply, "type;
	// text": "smtp; 550 5.1.1 <u@example.net>: Recipient address
	// rejected" (RFC 3464 §2.3.6); "" with RemoteMTA.
	Diagnostic string
}

// MaxRecipients bounds one request.
const MaxRecipients = 10000

// Client is qmgr's side of one agent connection.
type Client struct {
	c *ipc.Conn
}

// Dial connects to the agent at path; service is its master.cf name.
func Dial(path, service string, timeout time.Duration) (*Client, error) {
	c, err := ipc.Dial(path, service, ipc.Options{Timeout: timeout})
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// Close closes the connection.
func (cl *Client) Close() error { return cl.c.Close() }

// Deliver sends one request and waits for a result per recipient.
func (cl *Client) Deliver(req *Request) ([]Result, error) {
	var a ipc.Attrs
	a.Add("req", "deliver")
	a.Add("queue_id", req.QueueID)
	a.Add("queue", req.Queue)
	a.Add("sender", req.Sender)
	a.Add("nexthop", req.Nexthop)
	a.AddInt("arrival", req.Arrival.UnixNano())
	a.AddInt("active", req.Active.UnixNano())
	a.AddInt("nrcpt", int64(len(req.Recipients)))
	if err := cl.c.Send(a); err != nil {
		return nil, err
	}
	for _, r := range req.Recipients {
		a = a[:0]
		a.AddInt("index", int64(r.Index))
		a.Add("addr", r.Addr)
		a.Add("orig", r.Orig)
		a.Add("notify", r.Notify)
		a.Add("orcpt", r.ORcpt)
		if err := cl.c.Send(a); err != nil {
			return nil, err
		}
	}
	if err := cl.c.Flush(); err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(req.Recipients))
	for range req.Recipients {
		a, err := cl.c.Read()
		if err != nil {
			return out, err
		}
		idx, err := a.Int("index")
		if err != nil {
			return out, err
		}
		out = append(out, Result{Index: int(idx), Status: Status(a.Str("status")), DSN: a.Str("dsn"), Text: a.Str("text"), Site: a.Str("site") == "1",
			RemoteMTA: a.Str("remote_mta"), Diagnostic: a.Str("diagnostic")})
	}
	return out, nil
}

// ReadRequest is the agent's side: it reads the next request.
func ReadRequest(c *ipc.Conn) (*Request, error) {
	a, err := c.Read()
	if err != nil {
		return nil, err
	}
	if a.Str("req") != "deliver" {
		return nil, fmt.Errorf("deliver: unexpected request %q", a.Str("req"))
	}
	if err := a.Require("queue_id", "queue", "nrcpt"); err != nil {
		return nil, err
	}
	n, err := a.Int("nrcpt")
	if err != nil || n < 0 || n > MaxRecipients {
		return nil, fmt.Errorf("deliver: bad recipient count %q", a.Str("nrcpt"))
	}
	arr, _ := a.Int("arrival")
	act, _ := a.Int("active")
	req := &Request{
		QueueID: a.Str("queue_id"),
		Queue:   a.Str("queue"),
		Sender:  a.Str("sender"),
		Nexthop: a.Str("nexthop"),
		Arrival: time.Unix(0, arr),
		Active:  time.Unix(0, act),
	}
	for i := int64(0); i < n; i++ {
		a, err := c.Read()
		if err != nil {
			return nil, err
		}
		idx, err := a.Int("index")
		if err != nil {
			return nil, err
		}
		req.Recipients = append(req.Recipients, Recipient{Index: int(idx), Addr: a.Str("addr"), Orig: a.Str("orig"), Notify: a.Str("notify"), ORcpt: a.Str("orcpt")})
	}
	return req, nil
}

// WriteResults sends the agent's answers, one per recipient, in order.
func WriteResults(c *ipc.Conn, res []Result) error {
	var a ipc.Attrs
	for _, r := range res {
		a = a[:0]
		a.Add("index", strconv.Itoa(r.Index))
		a.Add("status", string(r.Status))
		a.Add("dsn", r.DSN)
		a.Add("text", r.Text)
		if r.Site {
			a.Add("site", "1")
		}
		if r.RemoteMTA != "" {
			a.Add("remote_mta", r.RemoteMTA)
		}
		if r.Diagnostic != "" {
			a.Add("diagnostic", r.Diagnostic)
		}
		if err := c.Send(a); err != nil {
			return err
		}
	}
	return c.Flush()
}

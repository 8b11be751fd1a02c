// Package handoff is the protocol by which smtpd and pickup hand a message
// to cleanup (Postfix's cleanup "mail stream"). Both ends import it; it runs
// over pkg/ipc on cleanup's socket, public/cleanup.
//
// The conversation, one message at a time:
//
//	cleanup → client   hello {protocol, version, service}
//	client  → cleanup  open  {req=open, sender, client_name, client_addr,
//	                          helo, protocol, auth_user, body_type, smtputf8,
//	                          dsn_ret, dsn_envid, rewrite_context,
//	                          full_name, filter, flags, trace (optional)}
//	client  → cleanup  rcpt  {req=rcpt, addr, notify, orcpt}   (1..n)
//	client  → cleanup  start {req=start}
//	cleanup → client   {queue_id}                  (or a final reply: refused)
//	client  → cleanup  data  {req=data, data}      (0..n chunks of content)
//	client  → cleanup  end   {req=end}
//	cleanup → client   {status, dsn, text, queue_id, next (optional)}
//
// next=1 in the final reply says cleanup reads another open on this
// connection: a Pool keeps it and reuses it for the next message (a
// connect and hello saved per message). Without it, or when the client
// has no use for the connection, the client closes it. cleanup closes a
// reused connection that stays idle for IdleTimeout, and after the
// message in progress when it stops (reload); a Pool therefore retries a
// reused connection that fails before cleanup named a queue ID once on a
// new connection (nothing was queued).
//
// filter is the content filter (content_filter) the receiving process
// asks for: "transport:nexthop", recorded in the queue file for qmgr.
// flags are Postfix's cleanup flags (Flags, decimal): which of cleanup's
// optional processing applies. smtpd and pickup send External less what
// their receive_override_options turn off; a request without flags (mail
// made by Postern itself: notices) gets Internal, as Postfix's bounce
// daemon asks for CLEANUP_FLAG_MASK_INTERNAL.
// trace=1 (pickup, for "sendmail -v") asks for a report of the first
// delivery attempt, recorded in the queue file for qmgr (Postfix's
// trace_flags attribute with DEL_REQ_FLAG_RECORD); it is sent only when
// set, so a cleanup that does not know it ignores it.
//
// The content is the message as received, header and body, with LF line
// endings (the client converts CRLF). A final reply with status "ok" means
// the queue file is durable in incoming/: only then may the client
// acknowledge the message.
package handoff

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"postern/pkg/ipc"
)

// Service is cleanup's service name in the hello frame.
const Service = "cleanup"

// Attribute names.
const (
	attrReq     = "req"
	attrSender  = "sender"
	attrCName   = "client_name"
	attrCAddr   = "client_addr"
	attrHelo    = "helo"
	attrProto   = "protocol"
	attrAuth    = "auth_user"
	attrBody    = "body_type"
	attrUTF8    = "smtputf8"
	attrRet     = "dsn_ret"
	attrEnvID   = "dsn_envid"
	attrContext = "rewrite_context"
	attrName    = "full_name"
	attrFilter  = "filter"
	attrFlags   = "flags"
	attrTrace   = "trace"
	attrAddr    = "addr"
	attrNotify  = "notify"
	attrORcpt   = "orcpt"
	attrData    = "data"
	attrQueueID = "queue_id"
	attrStatus  = "status"
	attrDSN     = "dsn"
	attrText    = "text"
	attrNext    = "next"
)

// Rewrite contexts (Postfix's local_header_rewrite_clients decides).
const (
	ContextLocal  = "local"
	ContextRemote = "remote"
)

// Flags select cleanup's optional processing, as Postfix's cleanup flags.
type Flags uint32

const (
	// FlagChecks: header_checks, body_checks and the MIME checks
	// (CLEANUP_FLAG_FILTER).
	FlagChecks Flags = 1 << iota
	// FlagMap: canonical mapping, masquerading and virtual alias
	// expansion (CLEANUP_FLAG_MAP_OK).
	FlagMap
	// FlagBCC: automatic BCC recipients, always_bcc, sender_bcc_maps and
	// recipient_bcc_maps (CLEANUP_FLAG_BCC_OK).
	FlagBCC
	// FlagMilter: milters (CLEANUP_FLAG_MILTER); Postern has none yet.
	FlagMilter
)

// External is the processing of mail that enters from outside: SMTP and
// sendmail. Internal is that of mail Postern makes itself (notices).
const (
	External = FlagChecks | FlagMap | FlagBCC | FlagMilter
	Internal = FlagMap
)

// ReceiveOverride reads receive_override_options (postconf(5)) as
// Postfix's input_transp_mask does: the flags a receiving process sends
// to cleanup, and whether no_unknown_recipient_checks is set (smtpd then
// accepts unknown recipients). An unknown option is an error.
func ReceiveOverride(options []string) (flags Flags, noUnknownRcpt bool, err error) {
	flags = External
	for _, o := range options {
		switch strings.ToLower(o) {
		case "no_unknown_recipient_checks":
			noUnknownRcpt = true
		case "no_address_mappings":
			flags &^= FlagMap | FlagBCC
		case "no_header_body_checks":
			flags &^= FlagChecks
		case "no_milters":
			flags &^= FlagMilter
		default:
			return 0, false, fmt.Errorf("unknown receive_override_options value %q", o)
		}
	}
	return flags, noUnknownRcpt, nil
}

// Recipient is one envelope recipient with its DSN parameters.
type Recipient struct {
	Addr   string
	Notify string
	ORcpt  string
}

// Request describes the envelope of a message.
type Request struct {
	Sender         string
	ClientName     string
	ClientAddr     string
	HeloName       string
	Protocol       string
	AuthUser       string
	BodyType       string
	SMTPUTF8       bool
	DSNRet         string
	DSNEnvID       string
	RewriteContext string
	FullName       string // the sender's name for an added From: (sendmail -F)
	Filter         string // content_filter, "transport:nexthop", or ""
	// Flags is the processing asked for when HasFlags is set (smtpd and
	// pickup set both); without HasFlags cleanup applies Internal.
	Flags    Flags
	HasFlags bool
	// Trace asks for a delivery status report of the first delivery
	// attempt (sendmail -v).
	Trace      bool
	Recipients []Recipient
}

// Status classifies cleanup's verdict.
type Status string

const (
	OK        Status = "ok"
	TempFail  Status = "temp"
	PermFail  Status = "perm"
	Discarded Status = "discard"
)

// Result is cleanup's final reply.
type Result struct {
	Status  Status
	DSN     string // enhanced status code, e.g. "5.3.4"
	Text    string // human text for the client
	QueueID string
}

// Err turns a non-OK result into an error (nil for OK and Discarded).
func (r Result) Err() error {
	if r.Status == OK || r.Status == Discarded {
		return nil
	}
	return &Error{r}
}

// Error is a refusal by cleanup.
type Error struct{ Result Result }

func (e *Error) Error() string {
	return fmt.Sprintf("cleanup: %s %s %s", e.Result.Status, e.Result.DSN, e.Result.Text)
}

// Temporary reports whether the refusal is a temporary one.
func (e *Error) Temporary() bool { return e.Result.Status == TempFail }

// Stream is the client side of one hand-off.
type Stream struct {
	c    *ipc.Conn
	id   string
	buf  []byte
	err  error
	pool *Pool // where the connection goes back after the verdict
}

const chunkSize = 32 << 10

// IdleTimeout is how long cleanup keeps a connection open between
// messages; a Pool keeps an idle connection for less (poolMaxAge).
const IdleTimeout = 5 * time.Second

const (
	poolMaxIdle = 16
	poolMaxAge  = 2 * time.Second
)

// Pool keeps idle hand-off connections to one cleanup socket for the
// next message. Its methods are safe for concurrent use.
type Pool struct {
	path    string
	timeout time.Duration
	mu      sync.Mutex
	idle    []pooled
	bufs    sync.Pool
}

type pooled struct {
	c     *ipc.Conn
	since time.Time
}

// NewPool returns a pool of connections to cleanup at path; timeout is
// the IPC timeout of each connection.
func NewPool(path string, timeout time.Duration) *Pool {
	return &Pool{path: path, timeout: timeout}
}

// Path is cleanup's socket.
func (p *Pool) Path() string { return p.path }

// Open is the package's Open on a pooled connection when one is idle.
func (p *Pool) Open(req *Request) (*Stream, error) {
	for {
		c := p.take()
		if c == nil {
			break
		}
		s, err := open(c, req, p)
		var refused *Error
		if err == nil || errors.As(err, &refused) {
			return s, err
		}
		// The connection died while idle (cleanup's idle timeout, a
		// reload): nothing was queued; try the next one or a new one.
	}
	c, err := dial(p.path, p.timeout)
	if err != nil {
		return nil, err
	}
	return open(c, req, p)
}

func (p *Pool) take() *ipc.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		e := p.idle[n-1]
		p.idle[n-1] = pooled{}
		p.idle = p.idle[:n-1]
		if time.Since(e.since) < poolMaxAge {
			return e.c
		}
		e.c.Close()
	}
	return nil
}

func (p *Pool) put(c *ipc.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Drop the stale ones first (they are the oldest, at the front).
	now := time.Now()
	for len(p.idle) > 0 && now.Sub(p.idle[0].since) >= poolMaxAge {
		p.idle[0].c.Close()
		p.idle = p.idle[1:]
	}
	if len(p.idle) >= poolMaxIdle {
		c.Close()
		return
	}
	p.idle = append(p.idle, pooled{c: c, since: now})
}

// Close closes the idle connections.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.idle {
		e.c.Close()
	}
	p.idle = nil
}

func dial(path string, timeout time.Duration) (*ipc.Conn, error) {
	return ipc.Dial(path, Service, ipc.Options{Timeout: timeout, MaxFrame: 4 * chunkSize})
}

// Open connects to cleanup at path and sends the envelope. On success the
// queue ID is known (Stream.ID) and content may be written.
func Open(path string, req *Request, timeout time.Duration) (*Stream, error) {
	c, err := dial(path, timeout)
	if err != nil {
		return nil, err
	}
	return open(c, req, nil)
}

// open sends the envelope on c; c is closed on error.
func open(c *ipc.Conn, req *Request, p *Pool) (*Stream, error) {
	s := &Stream{c: c, pool: p}
	if p != nil {
		if b, ok := p.bufs.Get().(*[]byte); ok {
			s.buf = (*b)[:0]
		}
	}
	if s.buf == nil {
		s.buf = make([]byte, 0, chunkSize)
	}
	var a ipc.Attrs
	a.Add(attrReq, "open")
	a.Add(attrSender, req.Sender)
	a.Add(attrCName, req.ClientName)
	a.Add(attrCAddr, req.ClientAddr)
	a.Add(attrHelo, req.HeloName)
	a.Add(attrProto, req.Protocol)
	a.Add(attrAuth, req.AuthUser)
	a.Add(attrBody, req.BodyType)
	a.AddBool(attrUTF8, req.SMTPUTF8)
	a.Add(attrRet, req.DSNRet)
	a.Add(attrEnvID, req.DSNEnvID)
	a.Add(attrContext, req.RewriteContext)
	if req.FullName != "" {
		a.Add(attrName, req.FullName)
	}
	if req.Filter != "" {
		a.Add(attrFilter, req.Filter)
	}
	if req.HasFlags {
		a.Add(attrFlags, strconv.FormatUint(uint64(req.Flags), 10))
	}
	if req.Trace {
		a.Add(attrTrace, "1")
	}
	if err := c.Send(a); err != nil {
		c.Close()
		return nil, err
	}
	for _, r := range req.Recipients {
		a = a[:0]
		a.Add(attrReq, "rcpt")
		a.Add(attrAddr, r.Addr)
		a.Add(attrNotify, r.Notify)
		a.Add(attrORcpt, r.ORcpt)
		if err := c.Send(a); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.Write(ipc.Attrs{{Name: attrReq, Value: "start"}}); err != nil {
		c.Close()
		return nil, err
	}
	reply, err := c.Read()
	if err != nil {
		c.Close()
		return nil, err
	}
	if st, ok := reply.Get(attrStatus); ok {
		c.Close()
		return nil, resultFrom(reply, st).Err()
	}
	s.id = reply.Str(attrQueueID)
	if s.id == "" {
		c.Close()
		return nil, errors.New("cleanup: no queue ID in reply")
	}
	return s, nil
}

// ID is the queue ID cleanup assigned.
func (s *Stream) ID() string { return s.id }

// Write adds content bytes.
func (s *Stream) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := len(p)
	for len(p) > 0 {
		k := min(chunkSize-len(s.buf), len(p))
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if len(s.buf) == chunkSize {
			if err := s.flushChunk(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (s *Stream) flushChunk() error {
	if len(s.buf) == 0 {
		return nil
	}
	err := s.c.Send(ipc.Attrs{{Name: attrReq, Value: "data"}, {Name: attrData, Value: string(s.buf)}})
	s.buf = s.buf[:0]
	if err != nil {
		s.err = err
	}
	return err
}

// Close ends the content and waits for cleanup's verdict. A nil error with
// Status OK means the message is durably queued.
func (s *Stream) Close() (Result, error) {
	keep := false
	defer func() {
		s.release(keep)
	}()
	if s.err != nil {
		return Result{}, s.err
	}
	if err := s.flushChunk(); err != nil {
		return Result{}, err
	}
	if err := s.c.Write(ipc.Attrs{{Name: attrReq, Value: "end"}}); err != nil {
		return Result{}, err
	}
	reply, err := s.c.Read()
	if err != nil {
		return Result{}, err
	}
	keep = reply.Bool(attrNext)
	return resultFrom(reply, reply.Str(attrStatus)), nil
}

// release ends the stream: the connection goes back to the pool (keep)
// or is closed, the chunk buffer back to the pool.
func (s *Stream) release(keep bool) {
	if s.pool != nil && keep {
		s.pool.put(s.c)
	} else {
		s.c.Close()
	}
	if s.pool != nil && cap(s.buf) == chunkSize {
		b := s.buf[:0]
		s.pool.bufs.Put(&b)
	}
	s.buf = nil
}

// Abort drops the message: cleanup sees the connection close without an
// end request and removes its temporary file.
func (s *Stream) Abort() { s.release(false) }

func resultFrom(a ipc.Attrs, st string) Result {
	return Result{Status: Status(st), DSN: a.Str(attrDSN), Text: a.Str(attrText), QueueID: a.Str(attrQueueID)}
}

// Server side.

// ReadRequest reads the envelope frames up to "start".
func ReadRequest(c *ipc.Conn, maxRcpt int) (*Request, error) {
	a, err := c.Read()
	if err != nil {
		return nil, err
	}
	if a.Str(attrReq) != "open" {
		return nil, fmt.Errorf("handoff: expected open, got %q", a.Str(attrReq))
	}
	req := &Request{
		Sender:         a.Str(attrSender),
		ClientName:     a.Str(attrCName),
		ClientAddr:     a.Str(attrCAddr),
		HeloName:       a.Str(attrHelo),
		Protocol:       a.Str(attrProto),
		AuthUser:       a.Str(attrAuth),
		BodyType:       a.Str(attrBody),
		SMTPUTF8:       a.Bool(attrUTF8),
		DSNRet:         a.Str(attrRet),
		DSNEnvID:       a.Str(attrEnvID),
		RewriteContext: a.Str(attrContext),
		FullName:       a.Str(attrName),
		Filter:         a.Str(attrFilter),
		Flags:          Internal,
		Trace:          a.Bool(attrTrace),
	}
	if v, ok := a.Get(attrFlags); ok {
		f, err := strconv.ParseUint(v, 10, 32)
		if err != nil || Flags(f)&^External != 0 {
			return nil, fmt.Errorf("handoff: bad flags %q", v)
		}
		req.Flags, req.HasFlags = Flags(f), true
	}
	for {
		a, err := c.Read()
		if err != nil {
			return nil, err
		}
		switch a.Str(attrReq) {
		case "rcpt":
			if maxRcpt > 0 && len(req.Recipients) >= maxRcpt {
				return nil, fmt.Errorf("handoff: more than %d recipients", maxRcpt)
			}
			req.Recipients = append(req.Recipients, Recipient{Addr: a.Str(attrAddr), Notify: a.Str(attrNotify), ORcpt: a.Str(attrORcpt)})
		case "start":
			return req, nil
		default:
			return nil, fmt.Errorf("handoff: unexpected request %q", a.Str(attrReq))
		}
	}
}

// SendID tells the client the queue ID.
func SendID(c *ipc.Conn, id string) error {
	return c.Write(ipc.Attrs{{Name: attrQueueID, Value: id}})
}

// Reply sends a final verdict; next tells the client that another open
// may follow on this connection.
func Reply(c *ipc.Conn, r Result, next bool) error {
	var a ipc.Attrs
	a.Add(attrStatus, string(r.Status))
	a.Add(attrDSN, r.DSN)
	a.Add(attrText, r.Text)
	a.Add(attrQueueID, r.QueueID)
	if next {
		a.AddBool(attrNext, true)
	}
	return c.Write(a)
}

// ContentReader returns the content as a reader; it reports io.EOF at the
// client's end request and io.ErrUnexpectedEOF if the client goes away.
func ContentReader(c *ipc.Conn) *Content { return &Content{c: c} }

// Content reads the content frames of one message.
type Content struct {
	c    *ipc.Conn
	cur  string
	done bool
}

// Ended reports whether the client's end request was read: the
// connection is then between messages.
func (r *Content) Ended() bool { return r.done && r.cur == "" }

func (r *Content) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.done {
			return 0, io.EOF
		}
		a, err := r.c.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		switch a.Str(attrReq) {
		case "data":
			r.cur = a.Str(attrData)
		case "end":
			r.done = true
		default:
			return 0, fmt.Errorf("handoff: unexpected request %q in content", a.Str(attrReq))
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

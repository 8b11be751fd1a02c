// Package cleanup is Postern's cleanup daemon: it receives a message from
// smtpd or pickup over the hand-off protocol (pkg/handoff), completes it,
// writes it durably into incoming/ and wakes qmgr.
//
// What it does to a message, as Postfix's cleanup(8):
//   - envelope addresses without a domain get @$myorigin (append_at_myorigin),
//     a domain without a dot .$mydomain (append_dot_mydomain);
//   - sender_canonical_maps, recipient_canonical_maps, canonical_maps and
//     masquerade_domains rewrite envelope and header addresses per their
//     *_classes (canonical.go); in the local rewrite context header
//     addresses are qualified too (header.go);
//   - recipients are expanded through virtual_alias_maps (virtual.go);
//   - header_checks and body_checks act on each header and body line
//     (checks.go); message_drop_headers are removed;
//   - sender_bcc_maps, recipient_bcc_maps and always_bcc add BCC
//     recipients (bcc.go);
//   - the content filter the receiving process names (content_filter,
//     overridden by a FILTER action) is recorded for qmgr;
//   - a request for a delivery report (sendmail -v, the hand-off's trace)
//     is recorded for qmgr as the envelope attribute "trace" = "1";
//   - the original recipient is kept for X-Original-To and orig_to=
//     unless enable_original_recipient is off;
//   - duplicate recipients are dropped;
//   - in the local rewrite context (local submissions, and SMTP clients
//     matched by local_header_rewrite_clients) or with
//     always_add_missing_headers, a missing From:, Date: and Message-Id: are
//     added at the end of the header;
//   - a header longer than header_size_limit is cut there;
//   - a message larger than message_size_limit is refused (5.3.4).
//
// The optional steps run per the client's flags (handoff.Flags), as
// Postfix's cleanup flags: smtpd and pickup ask for all of them less what
// their receive_override_options turn off (no_address_mappings: canonical
// mapping, masquerading, virtual aliases and BCC; no_header_body_checks:
// the content checks); mail Postern makes itself (notices) gets address
// mapping only, as Postfix's bounces.
//
// The reply to the client says "ok" only after queue.Writer.Commit has
// returned: the file and its directory entry are on disk.
//
// Security: cleanup runs as mail_owner. It trusts nothing in the message; it
// trusts the envelope its clients (smtpd, pickup) send, which reach it
// through public/cleanup.
package cleanup

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"postern/pkg/address"
	"postern/pkg/config"
	"postern/pkg/handoff"
	"postern/pkg/ipc"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/server"
)

// Cleanup is the daemon's state, shared by all sessions.
type Cleanup struct {
	log         *maillog.Logger
	store       *queue.Store
	myorigin    string
	myhostname  string
	sizeLimit   int64
	headerLimit int
	alwaysAdd   bool
	fromFormat  string // header_from_format
	qmgrPath    string
	ipcTimeout  time.Duration
	maxRcpt     int
	// valias is virtual_alias_maps expansion; nil when the parameter is
	// empty, so that plain mail pays no lookup.
	valias *virtualAlias
	// addr is canonical mapping and masquerading; nil when not set.
	addr *addrRewrite
	// hdrRewrite says header addresses are rewritten (addr's classes).
	hdrRewrite bool
	// dotDomain is $mydomain when append_dot_mydomain is on.
	dotDomain string
	// appendAt is append_at_myorigin.
	appendAt bool
	// remoteDomain is remote_header_rewrite_domain.
	remoteDomain string
	// checks are header_checks and body_checks.
	checks checks
	// dropHeaders is message_drop_headers (lower-case names).
	dropHeaders map[string]bool
	// bcc is sender_bcc_maps, recipient_bcc_maps and always_bcc.
	bcc bccConfig
	// enableOrig is enable_original_recipient.
	enableOrig bool
	dupLimit   int // duplicate_filter_limit
	// wake holds at most one pending wake-up for qmgr (see waker).
	wake chan struct{}
}

// New builds the cleanup service from the worker context.
func New(ctx context.Context, sc *server.Context) (any, error) {
	c := newCleanup(sc.Config, sc.Log)
	if err := c.openTables(sc.Config); err != nil {
		return nil, err
	}
	sc.Go(c.waker)
	return c, nil
}

// waker sends qmgr its 'I' wake-ups, one at a time. A session that has
// committed a file leaves a signal in c.wake; one connect to qmgr then
// covers every file committed before it started, since qmgr scans the
// whole of incoming/. Under load this turns a connect per message into a
// connect per batch; a short pause after each wake-up (wakeGap) lets the
// batch grow, so at a thousand messages a second qmgr reads incoming/ a
// few hundred times rather than once per message. A lone message is not
// delayed: the pause comes after its wake-up.
func (c *Cleanup) waker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
			if err := ipc.Trigger(c.qmgrPath, 'I', c.ipcTimeout); err != nil {
				c.log.Warning("wake up qmgr: %v", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wakeGap):
			}
		}
	}
}

// wakeGap is the least time between two wake-ups of qmgr.
const wakeGap = 2 * time.Millisecond

func newCleanup(cfg *config.Config, log *maillog.Logger) *Cleanup {
	qdir := cfg.Get("queue_directory")
	return &Cleanup{
		log:         log,
		store:       queue.NewStore(qdir),
		myorigin:    cfg.Get("myorigin"),
		myhostname:  cfg.Get("myhostname"),
		sizeLimit:   cfg.Size("message_size_limit"),
		headerLimit: max(cfg.Int("header_size_limit"), 2),
		alwaysAdd:   cfg.Bool("always_add_missing_headers"),
		fromFormat:  cfg.Get("header_from_format"),
		qmgrPath:    filepath.Join(qdir, queue.Public, cfg.Get("queue_service_name")),
		ipcTimeout:  cfg.Duration("ipc_timeout"),
		maxRcpt:     1000000,
		wake:        make(chan struct{}, 1),
		appendAt:    true,
		enableOrig:  cfg.Bool("enable_original_recipient"),
		dupLimit:    cfg.Int("duplicate_filter_limit"),
	}
}

// Handle serves the hand-offs of one connection: one message, or more
// when the client keeps the connection (handoff.Pool) and every message
// ended cleanly.
func (c *Cleanup) Handle(ctx context.Context, conn net.Conn) {
	ic := ipc.NewConn(conn, ipc.Options{Timeout: c.ipcTimeout, MaxFrame: 1 << 20})
	if err := ipc.Hello(ic, handoff.Service); err != nil {
		return
	}
	stopping := server.Stopping(ctx)
	for c.handleOne(ic, conn) {
		select {
		case <-stopping:
			return // reload or retirement: the client reconnects
		default:
		}
		if ic.WaitFrame(handoff.IdleTimeout) != nil {
			return // closed by the client, or idle
		}
	}
}

// handleOne serves one message; true means the connection is between
// messages and may carry another.
func (c *Cleanup) handleOne(ic *ipc.Conn, conn net.Conn) bool {
	req, err := handoff.ReadRequest(ic, c.maxRcpt)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			c.log.Warning("%s: %v", conn.RemoteAddr(), err)
		}
		return false
	}
	w, err := c.store.Create(queue.Incoming)
	if err != nil {
		c.log.Warning("create queue file: %v", err)
		handoff.Reply(ic, handoff.Result{Status: handoff.TempFail, DSN: "4.3.0", Text: "Error: queue file write error"}, false)
		return false
	}
	id := string(w.ID())
	if err := handoff.SendID(ic, id); err != nil {
		w.Abort()
		return false
	}
	content := handoff.ContentReader(ic)
	res := c.receive(req, w, content)
	res.QueueID = id
	if res.Status != handoff.OK {
		w.Abort()
	}
	next := content.Ended()
	if err := handoff.Reply(ic, res, next); err != nil {
		// The client went away after the commit: the message is queued and
		// will be delivered; the client will retry and may duplicate it, as
		// with any MTA that loses the connection after the final dot.
		c.log.Warning("%s: reply to client: %v", id, err)
		next = false
	}
	if res.Status == handoff.OK {
		select {
		case c.wake <- struct{}{}:
		default: // a wake-up is already pending and will cover this file
		}
	}
	return next
}

// with returns c, or a copy without the features flags turn off
// (receive_override_options of the receiving process, or a notice).
func (c *Cleanup) with(flags handoff.Flags) *Cleanup {
	if flags&handoff.FlagMap != 0 && flags&handoff.FlagChecks != 0 && flags&handoff.FlagBCC != 0 {
		return c
	}
	cc := *c
	if flags&handoff.FlagMap == 0 {
		cc.addr, cc.hdrRewrite, cc.valias = nil, false, nil
	}
	if flags&handoff.FlagChecks == 0 {
		cc.checks = checks{}
	}
	if flags&handoff.FlagBCC == 0 {
		cc.bcc = bccConfig{}
	}
	return &cc
}

// receive writes the envelope and content and commits the file.
func (c *Cleanup) receive(req *handoff.Request, w *queue.Writer, content io.Reader) handoff.Result {
	flags := handoff.Internal
	if req.HasFlags {
		flags = req.Flags
	}
	c = c.with(flags)
	id := string(w.ID())
	sender, err := c.rewrite(id, c.qualify(req.Sender), classEnvSender)
	if err != nil {
		return deferResult()
	}
	env := queue.Envelope{
		Sender:     sender,
		Arrival:    time.Now(),
		ClientName: req.ClientName,
		ClientAddr: req.ClientAddr,
		HeloName:   req.HeloName,
		Protocol:   req.Protocol,
		AuthUser:   req.AuthUser,
		BodyType:   req.BodyType,
		SMTPUTF8:   req.SMTPUTF8,
		DSNRet:     req.DSNRet,
		DSNEnvID:   req.DSNEnvID,
	}
	seen := address.NewDupFilter(c.dupLimit)
	// add puts one recipient, rewritten and expanded, into the envelope.
	add := func(r handoff.Recipient) (addr string, ok bool) {
		addr, err := c.rewrite(id, c.qualify(r.Addr), classEnvRcpt)
		if err != nil {
			return "", false
		}
		addrs := []string{addr}
		if c.valias != nil {
			var err error
			if addrs, err = c.expandVirtual(id, addr); err != nil {
				return "", false
			}
		}
		orig := r.Addr
		if !c.enableOrig {
			orig = ""
		}
		for _, a := range addrs {
			if seen.Seen(a) {
				continue
			}
			env.Recipients = append(env.Recipients, queue.Recipient{Addr: a, Orig: orig, Notify: r.Notify, ORcpt: r.ORcpt, Status: queue.Pending})
		}
		return addr, true
	}
	var bccs []string
	if c.bcc.sender != nil && env.Sender != "" {
		b, err := c.bccLookup(id, c.bcc.sender, "sender_bcc_maps", env.Sender)
		if err != nil {
			return deferResult()
		}
		bccs = append(bccs, b...)
	}
	for _, r := range req.Recipients {
		addr, ok := add(r)
		if !ok {
			return deferResult()
		}
		if c.bcc.rcpt != nil {
			b, err := c.bccLookup(id, c.bcc.rcpt, "recipient_bcc_maps", addr)
			if err != nil {
				return deferResult()
			}
			bccs = append(bccs, b...)
		}
	}
	if len(env.Recipients) == 0 {
		return handoff.Result{Status: handoff.PermFail, DSN: "5.1.3", Text: "Error: no recipients specified"}
	}
	if c.bcc.always != "" {
		bccs = append(bccs, c.bcc.always)
	}
	// Automatic BCC recipients are added as with NOTIFY=NEVER, as Postfix
	// 2.3 and later do: the sender never hears about them.
	for _, b := range bccs {
		if _, ok := add(handoff.Recipient{Addr: b, Notify: "NEVER"}); !ok {
			return deferResult()
		}
	}
	mc := &msgCtx{
		id:         id,
		sender:     env.Sender,
		fullName:   req.FullName,
		addMissing: c.alwaysAdd || req.RewriteContext == handoff.ContextLocal,
		local:      req.RewriteContext == handoff.ContextLocal,
		client: checkClient{name: req.ClientName, addr: req.ClientAddr, helo: req.HeloName,
			proto: req.Protocol, from: env.Sender, to: env.Recipients[0].Addr},
	}
	if !mc.local {
		mc.remoteDomain = c.remoteDomain
	}
	// The envelope is written when the content starts or, with
	// header_checks, once the header has been checked: REDIRECT and FILTER
	// change it. The content filter of the receiving process
	// (content_filter) is recorded unless a FILTER action overrides it.
	var envRedirect, envFilter string
	writeEnvelope := func() error {
		envRedirect, envFilter = mc.redirect, mc.filter
		if mc.redirect != "" {
			env.Recipients = []queue.Recipient{c.redirected(env.Recipients[0], mc.redirect)}
		}
		if f := cmp.Or(mc.filter, req.Filter); f != "" {
			env.Attrs = map[string]string{attrFilter: f}
		}
		if req.Trace {
			if env.Attrs == nil {
				env.Attrs = map[string]string{}
			}
			env.Attrs[attrTrace] = "1"
		}
		if err := w.Envelope(&env); err != nil {
			c.log.Warning("%s: write queue file: %v", id, err)
			return errEnvelope
		}
		return nil
	}
	msgID, err := c.copyContent(w, content, mc, writeEnvelope)
	if err == nil && mc.reject == nil && !mc.discard && mc.rewriteErr == nil {
		err = c.lateActions(w, &env, mc, envRedirect, envFilter)
	}
	if err == nil && mc.rewriteErr != nil {
		return deferResult()
	}
	switch {
	case err == nil && mc.reject != nil:
		return *mc.reject
	case err == nil && mc.discard:
		return handoff.Result{Status: handoff.Discarded, DSN: "2.0.0", Text: "Ok: queued as " + id}
	case errors.Is(err, errEnvelope):
		return tempFail()
	case errors.Is(err, errTooBig):
		c.log.Printf("%s: reject: message too big (%d bytes); from=<%s>", id, w.Size(), env.Sender)
		return handoff.Result{Status: handoff.PermFail, DSN: "5.3.4", Text: "Error: message file too big"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return handoff.Result{Status: handoff.TempFail, DSN: "4.3.0", Text: "Error: client went away"}
	case err != nil:
		c.log.Warning("%s: %v", id, err)
		return tempFail()
	}
	commit := w.Commit
	if mc.hold {
		commit = func() error { return w.CommitTo(queue.Hold) }
	}
	if err := commit(); err != nil {
		c.log.Warning("%s: commit queue file: %v", id, err)
		return tempFail()
	}
	if msgID != "" {
		c.log.MessageID(id, msgID)
	}
	return handoff.Result{Status: handoff.OK, DSN: "2.0.0", Text: "Ok: queued as " + id}
}

// deferResult is Postfix's reply to CLEANUP_STAT_DEFER.
func deferResult() handoff.Result {
	return handoff.Result{Status: handoff.TempFail, DSN: "4.7.1", Text: "Error: service unavailable"}
}

func tempFail() handoff.Result {
	return handoff.Result{Status: handoff.TempFail, DSN: "4.3.0", Text: "Error: queue file write error"}
}

// qualify appends @$myorigin to an address without a domain
// (append_at_myorigin) and .$mydomain to a domain without a dot
// (append_dot_mydomain); the null sender stays empty.
func (c *Cleanup) qualify(addr string) string {
	if addr == "" {
		return addr
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		if !c.appendAt {
			return addr
		}
		addr += "@" + c.myorigin
		at = len(addr) - len(c.myorigin) - 1
	}
	if c.dotDomain != "" {
		d := addr[at+1:]
		if d != "" && !strings.ContainsRune(d, '.') && d[0] != '[' {
			addr += "." + c.dotDomain
		}
	}
	return addr
}

var (
	errTooBig   = errors.New("message too big")
	errEnvelope = errors.New("envelope not written")
)

// copyContent streams the content into the queue file. While in the
// header it notes which of From:, Date: and Message-Id: are present, cuts
// over-long headers, and adds the missing ones before the end of the
// header; the body is copied as it is. It returns the Message-Id value.
func (c *Cleanup) copyContent(w *queue.Writer, content io.Reader, mc *msgCtx, writeEnvelope func() error) (string, error) {
	br := readers.Get().(*bufio.Reader)
	br.Reset(content)
	defer func() { br.Reset(nil); readers.Put(br) }()
	var (
		haveFrom, haveDate, haveMsgID bool
		msgID                         string
		curName                       string // lower-case name of the header being read
		curSize                       int
		last                          byte = '\n'
		// pend holds the header being read when a feature needs it whole
		// (see wantWhole); pendName is its lower-case name.
		pend      []byte
		pendName  string
		buffering bool
	)
	sender, addMissing, id := mc.sender, mc.addMissing, mc.id
	limit := c.sizeLimit
	// With header_checks the header is kept in hdrBuf until it is
	// complete and checked, then the envelope is written and the header
	// after it.
	deferHdr := c.checks.header != nil
	var hdrBuf []byte
	if !deferHdr {
		if err := writeEnvelope(); err != nil {
			return "", err
		}
	}
	write := func(p []byte) error {
		if limit > 0 && w.Size()+int64(len(hdrBuf))+int64(len(p)) > limit {
			return errTooBig
		}
		if len(p) > 0 {
			last = p[len(p)-1]
		}
		if mc.reject != nil || mc.discard {
			return nil // the rest is read and dropped
		}
		if deferHdr {
			hdrBuf = append(hdrBuf, p...)
			return nil
		}
		_, err := w.Write(p)
		return err
	}
	startBody := func() error {
		if !deferHdr {
			return nil
		}
		deferHdr = false
		if mc.reject != nil || mc.discard {
			return nil
		}
		if err := writeEnvelope(); err != nil {
			return err
		}
		buf := hdrBuf
		hdrBuf = nil
		return write(buf)
	}
	flush := func() error {
		if !buffering {
			return nil
		}
		buffering = false
		out := c.processHeader(mc, pendName, pend)
		pend = pend[:0]
		if out == nil {
			return nil
		}
		return write(out)
	}
	endHeader := func() error {
		if err := flush(); err != nil {
			return err
		}
		if !addMissing {
			return startBody()
		}
		var b bytes.Buffer
		now := time.Now()
		if !haveFrom {
			fmt.Fprintf(&b, "From: %s\n", fromHeader(sender, mc.fullName, c.fromFormat))
		}
		if !haveDate {
			fmt.Fprintf(&b, "Date: %s\n", now.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
		}
		if !haveMsgID {
			msgID = fmt.Sprintf("<%s.%s@%s>", now.UTC().Format("20060102150405"), id, c.myhostname)
			fmt.Fprintf(&b, "Message-Id: %s\n", msgID)
		}
		if err := write(b.Bytes()); err != nil {
			return err
		}
		return startBody()
	}
	for {
		line, err := br.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if err != nil && err != io.EOF && !full {
			return msgID, err
		}
		if len(line) == 0 {
			if e := endHeader(); e != nil {
				return msgID, e
			}
			return msgID, nil
		}
		header := false
		if !full {
			if line[0] == ' ' || line[0] == '\t' {
				header = curName != ""
				if header {
					curSize += len(line)
					if curName == "message-id" {
						msgID += " " + strings.TrimSpace(string(line))
					}
					if c.headerLimit > 0 && curSize > c.headerLimit {
						line = nil // the excess of an over-long header is discarded
					}
				}
			} else if name, ok := headerName(line); ok {
				if e := flush(); e != nil {
					return msgID, e
				}
				header = true
				curName = strings.ToLower(name)
				if c.wantWhole(curName, mc) {
					buffering, pendName = true, curName
				}
				curSize = len(line)
				switch curName {
				case "from", "resent-from":
					haveFrom = true
				case "date", "resent-date":
					haveDate = true
				case "message-id":
					haveMsgID = true
					msgID = strings.TrimSpace(string(line[len(name)+1:]))
				}
				if c.headerLimit > 0 && curSize > c.headerLimit {
					line = append(line[:c.headerLimit-1:c.headerLimit-1], '\n')
				}
			}
		}
		if header {
			if len(line) > 0 && line[len(line)-1] != '\n' {
				line = append(line[:len(line):len(line)], '\n')
			}
			if buffering {
				pend = append(pend, line...)
			} else if e := write(line); e != nil {
				return msgID, e
			}
			if err == io.EOF {
				if e := endHeader(); e != nil {
					return msgID, e
				}
				return msgID, c.finish(write, last)
			}
			continue
		}
		// The first line that is not a header (normally the empty line)
		// starts the body.
		if e := endHeader(); e != nil {
			return msgID, e
		}
		if c.scanActive() {
			scan := newBodyScan(c, mc, write)
			if len(line) == 1 && line[0] == '\n' {
				if e := write(line); e != nil {
					return msgID, e
				}
			} else if e := scan.line(line); e != nil {
				return msgID, e
			}
			if err != io.EOF {
				if e := scanBody(br, scan); e != nil {
					return msgID, e
				}
			}
			if e := scan.end(); e != nil {
				return msgID, e
			}
			return msgID, c.finish(write, last)
		}
		if e := write(line); e != nil {
			return msgID, e
		}
		if err == io.EOF {
			return msgID, c.finish(write, last)
		}
		break
	}
	// The body is copied as it is, straight from the reader's buffer.
	if _, err := br.WriteTo(writeFunc(write)); err != nil {
		return msgID, err
	}
	return msgID, c.finish(write, last)
}

// writeFunc adapts copyContent's write to io.Writer.
type writeFunc func([]byte) error

func (f writeFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// readers holds the 64 KiB readers of copyContent between messages.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// finish makes sure the content ends with a line ending.
func (c *Cleanup) finish(write func([]byte) error, last byte) error {
	if last != '\n' {
		return write([]byte{'\n'})
	}
	return nil
}

// headerName returns the field name of a header line ("Name: value"), as
// RFC 5322 §2.2 defines it: printable ASCII except colon, then a colon.
func headerName(line []byte) (string, bool) {
	for i, b := range line {
		switch {
		case b == ':':
			if i == 0 {
				return "", false
			}
			return string(line[:i]), true
		case b <= ' ' || b > '~':
			// Postfix also accepts white space before the colon.
			if b == ' ' || b == '\t' {
				j := i
				for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
					j++
				}
				if j < len(line) && line[j] == ':' && i > 0 {
					return string(line[:i]), true
				}
			}
			return "", false
		}
	}
	return "", false
}

// fromHeader is the value of an added From: header, as Postfix writes it
// per header_from_format: "standard" gives `Full Name <addr>`, "obsolete"
// `addr (Full Name)`; without a name just the address. The name is quoted
// when it has RFC 5322 specials and encoded (RFC 2047) when it is not
// ASCII. The null sender is MAILER-DAEMON.
func fromHeader(sender, name, format string) string {
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	name = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, name)
	if strings.TrimSpace(name) == "" {
		return sender
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			ascii = false
		}
	}
	if format == "obsolete" {
		if !ascii {
			name = mime.QEncoding.Encode("utf-8", name)
		} else {
			name = strings.NewReplacer("(", "\\(", ")", "\\)", "\\", "\\\\").Replace(name)
		}
		return sender + " (" + name + ")"
	}
	switch {
	case !ascii:
		name = mime.QEncoding.Encode("utf-8", name)
	case strings.ContainsAny(name, "()<>[]:;@\\,.\""):
		name = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
	}
	return name + " <" + sender + ">"
}

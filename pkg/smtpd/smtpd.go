// Package smtpd is Postern's SMTP server (Postfix's smtpd(8)): it speaks
// ESMTP (RFC 5321) to clients through go-smtp, applies the relay and
// recipient policy, and streams each accepted message to cleanup over the
// hand-off protocol. It answers 250 to the final dot only after cleanup
// has reported the queue file durable.
//
// Extensions: PIPELINING, SIZE, ENHANCEDSTATUSCODES, 8BITMIME, DSN,
// SMTPUTF8 (and go-smtp's CHUNKING).
//
// Policy at RCPT TO, as Postfix: smtpd_relay_restrictions (default
// permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination),
// then smtpd_recipient_restrictions, then the implicit
// reject_unlisted_recipient for virtual mailbox and alias domains.
//
// Line endings: the content is handed on with LF line endings. Every CRLF
// and every bare LF ends a line (Postfix 3.9's smtpd_forbid_bare_newline =
// normalize): a client cannot hide an end-of-data sequence in a bare LF and
// have it reach the next hop, because every line leaves Postern as
// CRLF-terminated and dot-stuffed.
//
// Security: smtpd runs as mail_owner and talks to untrusted clients. Every
// input is bounded (line length, message size, recipient count, timeouts).
// Reject texts name the address and the rule, never configuration details.
package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"postern/pkg/address"
	"postern/pkg/config"
	"postern/pkg/handoff"
	"postern/pkg/maillog"
	"postern/pkg/matchlist"
	"postern/pkg/queue"
	"postern/pkg/resolve"
	"postern/pkg/server"
	"postern/pkg/table"
)

// Server holds what every session of this smtpd shares.
type Server struct {
	log        *maillog.Logger
	banner     string
	myhostname string
	mailName   string
	mynetworks *matchlist.List
	resolver   *resolve.Resolver
	relayRules []string
	rcptRules  []string
	unlisted   bool
	cleanup    *handoff.Pool // connections to cleanup, reused across messages
	ifaces     []netip.Addr
	// rewriteClients is local_header_rewrite_clients.
	rewriteClients []rewriteClient
	timeout        time.Duration
	ipcTimeout     time.Duration
	peerLookup     bool
	// filter is content_filter, flags receive_override_options as
	// cleanup flags; noUnknownRcpt is its no_unknown_recipient_checks.
	filter        string
	flags         handoff.Flags
	noUnknownRcpt bool

	gs    *smtp.Server
	conns chan net.Conn
	once  sync.Once
}

// New builds the smtpd service.
func New(ctx context.Context, sc *server.Context) (any, error) {
	s, err := NewServer(sc.Config, sc.Log)
	if err != nil {
		return nil, err
	}
	sc.Go(func(ctx context.Context) {
		go s.gs.Serve(s)
		<-ctx.Done()
		s.gs.Close()
	})
	return s, nil
}

// NewServer builds a Server from main.cf.
func NewServer(cfg *config.Config, log *maillog.Logger) (*Server, error) {
	tables := table.NewCache(table.Options{Logger: log.Slog()})
	open := func(spec string) (table.Table, error) { return tables.Open(spec) }
	res, err := resolve.New(cfg, open)
	if err != nil {
		return nil, err
	}
	s := &Server{
		log:        log,
		banner:     cfg.Get("smtpd_banner"),
		myhostname: cfg.Get("myhostname"),
		mailName:   cfg.Get("mail_name"),
		resolver:   res,
		relayRules: cfg.List("smtpd_relay_restrictions"),
		rcptRules:  cfg.List("smtpd_recipient_restrictions"),
		unlisted:   cfg.Bool("smtpd_reject_unlisted_recipient"),
		cleanup: handoff.NewPool(filepath.Join(cfg.Get("queue_directory"), queue.Public, cfg.Get("cleanup_service_name")),
			cfg.Duration("ipc_timeout")),
		timeout:    cfg.Duration("smtpd_timeout"),
		ipcTimeout: cfg.Duration("ipc_timeout"),
		peerLookup: cfg.Bool("smtpd_peername_lookup"),
		filter:     cfg.Get("content_filter"),
		conns:      make(chan net.Conn),
	}
	if s.flags, s.noUnknownRcpt, err = handoff.ReceiveOverride(cfg.List("receive_override_options")); err != nil {
		return nil, err
	}
	if err := s.checkRules(); err != nil {
		return nil, err
	}
	nets := cfg.List("mynetworks")
	if _, set := cfg.Raw("mynetworks"); !set {
		nets = networksByStyle(cfg.Get("mynetworks_style"))
	}
	lopen := func(spec string) (matchlist.Lookuper, error) { return tables.Open(spec) }
	if s.mynetworks, err = matchlist.Hosts(nets, lopen); err != nil {
		return nil, fmt.Errorf("mynetworks: %w", err)
	}
	s.ifaces = interfaceAddrs(cfg.List("inet_interfaces"))
	if s.rewriteClients, err = parseRewriteClients(cfg.List("local_header_rewrite_clients"), open); err != nil {
		return nil, err
	}

	gs := smtp.NewServer(backend{s})
	gs.Domain = s.myhostname
	gs.MaxMessageBytes = cfg.Size("message_size_limit")
	gs.MaxRecipients = cfg.Int("smtpd_recipient_limit")
	gs.MaxLineLength = 4096
	gs.ReadTimeout = s.timeout
	gs.WriteTimeout = s.timeout
	gs.EnableSMTPUTF8 = cfg.Bool("smtputf8_enable")
	gs.EnableDSN = true
	gs.ErrorLog = errorLog{log}
	s.gs = gs
	return s, nil
}

type errorLog struct{ l *maillog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.l.Debug(format, v...) }
func (e errorLog) Println(v ...any)               { e.l.Debug("%s", fmt.Sprint(v...)) }

// The restrictions this smtpd knows; anything else is a configuration error
// that Postfix answers with 451 4.3.5 at run time and that we refuse at start.
var knownRules = map[string]bool{
	"permit": true, "reject": true, "defer": true,
	"permit_mynetworks": true, "permit_sasl_authenticated": true,
	"permit_auth_destination": true, "reject_unauth_destination": true,
	"defer_unauth_destination": true, "reject_unlisted_recipient": true,
}

func (s *Server) checkRules() error {
	for _, list := range [][]string{s.relayRules, s.rcptRules} {
		for _, r := range list {
			if !knownRules[r] {
				return fmt.Errorf("restriction %q is not supported by Postern", r)
			}
		}
	}
	return nil
}

// networksByStyle computes mynetworks from mynetworks_style when mynetworks
// is not set: "host" trusts this host's own addresses, "subnet" and "class"
// the networks they are on (class is treated as subnet).
func networksByStyle(style string) []string {
	out := []string{"127.0.0.0/8", "[::1]/128"}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		p, err := netip.ParsePrefix(ipn.String())
		if err != nil {
			continue
		}
		if style == "host" {
			out = append(out, p.Addr().Unmap().String())
		} else {
			out = append(out, p.Masked().String())
		}
	}
	return out
}

func interfaceAddrs(list []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range list {
		if s == "all" || s == "loopback-only" {
			addrs, _ := net.InterfaceAddrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok {
					if ad, ok := netip.AddrFromSlice(ipn.IP); ok && (s == "all" || ad.IsLoopback()) {
						out = append(out, ad.Unmap())
					}
				}
			}
			continue
		}
		if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// Handle serves one SMTP connection; it returns when the session is over.
func (s *Server) Handle(ctx context.Context, conn net.Conn) {
	sc := newSessionConn(conn, s.banner)
	sc.session = &session{s: s, conn: sc, client: s.lookupClient(conn)}
	mc := sc.session.logClient()
	s.log.Connect(mc)
	select {
	case s.conns <- sc:
		<-sc.closed
	case <-ctx.Done():
		conn.Close()
		return
	}
	if !sc.quit() {
		s.log.LostConnection("", mc, sc.last())
	}
	s.log.Disconnect(mc, sc.stats())
}

// Accept, Close and Addr make Server the listener go-smtp serves: the
// skeleton owns the real listener and hands connections in through Handle.
func (s *Server) Accept() (net.Conn, error) {
	c, ok := <-s.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

func (s *Server) Close() error {
	s.once.Do(func() { close(s.conns) })
	return nil
}

func (s *Server) Addr() net.Addr { return &net.UnixAddr{Name: "smtpd", Net: "unix"} }

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	sc, _ := c.Conn().(*sessionConn)
	if sc == nil {
		return nil, errors.New("internal error: unexpected connection type")
	}
	return sc.session, nil
}

// client describes the SMTP client as Postfix logs it: name[addr].
type client struct {
	name, addr string
	ip         netip.Addr
	port       string
}

func (c client) String() string { return c.name + "[" + c.addr + "]" }

func (s *Server) lookupClient(conn net.Conn) client {
	cl := client{name: "unknown", addr: "unknown"}
	ap, err := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err != nil {
		return cl
	}
	cl.ip = ap.Addr().Unmap()
	cl.addr = cl.ip.String()
	cl.port = fmt.Sprint(ap.Port())
	if !s.peerLookup {
		return cl
	}
	// Reverse lookup, confirmed by a forward lookup, as Postfix: a name that
	// does not map back to the address is "unknown".
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names, err := net.DefaultResolver.LookupAddr(ctx, cl.addr)
	if err != nil || len(names) == 0 {
		return cl
	}
	name := strings.TrimSuffix(names[0], ".")
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		return cl
	}
	for _, a := range addrs {
		if p, err := netip.ParseAddr(a); err == nil && p.Unmap() == cl.ip {
			cl.name = name
			break
		}
	}
	return cl
}

// session is one SMTP session (go-smtp's Session).
type session struct {
	s      *Server
	conn   *sessionConn
	client client
	helo   string

	from     string
	mailOpts smtp.MailOptions
	rcpts    []handoff.Recipient
}

var _ smtp.Session = (*session)(nil)

func (ss *session) Reset() {
	ss.from = ""
	ss.mailOpts = smtp.MailOptions{}
	ss.rcpts = nil
}

func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if !address.Valid(from) {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	}
	ss.Reset()
	ss.from = from
	if opts != nil {
		ss.mailOpts = *opts
	}
	return nil
}

func (ss *session) reject(code int, enh smtp.EnhancedCode, msg, to string) error {
	reply := fmt.Sprintf("%d %d.%d.%d %s", code, enh[0], enh[1], enh[2], msg)
	ss.s.log.Reject("", "RCPT", ss.logClient(), reply, ss.from, to, ss.proto(), ss.conn.helo())
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

func (ss *session) logClient() maillog.Client {
	return maillog.Client{Name: ss.client.name, Addr: ss.client.addr, Port: ss.client.port}
}

func (ss *session) proto() string {
	if ss.conn.ehlo() {
		return "ESMTP"
	}
	return "SMTP"
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !address.Valid(to) || to == "" {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	}
	for _, rules := range [][]string{ss.s.relayRules, ss.s.rcptRules} {
		if err := ss.applyRules(rules, to); err != nil {
			return err
		}
	}
	if ss.s.unlisted {
		if err := ss.checkUnlisted(to); err != nil {
			return err
		}
	}
	r := handoff.Recipient{Addr: to}
	if opts != nil {
		if len(opts.Notify) > 0 {
			n := make([]string, len(opts.Notify))
			for i, v := range opts.Notify {
				n[i] = string(v)
			}
			r.Notify = strings.Join(n, ",")
		}
		if opts.OriginalRecipient != "" {
			r.ORcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
		}
	}
	ss.rcpts = append(ss.rcpts, r)
	return nil
}

// applyRules evaluates one restriction list for a recipient: the first
// rule that decides ends the list.
func (ss *session) applyRules(rules []string, to string) error {
	bracket := address.Bracket(to)
	for _, r := range rules {
		switch r {
		case "permit":
			return nil
		case "reject":
			return ss.reject(554, smtp.EnhancedCode{5, 7, 1}, bracket+": Recipient address rejected: Access denied", to)
		case "defer":
			return ss.reject(450, smtp.EnhancedCode{4, 7, 1}, bracket+": Recipient address rejected: Access denied", to)
		case "permit_mynetworks":
			ok, err := ss.s.mynetworks.MatchAddr(ss.client.ip)
			if err != nil {
				return ss.tableError(err, to)
			}
			if ok {
				return nil
			}
		case "permit_sasl_authenticated":
			// No SASL server yet: nobody is authenticated.
		case "permit_auth_destination", "reject_unauth_destination", "defer_unauth_destination":
			ok, err := ss.s.resolver.Authorized(to)
			if err != nil {
				return ss.tableError(err, to)
			}
			switch {
			case ok && r == "permit_auth_destination":
				return nil
			case !ok && r == "reject_unauth_destination":
				return ss.reject(554, smtp.EnhancedCode{5, 7, 1}, bracket+": Relay access denied", to)
			case !ok && r == "defer_unauth_destination":
				return ss.reject(454, smtp.EnhancedCode{4, 7, 1}, bracket+": Relay access denied", to)
			}
		case "reject_unlisted_recipient":
			if err := ss.checkUnlisted(to); err != nil {
				return err
			}
		}
	}
	return nil
}

func (ss *session) checkUnlisted(to string) error {
	if ss.s.noUnknownRcpt {
		// receive_override_options=no_unknown_recipient_checks: the
		// explicit and the implicit reject_unlisted_recipient both pass.
		return nil
	}
	known, err := ss.s.resolver.Known(to)
	if err != nil {
		return ss.tableError(err, to)
	}
	if known {
		return nil
	}
	class, _ := ss.s.resolver.ClassOf(address.Domain(to))
	table := "virtual mailbox table"
	switch class {
	case resolve.VirtualAlias:
		table = "virtual alias table"
	case resolve.Local:
		table = "local recipient table"
	}
	return ss.reject(550, smtp.EnhancedCode{5, 1, 1}, address.Bracket(to)+": Recipient address rejected: User unknown in "+table, to)
}

func (ss *session) tableError(err error, to string) error {
	ss.s.log.Warning("%s: %v", ss.client, err)
	return ss.reject(451, smtp.EnhancedCode{4, 3, 0}, address.Bracket(to)+": Temporary lookup failure", to)
}

func (ss *session) Data(r io.Reader) error {
	req := &handoff.Request{
		Sender:         ss.from,
		ClientName:     ss.client.name,
		ClientAddr:     ss.client.addr,
		HeloName:       ss.conn.helo(),
		Protocol:       ss.proto(),
		BodyType:       string(ss.mailOpts.Body),
		SMTPUTF8:       ss.mailOpts.UTF8,
		DSNRet:         string(ss.mailOpts.Return),
		DSNEnvID:       ss.mailOpts.EnvelopeID,
		RewriteContext: handoff.ContextRemote,
		Filter:         ss.s.filter,
		Flags:          ss.s.flags,
		HasFlags:       true,
		Recipients:     ss.rcpts,
	}
	if ss.s.localClient(ss.client.ip) {
		req.RewriteContext = handoff.ContextLocal
	}
	st, err := ss.s.cleanup.Open(req)
	if err != nil {
		var he *handoff.Error
		if errors.As(err, &he) {
			return smtpStatus(he.Result)
		}
		ss.s.log.Warning("connect to cleanup: %v", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error: queue file write error"}
	}
	id := st.ID()
	ss.s.log.ClientLine(id, ss.logClient(), "", "")
	if _, err := io.WriteString(st, ss.received(id)); err != nil {
		st.Abort()
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error: queue file write error"}
	}
	if err := copyNormalized(st, r); err != nil {
		st.Abort()
		if errors.Is(err, smtp.ErrDataTooLarge) {
			ss.s.log.Printf("%s: reject: size limit exceeded from %s", id, ss.client)
			return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Error: message file too big"}
		}
		return err
	}
	res, err := st.Close()
	if err != nil {
		ss.s.log.Warning("%s: cleanup: %v", id, err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error: queue file write error"}
	}
	return smtpStatus(res)
}

func smtpStatus(r handoff.Result) *smtp.SMTPError {
	code := 250
	switch r.Status {
	case handoff.TempFail:
		code = 451
	case handoff.PermFail:
		// As Postfix's smtpd: 552 for size, 550 for content policy
		// (header/body checks), 554 for other refusals.
		code = 554
		switch {
		case r.DSN == "5.3.4":
			code = 552
		case strings.HasPrefix(r.DSN, "5.7."):
			code = 550
		}
	}
	var enh smtp.EnhancedCode
	if _, err := fmt.Sscanf(r.DSN, "%d.%d.%d", &enh[0], &enh[1], &enh[2]); err != nil {
		enh = smtp.EnhancedCode{code / 100, 0, 0}
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: r.Text}
}

// rewriteClient is one element of local_header_rewrite_clients: a
// permit_* name, or a table (check_address_map type:name, or type:name
// alone) looked up with the client address.
type rewriteClient struct {
	name  string
	table table.Table
}

// parseRewriteClients reads local_header_rewrite_clients (postconf(5)).
// Postern has no SASL or TLS server, so permit_sasl_authenticated and
// the permit_tls_* names never match; an unknown name is an error, as
// Postfix's smtpd refuses it.
func parseRewriteClients(items []string, open func(string) (table.Table, error)) ([]rewriteClient, error) {
	var out []rewriteClient
	for i := 0; i < len(items); i++ {
		it := items[i]
		switch it {
		case "permit_inet_interfaces", "permit_mynetworks", "permit_sasl_authenticated",
			"permit_tls_clientcerts", "permit_tls_all_clientcerts":
			out = append(out, rewriteClient{name: it})
			continue
		case "check_address_map":
			if i+1 >= len(items) {
				return nil, fmt.Errorf("local_header_rewrite_clients: check_address_map without a table")
			}
			i++
			it = items[i]
		}
		if !strings.Contains(it, ":") {
			return nil, fmt.Errorf("local_header_rewrite_clients: unknown element %q", it)
		}
		t, err := open(it)
		if err != nil {
			return nil, fmt.Errorf("local_header_rewrite_clients: %w", err)
		}
		out = append(out, rewriteClient{name: "check_address_map", table: t})
	}
	return out, nil
}

// localClient reports whether the client's headers are rewritten as
// local mail (local_header_rewrite_clients; default
// permit_inet_interfaces). A table lookup error counts as no match.
func (s *Server) localClient(ip netip.Addr) bool {
	for _, r := range s.rewriteClients {
		switch r.name {
		case "permit_inet_interfaces":
			if slices.Contains(s.ifaces, ip) {
				return true
			}
		case "permit_mynetworks":
			if ok, _ := s.mynetworks.MatchAddr(ip); ok {
				return true
			}
		case "check_address_map":
			// The lookup result is ignored (postconf(5)).
			if _, found, err := r.table.Lookup(ip.String()); err == nil && found {
				return true
			}
		}
	}
	return false
}

// received builds the Received: header as Postfix writes it.
func (ss *session) received(id string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s (%s [%s])\n", ss.conn.helo(), ss.client.name, ss.client.addr)
	fmt.Fprintf(&b, "\tby %s (%s) with %s id %s", ss.s.myhostname, ss.s.mailName, ss.proto(), id)
	if len(ss.rcpts) == 1 {
		fmt.Fprintf(&b, "\n\tfor <%s>", ss.rcpts[0].Addr)
	}
	fmt.Fprintf(&b, "; %s\n", time.Now().Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
	return b.String()
}

// copyBufs holds the two 32 KiB buffers of copyNormalized between
// messages.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// copyNormalized copies SMTP content, turning every CRLF into LF.
func copyNormalized(w io.Writer, r io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := (*bp)[:32<<10]
	out := (*bp)[32<<10 : 32<<10 : 64<<10]
	pendingCR := false
	for {
		n, err := r.Read(buf)
		out = out[:0]
		for _, c := range buf[:n] {
			if pendingCR {
				pendingCR = false
				if c != '\n' {
					out = append(out, '\r')
				}
			}
			if c == '\r' {
				pendingCR = true
				continue
			}
			out = append(out, c)
		}
		if len(out) > 0 {
			if _, werr := w.Write(out); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			if pendingCR {
				_, werr := w.Write([]byte{'\r'})
				return werr
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

package smtpclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"postern/pkg/address"
	"postern/pkg/config"
	"postern/pkg/deliver"
	"postern/pkg/dnsresolve"
	"postern/pkg/ipc"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/server"
	"postern/pkg/table"
)

// maxIdleSessions bounds the connection cache of one process.
const maxIdleSessions = 256

// Agent is the smtp or lmtp delivery agent of one process.
type Agent struct {
	program    string // "smtp" or "lmtp"
	service    string
	lmtp       bool
	log        *maillog.Logger
	store      *queue.Store
	res        hostResolver
	myhostname string
	helo       string
	defPort    int
	t          timeouts
	tls        *tlsPolicy
	bind4      string
	bind6      string
	noEHLO     bool
	skip5xx    bool
	saslOn     bool
	saslMaps   *table.Maps
	saslOpts   []string
	saslTLS    []string
	saslFilter []string
	senderAuth bool
	fallback   []string
	addrLimit  int
	sessLimit  int
	v4, v6     bool
	hostDNS    bool
	hostNative bool
	cache      *cache
	ipcTimeout time.Duration
	delim      string
}

// New builds the agent for the skeleton and starts the goroutine that
// closes idle cached connections.
func New(ctx context.Context, sc *server.Context) (any, error) {
	a, err := newAgent(sc.Config, sc.Log, sc.Program, sc.Service, nil)
	if err != nil {
		return nil, err
	}
	sc.Go(a.run)
	return a, nil
}

// run expires idle sessions until ctx ends, then closes them all.
func (a *Agent) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.cache.expire(true)
			return
		case <-tick.C:
			a.cache.expire(false)
		}
	}
}

// param returns the name of a client parameter for this program: the
// lmtp_ form for lmtp when Postern registers it, else the smtp_ form.
func (a *Agent) param(suffix string) string {
	if a.lmtp {
		if _, ok := config.Lookup("lmtp_" + suffix); ok {
			return "lmtp_" + suffix
		}
	}
	return "smtp_" + suffix
}

func newAgent(cfg *config.Config, log *maillog.Logger, program, service string, res hostResolver) (*Agent, error) {
	a := &Agent{
		program:    program,
		service:    service,
		lmtp:       program == "lmtp",
		log:        log,
		store:      queue.NewStore(cfg.Get("queue_directory")),
		myhostname: cfg.Get("myhostname"),
		ipcTimeout: cfg.Duration("ipc_timeout"),
		delim:      cfg.Get("recipient_delimiter"),
	}
	if !a.lmtp {
		a.program = "smtp"
	}
	p := a.param
	a.t = timeouts{
		connect: cfg.Duration(p("connect_timeout")), helo: cfg.Duration(p("helo_timeout")),
		starttls: cfg.Duration(p("starttls_timeout")), mail: cfg.Duration(p("mail_timeout")),
		rcpt: cfg.Duration(p("rcpt_timeout")), dataInit: cfg.Duration(p("data_init_timeout")),
		dataXfer: cfg.Duration(p("data_xfer_timeout")), dataDone: cfg.Duration(p("data_done_timeout")),
		rset: cfg.Duration(p("rset_timeout")), quit: cfg.Duration(p("quit_timeout")),
	}
	a.helo = cfg.Get("smtp_helo_name")
	port := cfg.Get("smtp_tcp_port")
	if a.lmtp {
		a.helo = cfg.Get("lmtp_lhlo_name")
		a.t.helo = cfg.Duration("lmtp_lhlo_timeout")
		port = cfg.Get("lmtp_tcp_port")
	}
	if a.helo == "" {
		a.helo = a.myhostname
	}
	var err error
	if a.defPort, err = parsePort(port); err != nil {
		return nil, fmt.Errorf("%s: %w", p("tcp_port"), err)
	}
	a.bind4 = cfg.Get(p("bind_address"))
	a.bind6 = cfg.Get(p("bind_address6"))
	a.noEHLO = !a.lmtp && cfg.Bool("smtp_never_send_ehlo")
	a.skip5xx = cfg.Bool("smtp_skip_5xx_greeting")
	a.addrLimit = cfg.Int(p("mx_address_limit"))
	a.sessLimit = cfg.Int(p("mx_session_limit"))
	if !a.lmtp {
		a.fallback = cfg.List("smtp_fallback_relay")
	}
	protos := cfg.List("inet_protocols")
	for _, x := range protos {
		switch strings.ToLower(x) {
		case "all":
			a.v4, a.v6 = true, true
		case "ipv4":
			a.v4 = true
		case "ipv6":
			a.v6 = true
		}
	}
	if !a.v4 && !a.v6 {
		a.v4, a.v6 = true, true
	}
	for _, x := range cfg.List(p("host_lookup")) {
		switch strings.ToLower(x) {
		case "dns":
			a.hostDNS = true
		case "native":
			a.hostNative = true
		}
	}
	if !a.hostDNS && !a.hostNative {
		a.hostDNS = true
	}
	if res == nil {
		r, err := dnsresolve.New(cfg.Get("dns_resolver_address"))
		if err != nil {
			return nil, err
		}
		r.NoShuffle = !cfg.Bool("smtp_randomize_addresses")
		res = r
	}
	a.res = res

	if err := a.loadTLS(cfg); err != nil {
		return nil, err
	}

	tables := table.NewCache(table.Options{Logger: log.Slog()})
	open := func(param string) (*table.Maps, error) {
		specs, err := table.SplitSpecs(cfg.Get(param))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", param, err)
		}
		var ts []table.Table
		for _, s := range specs {
			t, err := tables.Open(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", param, err)
			}
			ts = append(ts, t)
		}
		if len(ts) == 0 {
			return nil, nil
		}
		return table.NewMaps(ts...), nil
	}
	a.saslOn = cfg.Bool(p("sasl_auth_enable"))
	if a.saslOn {
		if a.saslMaps, err = open(p("sasl_password_maps")); err != nil {
			return nil, err
		}
		a.saslOpts = cfg.List(p("sasl_security_options"))
		a.saslTLS = cfg.List(p("sasl_tls_security_options"))
		a.saslFilter = cfg.List(p("sasl_mechanism_filter"))
		a.senderAuth = !a.lmtp && cfg.Bool("smtp_sender_dependent_authentication")
	}
	ttl := cfg.Duration(p("connection_cache_time_limit"))
	a.cache = newCache(ttl, cfg.Duration("smtp_connection_reuse_time_limit"), cfg.Int("smtp_connection_reuse_count_limit"), maxIdleSessions)
	return a, nil
}

func (a *Agent) loadTLS(cfg *config.Config) error {
	p := a.param
	lv := cfg.Get(p("tls_security_level"))
	if lv == "" && !a.lmtp {
		switch {
		case cfg.Bool("smtp_enforce_tls"):
			lv = levelEncrypt
		case cfg.Bool("smtp_use_tls"):
			lv = levelMay
		}
	}
	level, err := parseTLSLevel(lv)
	if err != nil {
		return fmt.Errorf("%s: %w", p("tls_security_level"), err)
	}
	tp := &tlsPolicy{
		level:      level,
		wrapper:    !a.lmtp && cfg.Bool("smtp_tls_wrappermode"),
		servername: cfg.Get(p("tls_servername")),
		verifyName: cfg.List(p("tls_verify_cert_match")),
		secureName: cfg.List(p("tls_secure_cert_match")),
	}
	if level == levelNone && !tp.wrapper {
		a.tls = tp
		return nil
	}
	protos := p("tls_protocols")
	if tp.mandatory() {
		protos = p("tls_mandatory_protocols")
	}
	tp.minVersion = minTLSVersion(cfg.List(protos))
	if level == levelVerify || level == levelSecure {
		if tp.roots, err = loadRoots(cfg.Get(p("tls_CAfile")), cfg.Get(p("tls_CApath"))); err != nil {
			return fmt.Errorf("%s: %w", p("tls_CAfile"), err)
		}
	}
	if cert := cfg.Get(p("tls_cert_file")); cert != "" {
		c, err := loadKeyPair(cert, cfg.Get(p("tls_key_file")))
		if err != nil {
			return fmt.Errorf("%s: %w", p("tls_cert_file"), err)
		}
		tp.certs = c
	}
	a.tls = tp
	return nil
}

// Close ends every cached session.
func (a *Agent) Close() { a.cache.expire(true) }

// Handle serves one qmgr connection: any number of requests.
func (a *Agent) Handle(ctx context.Context, conn net.Conn) {
	ic := ipc.NewConn(conn, ipc.Options{Timeout: a.ipcTimeout})
	if err := ipc.Hello(ic, a.service); err != nil {
		return
	}
	for ctx.Err() == nil {
		req, err := deliver.ReadRequest(ic)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				a.log.Warning("read delivery request: %v", err)
			}
			return
		}
		if err := deliver.WriteResults(ic, a.deliverRequest(ctx, req)); err != nil {
			a.log.Warning("%s: send results: %v", req.QueueID, err)
			return
		}
	}
}

// attempt is the state of one request while it is delivered.
type attempt struct {
	req     *deliver.Request
	m       *queue.Message
	mp      mailParams
	rcpts   []*rcptState
	relay   string // last server spoken to
	connUse int
	setup   time.Time // when the transaction began (end of setup)
	// site is set when no server of the destination (nor a fallback
	// relay) gave a working session: the destination failed, not the
	// recipients (deliver.Result.Site).
	site bool
}

var statusOf = map[string]deliver.Status{"sent": deliver.Sent, "deferred": deliver.Defer, "bounced": deliver.Bounce}

func (a *Agent) deliverRequest(ctx context.Context, req *deliver.Request) []deliver.Result {
	got := time.Now()
	at := &attempt{req: req}
	for _, r := range req.Recipients {
		at.rcpts = append(at.rcpts, &rcptState{addr: r.Addr, notify: r.Notify, orcpt: r.ORcpt})
	}
	m, err := a.store.Open(req.Queue, queue.ID(req.QueueID))
	if err != nil {
		a.finish(at, &failure{dsn: "4.3.0", text: "cannot open queue file: " + errText(err)})
	} else {
		at.m = m
		env := &m.Envelope
		at.mp = mailParams{sender: req.Sender, size: m.Size, body8: strings.EqualFold(env.BodyType, "8BITMIME"),
			smtputf8: env.SMTPUTF8, ret: env.DSNRet, envid: env.DSNEnvID}
		a.deliverMessage(ctx, at)
		m.Close()
	}
	if at.setup.IsZero() {
		at.setup = time.Now()
	}
	now := time.Now()
	out := make([]deliver.Result, len(req.Recipients))
	for i, r := range req.Recipients {
		o := at.rcpts[i].res
		out[i] = deliver.Result{Index: r.Index, Status: statusOf[o.status], DSN: o.dsn, Text: o.text, RemoteMTA: o.mta, Diagnostic: o.diag}
		out[i].Site = at.site && out[i].Status == deliver.Defer
		relay := o.relay
		if relay == "" {
			relay = at.relay
		}
		a.log.Delivered(req.QueueID, maillog.Delivery{
			To: r.Addr, OrigTo: r.Orig, Relay: relay, ConnUse: at.connUse,
			Delay:  now.Sub(req.Arrival),
			Delays: [4]time.Duration{req.Active.Sub(req.Arrival), got.Sub(req.Active), at.setup.Sub(got), now.Sub(at.setup)},
			DSN:    o.dsn, Status: o.status, Text: o.text,
		})
	}
	return out
}

func errText(err error) string {
	var pe interface{ Unwrap() error }
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		return pe.Unwrap().Error()
	}
	return err.Error()
}

// finish gives every recipient without a result the outcome of f.
func (a *Agent) finish(at *attempt, f *failure) {
	st := "deferred"
	if f.bounce() {
		st = "bounced"
	}
	for _, r := range at.rcpts {
		if !r.done {
			r.done, r.res = true, outcome{status: st, dsn: f.dsn, text: f.text, mta: f.mta, diag: f.diag}
		}
	}
}

// deliverMessage tries the next hop's servers, then smtp_fallback_relay,
// until every recipient has a final result or nothing is left to try.
// The next hop is the request's as qmgr resolved it
// (sender_dependent_relayhost_maps included, pkg/resolve), or the
// recipient domain when it has none.
func (a *Agent) deliverMessage(ctx context.Context, at *attempt) {
	nh := at.req.Nexthop
	if nh == "" && len(at.rcpts) > 0 {
		nh = address.Domain(at.rcpts[0].addr)
	}
	sites := splitNexthops(nh)
	own := len(sites)
	sites = append(sites, a.fallback...)
	var last *failure
	for i, raw := range sites {
		if i == own && (last == nil || !fallbackOK(last)) {
			break
		}
		d, err := parseNexthop(raw, a.lmtp, a.defPort)
		if err != nil {
			last = &failure{dsn: "4.3.5", text: "bad next hop: " + err.Error()}
			continue
		}
		// The last server of the last next hop is the final server
		// (Postfix's SMTP_MISC_FLAG_FINAL_NEXTHOP): its 4xx replies
		// defer; any earlier server's send recipients on.
		f, done := a.tryDestination(ctx, at, d, i == len(sites)-1)
		if done {
			return
		}
		last = f
	}
	if last == nil {
		last = &failure{dsn: "4.3.5", text: "no next hop for delivery"}
	}
	// Connection-level trouble with every server (refused, timed out,
	// error greeting, failed EHLO, TLS or AUTH, a temporary DNS failure)
	// is the destination's failure, which qmgr feeds back into its
	// concurrency; a reply about the message is not.
	at.site = last.next && !last.reply && !last.bounce()
	a.finish(at, last)
}

// fallbackOK says whether smtp_fallback_relay may be tried after f:
// unreachable servers or a destination not found, but not a domain that
// refuses mail (null MX) or a mail loop.
func fallbackOK(f *failure) bool {
	return f.next || f.dsn == "4.4.3" || f.dsn == "5.4.4"
}

// cacheKey names the sessions that can serve d for this attempt.
func (a *Agent) cacheKey(at *attempt, d destination) string {
	k := a.program + ":" + d.raw
	if a.senderAuth {
		k += "\x00" + at.req.Sender
	}
	return k
}

// tryDestination delivers through one destination. done means every
// recipient has its result (or content was sent and the connection then
// failed, after which no other server may be tried); otherwise the
// failure says why not. finalSite says no next hop follows d: then the
// last server of d is the final one, whose 4xx replies defer recipients
// instead of keeping them for the next server.
func (a *Agent) tryDestination(ctx context.Context, at *attempt, d destination, finalSite bool) (*failure, bool) {
	key := a.cacheKey(at, d)
	var last *failure
	// Servers that already had their turn through a cached session, and
	// those sessions, which go back to the cache when the destination
	// is left.
	tried := map[string]bool{}
	var held []*session
	defer func() {
		for _, s := range held {
			a.cache.put(s)
		}
	}()
	for s := a.cache.get(key); s != nil; s = a.cache.get(key) {
		// A cached session is never the final server: the servers of
		// the destination not yet tried follow it.
		f, started, soft := a.transaction(at, s, true, false)
		switch {
		case f != nil && started:
			return a.release(at, s, f)
		case f != nil:
			// A cached session that failed before the content is
			// presumed stale (the server timed it out): try another.
			s.conn.Close()
		case soft == nil:
			return a.release(at, s, nil)
		default:
			tried[s.tg.relay()] = true
			held = append(held, s)
			last = soft
		}
	}
	tgs, f := a.targets(ctx, d)
	if f != nil {
		if last != nil && f.next {
			// The cached server's own reply says more than a
			// temporary lookup failure of the others.
			return last, false
		}
		return f, false
	}
	opts := &dialOptions{
		helo: a.helo, lmtp: a.lmtp, bind4: a.bind4, bind6: a.bind6, tls: a.tls,
		noEHLO: a.noEHLO, skip5xx: a.skip5xx, bufSize: 32 << 10, lookupMX: d.host,
		auth: a.authFunc(at, d),
	}
	skip := func(text string) { a.log.SkipServer(at.req.QueueID, text) }
	sessions := 0
	for i, tg := range tgs {
		if tried[tg.relay()] {
			continue
		}
		if ctx.Err() != nil {
			return &failure{dsn: "4.3.0", text: "delivery agent is shutting down"}, false
		}
		final := finalSite && i == len(tgs)-1
		s, f := dial(ctx, tg, &a.t, opts)
		if f != nil && f.plain {
			o := *opts
			o.noTLS = true
			s, f = dial(ctx, tg, &a.t, &o)
		}
		if f != nil {
			at.relay = ""
			last = f
			if !f.next {
				return f, false
			}
			// Postfix logs every failed connection (smtp_connect.c),
			// and other trouble with a server that is not the last
			// (smtp_trouble.c); the final server's is in the
			// delivery lines.
			switch {
			case f.connect:
				a.log.SkipServer("", f.text)
			case !final:
				skip(f.text)
			}
			continue
		}
		s.key = key
		sessions++
		if a.sessLimit > 0 && sessions >= a.sessLimit && finalSite {
			final = true
		}
		f, started, soft := a.transaction(at, s, false, final)
		switch {
		case f != nil && started:
			return a.release(at, s, f)
		case f != nil:
			s.conn.Close()
			last = f
			if !final {
				skip(f.text)
			}
		case soft == nil:
			return a.release(at, s, nil)
		default:
			held = append(held, s)
			last = soft
		}
		if a.sessLimit > 0 && sessions >= a.sessLimit {
			break
		}
	}
	if last == nil {
		// Every server had its turn through a cached session.
		last = &failure{dsn: "4.3.0", text: "server unavailable or unable to receive mail", next: true}
	}
	return last, false
}

// release ends a request's use of s: recipients still without a result
// get f, and s goes back to the cache or is closed.
func (a *Agent) release(at *attempt, s *session, f *failure) (*failure, bool) {
	if f != nil {
		a.finish(at, f)
	}
	a.cache.put(s)
	return nil, true
}

// transaction checks what the server must support, then runs one mail
// transaction on s; final says s is the last server to try (see
// txOptions).
func (a *Agent) transaction(at *attempt, s *session, reused, final bool) (f *failure, started bool, soft *failure) {
	at.relay = s.tg.relay()
	if at.setup.IsZero() || reused {
		at.setup = time.Now()
	}
	if _, ok := s.ext["SMTPUTF8"]; at.mp.smtputf8 && !ok && a.needsUTF8(at) {
		a.finish(at, &failure{dsn: "5.6.7", text: "SMTPUTF8 is required, but was not offered by host " + s.tg.hostAddr()})
		return nil, true, nil
	}
	if v, ok := s.ext["SIZE"]; ok {
		if limit, err := strconv.ParseInt(v, 10, 64); err == nil && limit > 0 && at.m.Size > limit {
			a.finish(at, &failure{dsn: "5.3.4", text: fmt.Sprintf("message size %d exceeds size limit %d of server %s", at.m.Size, limit, s.tg.hostAddr())})
			return nil, true, nil
		}
	}
	_, has8 := s.ext["8BITMIME"]
	conv := at.mp.body8 && !has8
	if conv && downgrade(io.Discard, at.m.Content()) != nil {
		// Not convertible (broken MIME): send it as it is, as Postfix
		// does when it cannot downgrade.
		conv = false
	}
	content := func(w io.Writer) error {
		r := &contentReader{r: at.m.Content()}
		if conv {
			return downgrade(w, r)
		}
		_, err := io.Copy(w, r)
		return err
	}
	o := &txOptions{final: final, skip: func(text string) { a.log.SkipServer(at.req.QueueID, text) }}
	f, started, soft = s.transact(&at.mp, at.rcpts, reused, content, o)
	at.connUse = s.uses
	return f, started, soft
}

// needsUTF8 reports whether the envelope cannot be sent without SMTPUTF8.
func (a *Agent) needsUTF8(at *attempt) bool {
	ascii := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return false
			}
		}
		return true
	}
	if !ascii(at.mp.sender) {
		return true
	}
	for _, r := range at.rcpts {
		if !r.done && !ascii(r.addr) {
			return true
		}
	}
	return false
}

// contentReader marks read errors of the queue file as such.
type contentReader struct{ r io.Reader }

func (c *contentReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = &contentError{err}
	}
	return n, err
}

// authFunc returns the AUTH step for sessions of d, or nil when SASL is
// off.
func (a *Agent) authFunc(at *attempt, d destination) func(*session) *failure {
	if !a.saslOn || a.saslMaps == nil {
		return nil
	}
	return func(s *session) *failure {
		user, pass, found, err := a.saslCredentials(at.req.Sender, s.tg.name, d.raw)
		if err != nil {
			return &failure{dsn: "4.3.0", text: "smtp_sasl_password_maps lookup failure"}
		}
		offered, ok := s.ext["AUTH"]
		if !found || !ok {
			// No credentials for this server, or a server that does
			// not offer AUTH: go on without, as Postfix does.
			return nil
		}
		opts := a.saslOpts
		if s.tls {
			opts = a.saslTLS
		}
		mech := pickMech(offered, a.saslFilter, opts)
		if mech == "" {
			return &failure{dsn: "4.7.0", text: "SASL authentication failed; cannot authenticate to server " + s.tg.hostAddr() + ": no mechanism available", next: true}
		}
		r, err := s.authenticate(mech, user, pass)
		if err != nil {
			return s.ioFailure(err, "performing the AUTH handshake")
		}
		if r.Code != 235 {
			return &failure{dsn: "4.7.0", text: "SASL authentication failed; server " + s.tg.hostAddr() + " said: " + r.Text(), next: true}
		}
		return nil
	}
}

// saslCredentials looks up "user:password" by sender (with
// smtp_sender_dependent_authentication), then by the server's host name,
// then by the next hop as written ("[smtp.example.com]:587"), as Postfix.
func (a *Agent) saslCredentials(sender, host, dest string) (user, pass string, found bool, err error) {
	var v string
	if a.senderAuth && sender != "" {
		v, found, err = table.LookupAddress(a.saslMaps, sender, table.AddressOptions{Delimiter: a.delim})
	}
	for _, k := range []string{host, dest} {
		if found || err != nil {
			break
		}
		v, found, err = a.saslMaps.Lookup(k)
	}
	if !found || err != nil {
		return "", "", found, err
	}
	user, pass, _ = strings.Cut(v, ":")
	return user, pass, true, nil
}

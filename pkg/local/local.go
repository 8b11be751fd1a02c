// Package local holds Postern's final delivery agents: `virtual` (Postfix's
// virtual(8): mailboxes of virtual_mailbox_domains under
// virtual_mailbox_base) and `local` (Postfix's local(8): Unix accounts).
// One program serves both; master starts it as "virtual" for the virtual
// service and as "local" for the local service.
//
// virtual: the recipient is looked up in virtual_mailbox_maps (Postfix's
// order: user+ext@domain, user@domain, @domain); the result is a path under
// virtual_mailbox_base, a Maildir when it ends in '/', else an mbox file.
// The owner comes from virtual_uid_maps and virtual_gid_maps (e.g.
// static:5000) and must be at least virtual_minimum_uid. Each delivered
// message starts with Return-Path:, X-Original-To: and Delivered-To:, as
// Postfix writes them; the rest is the queued content unchanged. An mbox
// file may not grow past virtual_mailbox_limit (the delivery bounces with
// 5.2.2 and the file is cut back); Maildir files are not limited yet.
//
// local: delivery to Unix accounts as Postfix's local(8) — aliases,
// .forward, mailbox_transport, mailbox_command, home_mailbox, the mail
// spool, fallback_transport, luser_relay, commands and files; see unix.go
// for the order and the rules, transport.go for hand-offs to other
// transports and unknown recipients, child.go for how a step runs with a
// user's rights, command.go for commands.
//
// Security: the agent runs as root (master.cf unpriv=n) so that it can
// give delivered files to their owners and act for local users. It never
// changes its own ids (the process is multi-threaded): whatever must run
// with a user's rights — reading a .forward or :include: file, writing a
// mailbox, Maildir or file, running a command — runs in a child process
// exec'd with SysProcAttr.Credential (the local program itself in a hidden
// mode, or the shell for commands), fed the message through a pipe, since
// only root reads the queue. Files and commands named by root-owned
// aliases run as default_privs, never as root. Mailbox paths are walked
// without following symbolic links, files are created exclusively (Maildir)
// or opened O_NOFOLLOW and must be regular with one link (mbox), and
// fchowned before they become visible. It reads queue files read-only and
// trusts main.cf and the alias, mailbox and transport tables, which belong
// to the admin; .forward files are trusted only as far as their user's
// rights go. Recipients handed to another transport (mailbox_transport,
// fallback_transport) go from the daemon itself to that agent's socket in
// private/, never from a child with a user's rights.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"postern/pkg/config"
	"postern/pkg/deliver"
	"postern/pkg/dirsync"
	"postern/pkg/ipc"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/resolve"
	"postern/pkg/server"
	"postern/pkg/table"
)

// Agent is the delivery agent.
type Agent struct {
	program    string // "virtual" or "local"
	service    string
	log        *maillog.Logger
	store      *queue.Store
	hostname   string
	base       string
	mboxMaps   *table.Maps
	uidMaps    *table.Maps
	gidMaps    *table.Maps
	minUID     int
	mboxLimit  int64
	delim      string
	ipcTimeout time.Duration
	root       bool
	dirs       dirsync.Group // shared fsyncs of Maildir new/ directories
	maildirs   dirCache      // open new/ directories of recent Maildirs
	unix       *unixAgent    // the local program's Unix-account delivery
}

// New builds the agent.
func New(ctx context.Context, sc *server.Context) (any, error) {
	return newAgent(sc.Config, sc.Log, sc.Program, sc.Service)
}

func newAgent(cfg *config.Config, log *maillog.Logger, program, service string) (*Agent, error) {
	a := &Agent{
		program:    program,
		service:    service,
		log:        log,
		store:      queue.NewStore(cfg.Get("queue_directory")),
		hostname:   cfg.Get("myhostname"),
		base:       cfg.Get("virtual_mailbox_base"),
		minUID:     cfg.Int("virtual_minimum_uid"),
		mboxLimit:  cfg.Size("virtual_mailbox_limit"),
		delim:      cfg.Get("recipient_delimiter"),
		ipcTimeout: cfg.Duration("ipc_timeout"),
		root:       os.Geteuid() == 0,
	}
	if program != "local" {
		a.program = "virtual"
	}
	tables := table.NewCache(table.Options{Logger: log.Slog()})
	open := func(spec string) (table.Table, error) { return tables.Open(spec) }
	for _, p := range []struct {
		name string
		dst  **table.Maps
	}{{"virtual_mailbox_maps", &a.mboxMaps}, {"virtual_uid_maps", &a.uidMaps}, {"virtual_gid_maps", &a.gidMaps}} {
		m, err := resolve.OpenMaps(cfg, p.name, open)
		if err != nil {
			return nil, err
		}
		*p.dst = m
	}
	if a.program == "local" {
		u, err := newUnixAgent(cfg, a.root, table.Options{Logger: log.Slog()})
		if err != nil {
			return nil, err
		}
		u.log, u.service = log, service
		a.unix = u
	}
	return a, nil
}

// Handle serves one qmgr connection: any number of requests.
func (a *Agent) Handle(ctx context.Context, conn net.Conn) {
	// qmgr keeps this connection open between requests: on shutdown, close
	// it so the read below ends at once.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
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
		if err := deliver.WriteResults(ic, a.deliverRequest(req)); err != nil {
			a.log.Warning("%s: send results: %v", req.QueueID, err)
			return
		}
	}
}

func (a *Agent) deliverRequest(req *deliver.Request) []deliver.Result {
	out := make([]deliver.Result, 0, len(req.Recipients))
	got := time.Now()
	m, err := a.store.Open(req.Queue, queue.ID(req.QueueID))
	for _, r := range req.Recipients {
		start := time.Now()
		var outs []deliver.Result
		var passed []bool // outcomes another agent returned and logged
		switch {
		case err != nil:
			outs = []deliver.Result{{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot open queue file: " + err.Error()}}
		case a.unix != nil:
			outs, passed = a.unix.deliverUnix(req, m, r)
		default:
			outs = []deliver.Result{a.deliverOne(m, r)}
		}
		// One log line per outcome (an alias may deliver to a command and
		// forward too); qmgr gets the worst: a defer, else a bounce.
		res := outs[len(outs)-1]
		for _, o := range outs {
			if o.Status == deliver.Defer || (o.Status == deliver.Bounce && res.Status == deliver.Sent) {
				res = o
			}
		}
		for i, o := range outs {
			if i < len(passed) && passed[i] {
				continue
			}
			now := time.Now()
			status := map[deliver.Status]string{deliver.Sent: "sent", deliver.Defer: "deferred", deliver.Bounce: "bounced"}[o.Status]
			a.log.Delivered(req.QueueID, maillog.Delivery{
				To: r.Addr, OrigTo: r.Orig, Relay: a.program,
				Delay:  now.Sub(req.Arrival),
				Delays: [4]time.Duration{req.Active.Sub(req.Arrival), got.Sub(req.Active), start.Sub(got), now.Sub(start)},
				DSN:    o.DSN, Status: status, Text: o.Text,
			})
		}
		res.Index = r.Index
		out = append(out, res)
	}
	if m != nil {
		m.Close()
	}
	return out
}

// deliverOne delivers to one virtual mailbox.
func (a *Agent) deliverOne(m *queue.Message, r deliver.Recipient) deliver.Result {
	path, found, err := a.lookup(a.mboxMaps, r.Addr)
	if err != nil {
		return deliver.Result{Status: deliver.Defer, DSN: "4.3.0", Text: "virtual_mailbox_maps lookup failure"}
	}
	if !found {
		return deliver.Result{Status: deliver.Bounce, DSN: "5.1.1", Text: fmt.Sprintf("unknown user: %q", r.Addr)}
	}
	o, res := a.owner(r.Addr)
	if res != nil {
		return *res
	}
	write := func(w io.Writer) error { return a.writeMessage(w, m, r, false) }
	if strings.HasSuffix(path, "/") {
		if a.mboxLimit > 0 {
			// virtual_mailbox_limit bounds each maildir file too.
			write = func(w io.Writer) error {
				return a.writeMessage(&limitWriter{w: w, left: a.mboxLimit}, m, r, false)
			}
		}
		if err := deliverMaildir(a.base, path, a.hostname, o, &a.dirs, &a.maildirs, write); err != nil {
			if errors.Is(err, errFileTooLarge) {
				return deliver.Result{Status: deliver.Bounce, DSN: "5.2.2", Text: "maildir delivery failed: error writing message: File too large"}
			}
			a.log.Warning("maildir delivery to %s: %v", r.Addr, err)
			return deliver.Result{Status: deliver.Defer, DSN: "4.2.0", Text: "maildir delivery failed: " + errText(err)}
		}
		return deliver.Result{Status: deliver.Sent, DSN: "2.0.0", Text: "delivered to maildir"}
	}
	write = func(w io.Writer) error { return a.writeMessage(w, m, r, true) }
	// virtual_mailbox_limit bounds the mailbox file, not the message, as
	// Postfix's RLIMIT_FSIZE does; wording from Postfix virtual/mailbox.c.
	opt := virtualMbox
	opt.limit = a.mboxLimit
	if err := deliverMbox(a.base, path, o, opt, write); err != nil {
		what := "delivery failed to mailbox " + filepath.Join(a.base, path) + ": "
		if errors.Is(err, errFileTooLarge) {
			return deliver.Result{Status: deliver.Bounce, DSN: "5.2.2", Text: what + "error writing message: File too large"}
		}
		a.log.Warning("mailbox delivery to %s: %v", r.Addr, err)
		return deliver.Result{Status: deliver.Defer, DSN: "4.2.0", Text: what + errText(err)}
	}
	return deliver.Result{Status: deliver.Sent, DSN: "2.0.0", Text: "delivered to mailbox"}
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func (a *Agent) lookup(maps *table.Maps, addr string) (string, bool, error) {
	return table.LookupAddress(maps, addr, table.AddressOptions{Delimiter: a.delim})
}

// owner finds the uid and gid for a virtual recipient. As in Postfix
// (virtual/mailbox.c), a missing or bad entry, a uid below
// virtual_minimum_uid or a gid of 0, defers with a generic 4.3.5 and a
// warning in the log.
func (a *Agent) owner(addr string) (owner, *deliver.Result) {
	ids := [2]int{}
	for i, maps := range []*table.Maps{a.uidMaps, a.gidMaps} {
		name := [2]string{"virtual_uid_maps", "virtual_gid_maps"}[i]
		v, found, err := a.lookup(maps, addr)
		if err != nil {
			return owner{}, &deliver.Result{Status: deliver.Defer, DSN: "4.3.0", Text: name + " lookup failure"}
		}
		if !found {
			a.log.Warning("recipient %s: not found in %s", addr, name)
			return owner{}, &deliver.Result{Status: deliver.Defer, DSN: "4.3.5", Text: "mail system configuration error"}
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		// Postfix: a uid below virtual_minimum_uid, a gid of 0 or less.
		if err != nil || n < 0 || (i == 0 && n < a.minUID) || (i == 1 && n == 0) {
			a.log.Warning("recipient %s: bad %s %s in %s", addr, [2]string{"uid", "gid"}[i], v, name)
			return owner{}, &deliver.Result{Status: deliver.Defer, DSN: "4.3.5", Text: "mail system configuration error"}
		}
		ids[i] = n
	}
	return owner{uid: ids[0], gid: ids[1], chown: a.root}, nil
}

// writeMessage writes the delivered form for a virtual mailbox: an mbox
// "From " line when mbox, then Return-Path:, X-Original-To: and
// Delivered-To:, then the content (with ">From " quoting and a closing
// empty line for mbox).
func (a *Agent) writeMessage(w io.Writer, m *queue.Message, r deliver.Recipient, mbox bool) error {
	flags := copyReturnPath | copyOrigTo | copyDelivered
	if mbox {
		flags |= copyFrom | copyQuote | copyBlank
	}
	orig := r.Orig
	if orig == "" {
		orig = r.Addr
	}
	return writeDelivered(w, m, copyHeaders{sender: m.Envelope.Sender, origTo: orig, deliveredTo: r.Addr}, flags)
}

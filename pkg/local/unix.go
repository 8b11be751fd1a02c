package local

// local(8): delivery to Unix accounts.
//
// For each recipient user+ext@domain (the local part folded to lower
// case), in Postfix's order:
//
//  1. Delivered-To: loop check — a message that already carries
//     "Delivered-To: <recipient>" bounces with 5.4.6 "mail forwarding loop".
//  2. alias_maps, searched for user+ext then user. The value is a list of
//     destinations: addresses (re-injected), |command and /file (with the
//     rights of the alias table's owner, default_privs when that is root,
//     if allow_mail_to_commands/allow_mail_to_files name "alias"),
//     :include:/file (read as root for a root-owned table, its entries
//     then have the include file owner's rights and need "include"), and
//     the recipient itself (delivered to its mailbox). An "owner-user"
//     alias makes owner-user@$myorigin the sender of the re-injected copy.
//  3. The account (getpwnam).
//  4. forward_path, for an account: the first .forward-like file found
//     (read as the user, owned by the user or root) lists destinations as
//     above, with the user's rights and "forward" as the allow_mail_to_*
//     class. An empty file, or one naming the user, means the mailbox.
//  5. mailbox_transport_maps, mailbox_transport: the recipient, account or
//     not, is passed to another transport (transport.go).
//  6. No account: fallback_transport_maps, fallback_transport,
//     luser_relay, else bounce 5.1.1 unknown user: "user" (transport.go).
//  7. The mailbox, as the user: mailbox_command_maps or mailbox_command if
//     set (as default_privs for root), else home_mailbox (Maildir when it
//     ends in '/', else an mbox file below the home directory), else
//     mail_spool_directory/user as an mbox with mailbox_delivery_lock.
//
// Addresses from one expansion leave as one new message through cleanup
// (sender unchanged, or the owner- alias), its content the original with
// "Delivered-To: <recipient>" on top, and the recipient is answered
// "forwarded as ID". Every outcome is logged as its own line; the
// recipient's answer to qmgr is the worst of them (a defer wins, then a
// bounce). As in Postfix, what was delivered before a deferral may be
// delivered again on the retry.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"postern/pkg/address"
	"postern/pkg/config"
	"postern/pkg/deliver"
	"postern/pkg/handoff"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/table"
)

// passwd is one account.
type passwd struct {
	name     string
	uid, gid int
	home     string
	shell    string
}

// unixAgent holds what local delivery needs from main.cf.
type unixAgent struct {
	cfg         *config.Config
	run         childRunner
	aliasSpecs  []string
	aliases     []table.Table
	passwd      table.Table
	delim       string
	ownerSpec   bool // owner_request_special
	myorigin    string
	hostname    string
	homeMailbox string
	spool       string
	locks       []string
	lockTries   int
	lockDelay   time.Duration
	staleLock   time.Duration
	sizeLimit   int64
	strictOwner bool
	allowCmd    map[string]bool
	allowFile   map[string]bool
	prependDT   map[string]bool
	defPrivs    string
	cmdTimeout  time.Duration
	cmdShell    string
	cmdFilter   string
	dupLimit    int // duplicate_filter_limit
	exportEnv   []string
	cleanup     string
	ipcTimeout  time.Duration

	// Mailbox delivery by other transports (transport.go); nil maps
	// are empty lists.
	private        string // $queue_directory/private: agents' sockets
	service        string // this agent's master.cf name
	mboxTransport  string
	mboxTranspMaps *table.Maps
	mboxCmdMaps    *table.Maps
	fbTransport    string
	fbTranspMaps   *table.Maps
	luserRelay     string
	log            *maillog.Logger // nil in unit tests
}

func listSet(cfg *config.Config, name string) map[string]bool {
	m := map[string]bool{}
	for _, v := range cfg.List(name) {
		m[strings.ToLower(v)] = true
	}
	return m
}

func newUnixAgent(cfg *config.Config, root bool, opts table.Options) (*unixAgent, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the local program for delivery processes: %w", err)
	}
	u := &unixAgent{
		cfg:         cfg,
		run:         childRunner{exe: exe, root: root, timeout: cfg.Duration("command_time_limit")},
		delim:       cfg.Get("recipient_delimiter"),
		ownerSpec:   cfg.Bool("owner_request_special"),
		myorigin:    cfg.Get("myorigin"),
		hostname:    cfg.Get("myhostname"),
		homeMailbox: cfg.Get("home_mailbox"),
		spool:       cfg.Get("mail_spool_directory"),
		locks:       cfg.List("mailbox_delivery_lock"),
		lockTries:   cfg.Int("deliver_lock_attempts"),
		lockDelay:   cfg.Duration("deliver_lock_delay"),
		staleLock:   cfg.Duration("stale_lock_time"),
		sizeLimit:   cfg.Size("mailbox_size_limit"),
		strictOwner: cfg.Bool("strict_mailbox_ownership"),
		allowCmd:    listSet(cfg, "allow_mail_to_commands"),
		allowFile:   listSet(cfg, "allow_mail_to_files"),
		prependDT:   listSet(cfg, "prepend_delivered_header"),
		defPrivs:    cfg.Get("default_privs"),
		cmdTimeout:  cfg.Duration("command_time_limit"),
		cmdShell:    cfg.Get("local_command_shell"),
		cmdFilter:   cfg.Get("command_expansion_filter"),
		dupLimit:    cfg.Int("duplicate_filter_limit"),
		exportEnv:   cfg.List("export_environment"),
		cleanup:     filepath.Join(cfg.Get("queue_directory"), "public", cfg.Get("cleanup_service_name")),
		ipcTimeout:  cfg.Duration("ipc_timeout"),
		private:     filepath.Join(cfg.Get("queue_directory"), "private"),
		service:     "local",

		mboxTransport: strings.TrimSpace(cfg.Get("mailbox_transport")),
		fbTransport:   strings.TrimSpace(cfg.Get("fallback_transport")),
		luserRelay:    strings.TrimSpace(cfg.Get("luser_relay")),
	}
	for _, p := range []struct {
		name string
		dst  **table.Maps
	}{{"mailbox_transport_maps", &u.mboxTranspMaps}, {"mailbox_command_maps", &u.mboxCmdMaps}, {"fallback_transport_maps", &u.fbTranspMaps}} {
		if *p.dst, err = openDeferredMaps(cfg, p.name, opts); err != nil {
			return nil, err
		}
	}
	if u.run.timeout <= 0 {
		u.run.timeout = 1000 * time.Second
	}
	if u.passwd, err = table.Open("unix:passwd.byname", opts); err != nil {
		return nil, err
	}
	if u.aliasSpecs, err = table.SplitSpecs(cfg.Get("alias_maps")); err != nil {
		return nil, fmt.Errorf("alias_maps: %w", err)
	}
	ao := opts
	ao.Aliases = true
	for _, spec := range u.aliasSpecs {
		t, err := table.Open(spec, ao)
		if err != nil {
			// As Postfix, a missing alias table defers local mail (it
			// may be being rebuilt) rather than stopping the agent.
			t = unavailable{err}
		}
		u.aliases = append(u.aliases, t)
	}
	return u, nil
}

// unavailable is an alias table that could not be opened.
type unavailable struct{ err error }

func (t unavailable) Lookup(string) (string, bool, error) { return "", false, t.err }
func (unavailable) Close() error                          { return nil }

// outcome is one logged result of a recipient's delivery.
type outcome = deliver.Result

// recipientJob is the state of one recipient's delivery.
type recipientJob struct {
	u       *unixAgent
	req     *deliver.Request
	m       *queue.Message
	r       deliver.Recipient
	addr    string // the recipient address, as qmgr gave it
	local   string // its local part, folded
	domain  string
	user    string // local without extension
	ext     string // extension without the delimiter
	out     []outcome
	passed  []bool   // per out: the result of another transport's agent, which logged it
	forward []string // addresses to re-inject
	sender  string   // sender of the re-injected copy
	mailbox bool     // the mailbox step has run
}

// deliverUnix delivers to one local recipient of req and returns every
// outcome, in order (never none), and which of them another transport's
// agent returned and has logged.
func (u *unixAgent) deliverUnix(req *deliver.Request, m *queue.Message, r deliver.Recipient) ([]outcome, []bool) {
	local, domain := address.Split(r.Addr)
	j := &recipientJob{u: u, req: req, m: m, r: r, addr: r.Addr, local: strings.ToLower(local), domain: domain, sender: m.Envelope.Sender}
	j.user = j.local
	if user, ext, ok := table.SplitLocal(j.local, u.delim, !u.ownerSpec); ok {
		j.user, j.ext = user, ext[1:]
	}
	if loop, err := hasDeliveredTo(m, r.Addr); err != nil {
		return []outcome{{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot read queue file: " + errText(err)}}, []bool{false}
	} else if loop {
		return []outcome{{Status: deliver.Bounce, DSN: "5.4.6", Text: "mail forwarding loop for " + r.Addr}}, []bool{false}
	}
	j.deliver()
	j.flushForward()
	if len(j.out) == 0 {
		j.add(outcome{Status: deliver.Sent, DSN: "2.0.0", Text: "discarded: empty alias expansion"})
	}
	return j.out, j.passed
}

func (j *recipientJob) add(o outcome) {
	j.out = append(j.out, o)
	j.passed = append(j.passed, false)
}

func (j *recipientJob) addPassed(o outcome) {
	j.out = append(j.out, o)
	j.passed = append(j.passed, true)
}

func (j *recipientJob) deliver() {
	value, spec, found, err := j.u.lookupAlias(j.local)
	if err != nil {
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "alias database unavailable"})
		return
	}
	if found {
		j.expandAlias(value, spec)
		return
	}
	j.deliverUser(false)
}

// lookupAlias searches alias_maps for the full local part in every table,
// then for the name without its extension.
func (u *unixAgent) lookupAlias(local string) (value, spec string, found bool, err error) {
	keys := []string{local}
	if user, _, ok := table.SplitLocal(local, u.delim, !u.ownerSpec); ok {
		keys = append(keys, user)
	}
	for _, k := range keys {
		for i, t := range u.aliases {
			v, ok, err := t.Lookup(k)
			if err != nil {
				return "", "", false, err
			}
			if ok {
				return v, u.aliasSpecs[i], true, nil
			}
		}
	}
	return "", "", false, nil
}

// sourceOwner is the uid of the file behind a table spec, or 0 when the
// table has no file (such tables belong to the administrator).
func sourceOwner(spec string) int {
	spec = strings.TrimPrefix(spec, "proxy:")
	typ, name, _ := strings.Cut(spec, ":")
	switch typ {
	case "texthash", "hash", "btree", "lmdb", "cdb":
	default:
		return 0
	}
	for _, suf := range []string{".db", ".cdb", ".lmdb"} {
		name = strings.TrimSuffix(name, suf)
	}
	st, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return fileUID(st)
}

// expandAlias handles an alias value found in table spec.
func (j *recipientJob) expandAlias(value, spec string) {
	if j.u.ownerSpec && !strings.HasPrefix(j.user, "owner-") {
		if _, _, ok, err := j.u.lookupAlias("owner-" + j.user); err == nil && ok {
			j.sender = "owner-" + j.user + "@" + j.u.myorigin
		}
	}
	rights, err := j.u.rightsOf(sourceOwner(spec))
	if err != nil {
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: err.Error()})
		return
	}
	if j.expandList(table.SplitAliasValue(value), rights, "alias", 0) {
		// The alias names the recipient itself: past the alias, as
		// Postfix's duplicate filter lets it, to .forward and the mailbox.
		j.deliverUser(false)
	}
}

// rightsOf returns the identity for files and commands of a table or
// include file owned by uid: that owner, or default_privs for root.
func (u *unixAgent) rightsOf(uid int) (identity, error) {
	if uid != 0 {
		if pw, ok, _ := u.lookupUID(uid); ok {
			return identity{uid: pw.uid, gid: pw.gid}, nil
		}
		return identity{uid: uid, gid: uid}, nil
	}
	pw, ok, err := u.getpwnam(u.defPrivs)
	if err != nil || !ok {
		return identity{}, fmt.Errorf("default_privs account %q not found", u.defPrivs)
	}
	if pw.uid == 0 {
		return identity{}, errors.New("default_privs must not be a privileged account")
	}
	return identity{uid: pw.uid, gid: pw.gid}, nil
}

const maxIncludeDepth = 10

// expandList delivers a list of alias, .forward or :include: entries with
// rights; class ("alias", "forward", "include") is what
// allow_mail_to_commands and allow_mail_to_files must name. It reports
// whether an entry named the recipient itself.
func (j *recipientJob) expandList(elems []string, rights identity, class string, depth int) (self bool) {
	for _, e := range elems {
		d := classify(e, j.local, j.addr)
		switch d.kind {
		case destSelf:
			self = true
		case destAddress:
			j.forward = append(j.forward, d.value)
		case destCommand:
			if !j.u.allowCmd[class] {
				j.add(outcome{Status: deliver.Bounce, DSN: "5.7.1", Text: "mail to command is restricted"})
				continue
			}
			j.add(j.u.deliverCommand(j, d.value, rights, j.u.prependDT["command"]))
		case destFile:
			if !j.u.allowFile[class] {
				j.add(outcome{Status: deliver.Bounce, DSN: "5.7.1", Text: "mail to file is restricted"})
				continue
			}
			j.add(j.u.deliverFile(j, d.value, rights))
		case destInclude:
			if depth >= maxIncludeDepth {
				j.add(outcome{Status: deliver.Bounce, DSN: "5.4.6", Text: "too many levels of :include: for " + d.value})
				continue
			}
			j.include(d.value, rights, depth+1)
		}
	}
	return self
}

// include reads an :include: file with the current rights (as root when
// they are a root-owned alias table's, which is the admin's) and expands
// it with its owner's rights.
func (j *recipientJob) include(path string, rights identity, depth int) {
	if !filepath.IsAbs(path) {
		j.add(outcome{Status: deliver.Bounce, DSN: "5.3.5", Text: ":include: path is not absolute: " + path})
		return
	}
	res, err := j.u.readAs(rights, path)
	if err != nil || (!res.OK && !res.NotFound) {
		msg := res.Err
		if err != nil {
			msg = err.Error()
		}
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot open include file " + path + ": " + msg})
		return
	}
	if res.NotFound {
		j.add(outcome{Status: deliver.Bounce, DSN: "5.3.5", Text: "cannot open include file " + path + ": No such file or directory"})
		return
	}
	inc, err := j.u.rightsOf(res.Owner)
	if err != nil {
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: err.Error()})
		return
	}
	if j.expandList(parseForward(string(res.Data)), inc, "include", depth) {
		j.deliverUser(true)
	}
}

// readAs reads a file with rights; a root identity (only ever that of the
// administrator's own tables) reads in this process.
func (u *unixAgent) readAs(id identity, path string) (childResult, error) {
	if id.uid == 0 || !u.run.root {
		return childRead(path), nil
	}
	return u.run.run(id, &childRequest{Op: opRead, Path: path}, nil)
}

// deliverUser delivers to j.user once aliases are done: the account's
// .forward unless noForward (a .forward or alias naming the user itself),
// then mailbox_transport for anyone, then the account's mailbox, or
// deliverUnknown without an account.
func (j *recipientJob) deliverUser(noForward bool) {
	pw, ok, err := j.u.getpwnam(j.user)
	if err != nil {
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "user lookup failure"})
		return
	}
	if ok && !noForward {
		if done := j.dotForward(pw, j.attrs(pw)); done {
			return
		}
	}
	// Once per recipient, however many aliases, :include: files and
	// .forward files name it (Postfix's duplicate filter "mailbox %s").
	if j.mailbox {
		return
	}
	j.mailbox = true
	if j.delegate("mailbox_transport_maps", j.u.mboxTranspMaps, "mailbox_transport", j.u.mboxTransport) {
		return
	}
	if !ok {
		j.deliverUnknown()
		return
	}
	j.add(j.u.deliverMailbox(j, pw, j.attrs(pw)))
}

func (j *recipientJob) attrs(pw passwd) *attrs {
	a := &attrs{user: pw.name, home: pw.home, shell: pw.shell, recipient: j.addr, extension: j.ext, domain: j.domain, local: j.local}
	if j.ext != "" {
		// The delimiter that was found, not the whole set.
		a.delimiter = j.local[len(j.user) : len(j.user)+1]
	} else if len(j.u.delim) > 0 {
		a.delimiter = j.u.delim[:1]
	}
	return a
}

// dotForward expands the user's first .forward file, if any. It returns
// false when the mailbox is still to be delivered.
func (j *recipientJob) dotForward(pw passwd, a *attrs) bool {
	id := j.u.userIdentity(pw)
	for _, path := range forwardPaths(j.u.cfg, a) {
		res, err := j.u.readAs(id, path)
		if err != nil {
			j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot read " + path + ": " + err.Error()})
			return true
		}
		if res.NotFound || (!res.OK && strings.Contains(res.Err, "permission denied")) {
			continue
		}
		if !res.OK {
			j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot read " + path + ": " + res.Err})
			return true
		}
		if res.Owner != pw.uid && res.Owner != 0 {
			// Someone else's file in the user's name: ignored, as a
			// .forward must speak for its user.
			continue
		}
		elems := parseForward(string(res.Data))
		if len(elems) == 0 {
			return false
		}
		return !j.expandList(elems, id, "forward", 0)
	}
	return false
}

// userIdentity is who deliveries for an account run as: the account, but
// default_privs instead of root for files and commands is decided by the
// caller.
func (u *unixAgent) userIdentity(pw passwd) identity {
	return identity{uid: pw.uid, gid: pw.gid}
}

// flushForward re-injects the collected addresses as one new message.
func (j *recipientJob) flushForward() {
	if len(j.forward) == 0 {
		return
	}
	req := &handoff.Request{Sender: j.sender, RewriteContext: handoff.ContextLocal}
	seen := address.NewDupFilter(j.u.dupLimit)
	for _, a := range j.forward {
		if seen.Seen(a) {
			continue
		}
		req.Recipients = append(req.Recipients, handoff.Recipient{Addr: a, Notify: j.r.Notify, ORcpt: j.orcpt()})
	}
	s, err := handoff.Open(j.u.cleanup, req, j.u.ipcTimeout)
	if err != nil {
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot forward: " + errText(err)})
		return
	}
	if err := writeDelivered(s, j.m, copyHeaders{deliveredTo: j.addr}, copyDelivered); err != nil {
		s.Abort()
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot forward: " + errText(err)})
		return
	}
	res, err := s.Close()
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "cannot forward: " + errText(err)})
		return
	}
	j.add(outcome{Status: deliver.Sent, DSN: "2.0.0", Text: "forwarded as " + s.ID()})
}

// orcpt is the ORCPT of forwarded copies: the original's, else the
// address this delivery started from.
func (j *recipientJob) orcpt() string {
	if j.r.ORcpt != "" {
		return j.r.ORcpt
	}
	orig := j.r.Orig
	if orig == "" {
		orig = j.r.Addr
	}
	return "rfc822;" + orig
}

func (j *recipientJob) origTo() string {
	if j.r.Orig != "" {
		return j.r.Orig
	}
	return j.r.Addr
}

// content returns a writer of the delivered form for flags.
func (j *recipientJob) content(flags copyFlags) func(io.Writer) error {
	h := copyHeaders{sender: j.m.Envelope.Sender, origTo: j.origTo(), deliveredTo: j.addr}
	return func(w io.Writer) error { return writeDelivered(w, j.m, h, flags) }
}

// commandEnvFor builds a command's environment for the recipient.
func (u *unixAgent) commandEnvFor(j *recipientJob, a *attrs) []string {
	env := j.m.Envelope
	vals := [][2]string{{"SENDER", env.Sender}, {"RECIPIENT", j.addr}, {"LOCAL", j.local}}
	// As Postfix's local/command.c, the optional ones only when set: a
	// script may test ${EXTENSION+x}.
	for _, kv := range [][2]string{
		{"ORIGINAL_RECIPIENT", j.origTo()}, {"DOMAIN", j.domain}, {"EXTENSION", j.ext},
		{"ENVID", env.DSNEnvID},
		{"CLIENT_ADDRESS", env.ClientAddr}, {"CLIENT_HELO", env.HeloName},
		{"CLIENT_HOSTNAME", env.ClientName}, {"CLIENT_PROTOCOL", env.Protocol},
		{"SASL_USERNAME", env.AuthUser},
	} {
		if kv[1] != "" {
			vals = append(vals, kv)
		}
	}
	if a != nil {
		vals = append(vals, [2]string{"SHELL", a.shell}, [2]string{"HOME", a.home},
			[2]string{"USER", a.user}, [2]string{"LOGNAME", a.user})
	} else {
		vals = append(vals, [2]string{"USER", j.user}, [2]string{"LOGNAME", j.user})
	}
	return commandEnv(u.exportEnv, vals, u.cmdFilter)
}

// deliverCommand runs an alias or .forward command with rights.
func (u *unixAgent) deliverCommand(j *recipientJob, command string, rights identity, delivered bool) outcome {
	if rights.uid == 0 {
		r, err := u.rightsOf(0)
		if err != nil {
			return outcome{Status: deliver.Defer, DSN: "4.3.0", Text: err.Error()}
		}
		rights = r
	}
	var a *attrs
	if pw, ok, _ := u.lookupUID(rights.uid); ok {
		a = j.attrs(pw)
	}
	flags := copyFrom | copyReturnPath | copyOrigTo
	if delivered {
		flags |= copyDelivered
	}
	var dir string
	if raw := u.cfg.Get("command_execution_directory"); raw != "" && a != nil {
		d, _, err := expandAttrs(u.cfg, raw, a, u.cfg.Get("execution_directory_expansion_filter"))
		if err != nil {
			return outcome{Status: deliver.Defer, DSN: "4.3.5", Text: "bad command_execution_directory"}
		}
		dir = d
	}
	spec := commandSpec{command: command, id: rights, env: u.commandEnvFor(j, a), shell: u.cmdShell, timeout: u.cmdTimeout, dir: dir}
	return u.run.runCommand(spec, j.content(flags))
}

// deliverFile appends to a /file (mbox form) or writes into a /dir/
// Maildir, with rights (default_privs instead of root).
func (u *unixAgent) deliverFile(j *recipientJob, path string, rights identity) outcome {
	if rights.uid == 0 {
		r, err := u.rightsOf(0)
		if err != nil {
			return outcome{Status: deliver.Defer, DSN: "4.3.0", Text: err.Error()}
		}
		rights = r
	}
	flags := copyMbox
	op := opMbox
	if strings.HasSuffix(path, "/") {
		flags, op = copyReturnPath|copyOrigTo, opMaildir
	}
	if u.prependDT["file"] {
		flags |= copyDelivered
	}
	req := &childRequest{Op: op, Path: path, Hostname: u.hostname, UID: rights.uid, GID: rights.gid,
		Locks: u.locks, DotlockMayFail: true, LockAttempts: u.lockTries, LockDelay: u.lockDelay,
		StaleLock: u.staleLock, Limit: u.sizeLimit}
	res, err := u.run.run(rights, req, j.content(flags))
	if err != nil {
		return outcome{Status: deliver.Defer, DSN: "4.3.0", Text: fmt.Sprintf("cannot append message to file %s: %v", path, err)}
	}
	if !res.OK {
		return fileFailure(res, fmt.Sprintf("cannot append message to file %s: ", path))
	}
	if op == opMaildir {
		return outcome{Status: deliver.Sent, DSN: "2.0.0", Text: "delivered to maildir"}
	}
	return outcome{Status: deliver.Sent, DSN: "2.0.0", Text: "delivered to file: " + path}
}

// fileFailure words a failed file, mailbox or maildir delivery; what ends
// with Postfix's separator for that kind.
func fileFailure(res childResult, what string) outcome {
	if res.TooLarge {
		return outcome{Status: deliver.Bounce, DSN: "5.2.2", Text: what + "error writing message: File too large"}
	}
	return outcome{Status: deliver.Defer, DSN: "4.2.0", Text: what + res.Err}
}

// deliverMailbox is the last step for an account: mailbox_command_maps,
// mailbox_command, home_mailbox or the spool.
func (u *unixAgent) deliverMailbox(j *recipientJob, pw passwd, a *attrs) outcome {
	id := u.userIdentity(pw)
	raw := u.cfg.Get("mailbox_command")
	if u.mboxCmdMaps != nil {
		v, found, err := j.lookupUserMap("mailbox_command_maps", u.mboxCmdMaps)
		if err != nil {
			return outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "table lookup failure"}
		}
		if found {
			raw = v
		}
	}
	if raw != "" {
		// Unlike other parameters, mailbox_command and the
		// mailbox_command_maps results are not subjected to $name
		// expansion (postconf(5)): shell syntax such as
		// procmail -a "$EXTENSION" reaches the shell, which finds the
		// values in the environment.
		return u.deliverCommand(j, raw, id, true)
	}
	flags := copyMbox | copyDelivered
	var req childRequest
	switch {
	case u.homeMailbox != "":
		req = childRequest{Path: filepath.Join(pw.home, u.homeMailbox), Base: pw.home}
		if strings.HasSuffix(u.homeMailbox, "/") {
			req.Path += "/"
		}
	case u.spool != "":
		req = childRequest{Path: filepath.Join(u.spool, pw.name), Base: u.spool}
		if strings.HasSuffix(u.spool, "/") {
			req.Path += "/"
		}
	default:
		return outcome{Status: deliver.Defer, DSN: "4.3.5", Text: "no mailbox: home_mailbox and mail_spool_directory are empty"}
	}
	req.Op = opMbox
	if strings.HasSuffix(req.Path, "/") {
		req.Op = opMaildir
		flags = copyReturnPath | copyOrigTo | copyDelivered
	}
	req.Hostname, req.UID, req.GID = u.hostname, pw.uid, pw.gid
	req.Locks, req.LockAttempts, req.LockDelay, req.StaleLock = u.locks, u.lockTries, u.lockDelay, u.staleLock
	req.Limit, req.StrictOwner = u.sizeLimit, u.strictOwner
	if u.homeMailbox == "" {
		id, req.Chown = u.spoolIdentity(id)
	}
	res, err := u.run.run(id, &req, j.content(flags))
	// Postfix's wording: local/mailbox.c and local/maildir.c.
	what := fmt.Sprintf("cannot update mailbox %s for user %s. ", req.Path, pw.name)
	if req.Op == opMaildir {
		what = "maildir delivery failed: "
	}
	if err != nil {
		return outcome{Status: deliver.Defer, DSN: "4.2.0", Text: what + err.Error()}
	}
	if !res.OK {
		return fileFailure(res, what)
	}
	if req.Op == opMaildir {
		return outcome{Status: deliver.Sent, DSN: "2.0.0", Text: "delivered to maildir"}
	}
	return outcome{Status: deliver.Sent, DSN: "2.0.0", Text: "delivered to mailbox"}
}

// spoolIdentity decides who writes in mail_spool_directory. A directory
// anyone may write (mode 1777) is written by the user; a group-writable
// one (2775 root:mail) by the user with that group added, for the
// dot-lock; any other by root, who gives a new mailbox to the user
// (Postfix's behaviour for spools users cannot write).
func (u *unixAgent) spoolIdentity(id identity) (identity, bool) {
	st, err := os.Stat(u.spool)
	if err != nil {
		return id, false
	}
	mode := st.Mode().Perm()
	switch {
	case mode&0o002 != 0:
		return id, false
	case mode&0o020 != 0:
		id.groups = []uint32{uint32(fileGID(st))}
		return id, false
	}
	if !u.run.root {
		return id, false
	}
	return identity{uid: 0, gid: 0}, true
}

// getpwnam looks up an account by name.
func (u *unixAgent) getpwnam(name string) (passwd, bool, error) {
	if name == "" {
		return passwd{}, false, nil
	}
	line, ok, err := u.passwd.Lookup(name)
	if err != nil || !ok {
		return passwd{}, false, err
	}
	return parsePasswd(line)
}

// lookupUID finds the account of a uid in /etc/passwd.
func (u *unixAgent) lookupUID(uid int) (passwd, bool, error) {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return passwd{}, false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 7 && f[2] == strconv.Itoa(uid) {
			return parsePasswd(line)
		}
	}
	return passwd{}, false, nil
}

func parsePasswd(line string) (passwd, bool, error) {
	f := strings.Split(line, ":")
	if len(f) < 7 {
		return passwd{}, false, fmt.Errorf("bad passwd entry %q", f[0])
	}
	uid, err1 := strconv.Atoi(f[2])
	gid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		return passwd{}, false, fmt.Errorf("bad passwd entry %q", f[0])
	}
	return passwd{name: f[0], uid: uid, gid: gid, home: f[5], shell: f[6]}, true, nil
}

func fileUID(st os.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid)
	}
	return -1
}

func fileGID(st os.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Gid)
	}
	return -1
}

// hasDeliveredTo reports whether the message header has a Delivered-To:
// naming addr (case-insensitively): the mail has been here before.
func hasDeliveredTo(m *queue.Message, addr string) (bool, error) {
	return headerHasDeliveredTo(m.Content(), addr)
}

func headerHasDeliveredTo(r io.Reader, addr string) (bool, error) {
	br := bufio.NewReaderSize(r, 8<<10)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A header line this long is no Delivered-To: of ours; skip it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			return false, nil
		}
		if name, value, ok := strings.Cut(s, ":"); ok && strings.EqualFold(name, "Delivered-To") &&
			strings.EqualFold(strings.TrimSpace(value), addr) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

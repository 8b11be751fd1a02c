package local

// local(8): mailbox delivery handed to other transports, and recipients
// that have neither an alias nor an account.
//
// Postfix's order after aliases and .forward ("DELIVERY METHODS" in
// local(8), the precedence list in postconf(5) mailbox_transport_maps):
//
//	mailbox_transport_maps, mailbox_transport   any recipient, whether or
//	                                            not it has an account
//	mailbox_command_maps, mailbox_command,      accounts only (unix.go)
//	home_mailbox, mail_spool_directory
//	fallback_transport_maps, fallback_transport no account
//	luser_relay                                 no account
//
// The *_transport_maps are searched with the recipient's user name (the
// local part without its extension, folded to lower case); the value, like
// mailbox_transport and fallback_transport, is "transport[:nexthop]", a
// master.cf service. The recipient is passed to that service's delivery
// agent as Postfix's deliver_pass() does: one pkg/deliver request on
// $queue_directory/private/<transport> naming this queue file and this one
// recipient, with the nexthop given (else the one qmgr gave this request).
// That agent reads the content from the queue file itself, delivers, and
// logs the delivery line; local returns its result to qmgr as the
// recipient's and logs only "passing <addr> to transport=name". This runs
// in the daemon, never in a per-user child: it needs no user rights, only
// the private socket.
//
// luser_relay is expanded with $user, $extension, $domain, $local,
// $recipient, $recipient_delimiter, $home and $shell (empty: there is no
// account) and ${name?value}/${name:value}, without an expansion filter, as
// Postfix; the result is forwarded the way alias and .forward addresses
// are (one new message through cleanup, with Delivered-To:). A relay that
// names the recipient itself bounces as an unknown user rather than loop.
// Only mail that reached local gets here: with the default
// local_recipient_maps (the passwd file and $alias_maps), smtpd already
// refuses unknown local recipients, so luser_relay applies to SMTP mail
// only when local_recipient_maps is empty or lists the unknown names.
//
// Without any of these, mail for postmaster or MAILER-DAEMON is discarded
// with a "required alias not found" warning and any other name bounces
// with 5.1.1 unknown user.

import (
	"fmt"
	"path/filepath"
	"strings"

	"postern/pkg/config"
	"postern/pkg/deliver"
	"postern/pkg/table"
)

// openDeferredMaps opens a main.cf list of tables. A table that cannot be
// opened makes its lookups fail (the recipient is deferred) instead of
// stopping the agent, as for alias_maps. nil means the list is empty.
func openDeferredMaps(cfg *config.Config, name string, opts table.Options) (*table.Maps, error) {
	specs, err := table.SplitSpecs(cfg.Get(name))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(specs) == 0 {
		return nil, nil
	}
	var ts []table.Table
	for _, spec := range specs {
		t, err := table.Open(spec, opts)
		if err != nil {
			t = unavailable{fmt.Errorf("%s: %w", name, err)}
		}
		ts = append(ts, t)
	}
	return table.NewMaps(ts...), nil
}

// lookupUserMap searches maps for the recipient's user name.
func (j *recipientJob) lookupUserMap(name string, maps *table.Maps) (string, bool, error) {
	v, found, err := maps.Lookup(j.user)
	if err != nil {
		j.u.warning("%s: %s lookup of %q: %v", j.queueID(), name, j.user, err)
		return "", false, err
	}
	return strings.TrimSpace(v), found, nil
}

// delegate passes the recipient to the transport from mapsName (searched
// first) or param, and reports whether either was set.
func (j *recipientJob) delegate(mapsName string, maps *table.Maps, param, value string) bool {
	if maps != nil {
		v, found, err := j.lookupUserMap(mapsName, maps)
		if err != nil {
			j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: "table lookup failure"})
			return true
		}
		if found {
			j.passTo(mapsName, v)
			return true
		}
	}
	if value != "" {
		j.passTo(param, value)
		return true
	}
	return false
}

// splitService splits "transport[:nexthop]"; an empty nexthop is def.
func splitService(service, def string) (transport, nexthop string) {
	transport, nexthop, _ = strings.Cut(strings.TrimSpace(service), ":")
	if nexthop == "" {
		nexthop = def
	}
	return transport, nexthop
}

// validTransport says whether name can be a master.cf service whose
// socket is private/<name>.
func validTransport(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00 \t")
}

// passTo hands the recipient to the delivery agent of service
// ("transport[:nexthop]", from main.cf parameter or table param).
func (j *recipientJob) passTo(param, service string) {
	transport, nexthop := splitService(service, j.req.Nexthop)
	if !validTransport(transport) {
		j.u.warning("%s: %s: bad transport name in %q", j.queueID(), param, service)
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.5", Text: "mail system configuration error"})
		return
	}
	if transport == j.u.service {
		// The agent would wait for itself until the process limit.
		j.u.warning("%s: %s: transport %q is this delivery agent", j.queueID(), param, transport)
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.5", Text: "mail system configuration error"})
		return
	}
	if j.u.log != nil {
		j.u.log.Printf("%s: passing <%s> to transport=%s", j.queueID(), j.addr, transport)
	}
	r := j.r
	r.Addr = j.addr
	req := &deliver.Request{
		QueueID: j.req.QueueID, Queue: j.req.Queue, Sender: j.req.Sender, Nexthop: nexthop,
		Arrival: j.req.Arrival, Active: j.req.Active, Recipients: []deliver.Recipient{r},
	}
	res, err := j.u.pass(transport, req)
	if err != nil {
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.0", Text: err.Error()})
		return
	}
	// Only the recipient's outcome comes back: what the other agent says
	// about its own next hop is no news about local's destination, which
	// qmgr would otherwise hold against it (Postfix: "can't pass back hop
	// status info because the problem is with a different transport").
	j.addPassed(outcome{Index: j.r.Index, Status: res.Status, DSN: res.DSN, Text: res.Text})
}

// errTransport is a failed hand-off, with Postfix's deliver_pass texts.
type errTransport string

func (e errTransport) Error() string { return string(e) }

const (
	errUnavailable  errTransport = "mail transport unavailable"
	errUnknownReply errTransport = "unknown mail transport error"
)

// pass sends one request to the agent of transport and returns its one
// result.
func (u *unixAgent) pass(transport string, req *deliver.Request) (deliver.Result, error) {
	cl, err := deliver.Dial(filepath.Join(u.private, transport), transport, u.ipcTimeout)
	if err != nil {
		u.warning("%s: connect to transport %s: %v", req.QueueID, transport, err)
		return deliver.Result{}, errUnavailable
	}
	defer cl.Close()
	res, err := cl.Deliver(req)
	if err != nil {
		u.warning("%s: transport %s: %v", req.QueueID, transport, err)
		return deliver.Result{}, errUnknownReply
	}
	if len(res) != 1 || res[0].Index != req.Recipients[0].Index {
		u.warning("%s: transport %s: unexpected reply %+v", req.QueueID, transport, res)
		return deliver.Result{}, errUnknownReply
	}
	switch res[0].Status {
	case deliver.Sent, deliver.Defer, deliver.Bounce:
	default:
		u.warning("%s: transport %s: unknown status %q", req.QueueID, transport, res[0].Status)
		return deliver.Result{}, errUnknownReply
	}
	return res[0], nil
}

// deliverUnknown handles a recipient with no alias and no account, as
// Postfix's deliver_unknown().
func (j *recipientJob) deliverUnknown() {
	if j.delegate("fallback_transport_maps", j.u.fbTranspMaps, "fallback_transport", j.u.fbTransport) {
		return
	}
	if raw := j.u.luserRelay; raw != "" {
		j.luserRelay(raw)
		return
	}
	if strings.EqualFold(j.user, "postmaster") || strings.EqualFold(j.user, "mailer-daemon") {
		j.u.warning("required alias not found: %s", j.user)
		j.add(outcome{Status: deliver.Sent, DSN: "2.0.0", Text: "discarded"})
		return
	}
	j.add(outcome{Status: deliver.Bounce, DSN: "5.1.1", Text: fmt.Sprintf("unknown user: %q", j.user)})
}

// luserRelay forwards the recipient to the expansion of luser_relay.
func (j *recipientJob) luserRelay(raw string) {
	a := j.attrs(passwd{name: j.user})
	to, err := expandAddress(j.u.cfg, raw, a)
	to = strings.TrimSpace(to)
	if err != nil || to == "" {
		j.u.warning("%s: bad luser_relay %q: %v", j.queueID(), raw, err)
		j.add(outcome{Status: deliver.Defer, DSN: "4.3.5", Text: "mail system configuration error"})
		return
	}
	canon := to
	if !strings.Contains(canon, "@") {
		canon += "@" + j.u.myorigin
	}
	if strings.EqualFold(canon, j.addr) {
		j.add(outcome{Status: deliver.Bounce, DSN: "5.1.1", Text: fmt.Sprintf("unknown user: %q", j.user)})
		return
	}
	j.forward = append(j.forward, to)
}

func (j *recipientJob) queueID() string {
	if j.req == nil {
		return "NOQUEUE"
	}
	return j.req.QueueID
}

func (u *unixAgent) warning(format string, args ...any) {
	if u.log != nil {
		u.log.Warning(format, args...)
	}
}

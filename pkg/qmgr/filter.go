package qmgr

// Content filters (postconf(5) content_filter, header_checks(5) FILTER,
// Postfix's FILTER_README "advanced content filter"). A message whose
// queue file names a filter (the attribute "filter", "transport:nexthop",
// written by cleanup from the receiving process's content_filter or a
// FILTER action) goes to that transport and next hop for every pending
// recipient, whatever the resolver says, as Postfix's qmgr overrides the
// address resolver: the filter (amavis, spamassassin behind an SMTP or
// LMTP listener) gets the whole message with all its recipients, and
// re-injects it through a listener with content_filter empty.
//
// A filter without a next hop ("amavis:" or "amavis") uses
// default_filter_nexthop, or when that is empty the recipient's domain,
// or $myhostname for a recipient without one, as Postfix 2.7 and later.

import (
	"fmt"
	"strings"

	"postern/pkg/queue"
	"postern/pkg/resolve"
)

// attrFilter is the queue file attribute naming the content filter.
const attrFilter = "filter"

// route returns where recipient addr of the message with envelope env
// goes: to its content filter when it has one, else where the resolver
// says for mail from env.Sender (sender_dependent_relayhost_maps is
// resolved here, as Postfix's qmgr asks trivial-rewrite with the sender,
// so that each sender's relay is a destination of its own).
func (q *Qmgr) route(env *queue.Envelope, addr string) (resolve.Result, error) {
	f := env.Attrs[attrFilter]
	if f == "" {
		return q.resolver.ResolveFrom(env.Sender, addr)
	}
	return filterRoute(f, addr, q.cfg.Get("default_filter_nexthop"), q.cfg.Get("myhostname"))
}

// filterRoute splits filter at its first colon into transport and next
// hop, filling an empty next hop as the package doc says.
func filterRoute(filter, addr, defNexthop, myhostname string) (resolve.Result, error) {
	transport, nexthop, _ := strings.Cut(filter, ":")
	transport = strings.TrimSpace(transport)
	if transport == "" {
		return resolve.Result{}, fmt.Errorf("bad content filter %q: no transport", filter)
	}
	if nexthop == "" {
		nexthop = defNexthop
	}
	if nexthop == "" {
		if at := strings.LastIndexByte(addr, '@'); at >= 0 && at+1 < len(addr) {
			nexthop = addr[at+1:]
		}
	}
	if nexthop == "" {
		nexthop = myhostname
	}
	return resolve.Result{Transport: transport, Nexthop: nexthop, Recipient: addr}, nil
}

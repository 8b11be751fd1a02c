// Package resolve does the job of Postfix's trivial-rewrite resolver: it
// puts a recipient address into its address class and finds the transport
// and next hop that deliver it (ADDRESS_CLASS_README).
//
// Classes, tried in this order for the recipient's domain:
//   - local: mydestination, or a [literal] of an inet_interfaces address →
//     local_transport (default "local:$myhostname");
//   - virtual alias: virtual_alias_domains → mail is only accepted when
//     virtual_alias_maps rewrites it (cleanup's job);
//   - virtual mailbox: virtual_mailbox_domains → virtual_transport
//     (default "virtual");
//   - relay: relay_domains → relay_transport (default "relay");
//   - default: anything else → default_transport (default "smtp").
//
// A transport written as "name:nexthop" names its next hop; without one the
// next hop is relayhost for the relay and default classes when relayhost is
// set, $myhostname for the local class, and otherwise the recipient domain.
// The virtual alias class resolves to the error transport with the reason
// as next hop, as Postfix's error(8) takes it.
//
// ResolveFrom also takes the envelope sender: for the relay and default
// classes a sender_dependent_relayhost_maps entry for the sender (or its
// @domain; the null sender is looked up as "<>") replaces relayhost and
// the recipient domain as next hop, as trivial-rewrite does (resolve.c);
// "DUNNO" keeps relayhost. A transport's own next hop and transport_maps
// still win over it. qmgr resolves with the sender, so it queues (and
// declares dead) per actual next hop; the smtp agent takes the next hop
// as given.
//
// transport_maps (transport(5)) then overrides transport and next hop for
// all classes but virtual alias: searched with user+ext@domain,
// user@domain, domain, .parent domains, and "*"; "transport:nexthop" with
// an empty field keeping the class's value (see applyTransport).
//
// The Resolver is built once from main.cf and is safe for concurrent use.
package resolve

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"postern/pkg/address"
	"postern/pkg/config"
	"postern/pkg/matchlist"
	"postern/pkg/table"
)

// Class is an address class.
type Class int

const (
	Local Class = iota
	VirtualAlias
	VirtualMailbox
	Relay
	Default
)

var classNames = [...]string{"local", "virtual alias", "virtual mailbox", "relay", "default"}

func (c Class) String() string { return classNames[c] }

// Result is where an address goes.
type Result struct {
	Class     Class
	Transport string // master.cf service name
	Nexthop   string
	Recipient string
}

// Resolver resolves recipient addresses.
type Resolver struct {
	myhostname    string
	mydest        *matchlist.List
	valiasDomains *matchlist.List
	vmboxDomains  *matchlist.List
	relayDomains  *matchlist.List
	ifaceAddrs    map[netip.Addr]bool
	transports    [5]string
	relayhost     string
	delim         string
	vmboxMaps     *table.Maps
	valiasMaps    *table.Maps
	transportMaps *transportMaps // nil when transport_maps is empty
	sndRelay      *table.Maps    // sender_dependent_relayhost_maps; nil when empty
	nullRelayKey  string         // empty_address_relayhost_maps_lookup_key
	localRcpt     localRecipientMaps
}

// localRecipientMaps opens local_recipient_maps on first use, so that qmgr
// (which never asks) does not read the password and alias files, and so
// that a missing alias file is a temporary lookup failure at RCPT time (as
// in Postfix) rather than a daemon that cannot start. A failed open is
// retried at the next lookup.
type localRecipientMaps struct {
	mu   sync.Mutex
	maps *table.Maps
	none bool // the parameter is empty: every local name is valid
	open func() (*table.Maps, error)
}

func (l *localRecipientMaps) get() (*table.Maps, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maps != nil || l.none {
		return l.maps, nil
	}
	m, err := l.open()
	if err != nil {
		return nil, err
	}
	l.maps, l.none = m, m == nil
	return m, nil
}

// Opener opens lookup tables; callers share one so each table is opened once.
type Opener func(spec string) (table.Table, error)

// New builds a Resolver from the configuration. Tables of
// local_recipient_maps that are also alias_maps are read in aliases(5)
// format through a cache of the Resolver's own.
func New(cfg *config.Config, open Opener) (*Resolver, error) {
	aliases := table.NewCache(table.Options{Aliases: true})
	return NewWithAliases(cfg, open, aliases.Open)
}

// NewWithAliases is New with the opener for tables in aliases(5) format
// (those of local_recipient_maps also named in alias_maps).
func NewWithAliases(cfg *config.Config, open, openAliases Opener) (*Resolver, error) {
	lopen := func(spec string) (matchlist.Lookuper, error) { return open(spec) }
	r := &Resolver{
		myhostname: strings.ToLower(cfg.Get("myhostname")),
		relayhost:  cfg.Get("relayhost"),
		delim:      cfg.Get("recipient_delimiter"),
		ifaceAddrs: map[netip.Addr]bool{},
	}
	var err error
	if r.mydest, err = matchlist.Domains(cfg.List("mydestination"), lopen); err != nil {
		return nil, fmt.Errorf("mydestination: %w", err)
	}
	if r.valiasDomains, err = matchlist.Domains(cfg.List("virtual_alias_domains"), lopen); err != nil {
		return nil, fmt.Errorf("virtual_alias_domains: %w", err)
	}
	if r.vmboxDomains, err = matchlist.Domains(cfg.List("virtual_mailbox_domains"), lopen); err != nil {
		return nil, fmt.Errorf("virtual_mailbox_domains: %w", err)
	}
	if r.relayDomains, err = matchlist.Domains(cfg.List("relay_domains"), lopen); err != nil {
		return nil, fmt.Errorf("relay_domains: %w", err)
	}
	for _, s := range cfg.List("inet_interfaces") {
		if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
			r.ifaceAddrs[a.Unmap()] = true
		}
	}
	r.transports = [5]string{
		Local:          cfg.Get("local_transport"),
		VirtualAlias:   "error",
		VirtualMailbox: cfg.Get("virtual_transport"),
		Relay:          cfg.Get("relay_transport"),
		Default:        cfg.Get("default_transport"),
	}
	if r.vmboxMaps, err = OpenMaps(cfg, "virtual_mailbox_maps", open); err != nil {
		return nil, err
	}
	if r.valiasMaps, err = OpenMaps(cfg, "virtual_alias_maps", open); err != nil {
		return nil, err
	}
	if r.transportMaps, err = openTransportMaps(cfg, open); err != nil {
		return nil, err
	}
	if specs, err := table.SplitSpecs(cfg.Get("sender_dependent_relayhost_maps")); err != nil {
		return nil, fmt.Errorf("sender_dependent_relayhost_maps: %w", err)
	} else if len(specs) > 0 {
		if r.sndRelay, err = OpenMaps(cfg, "sender_dependent_relayhost_maps", open); err != nil {
			return nil, err
		}
		if r.nullRelayKey = cfg.Get("empty_address_relayhost_maps_lookup_key"); r.nullRelayKey == "" {
			r.nullRelayKey = nullSenderKey
		}
	}
	if _, err := table.SplitSpecs(cfg.Get("local_recipient_maps")); err != nil {
		return nil, fmt.Errorf("local_recipient_maps: %w", err)
	}
	r.localRcpt.open = func() (*table.Maps, error) { return openLocalRecipientMaps(cfg, open, openAliases) }
	return r, nil
}

// openLocalRecipientMaps opens local_recipient_maps (Postfix's default
// "proxy:unix:passwd.byname $alias_maps"). A table that alias_maps names
// too is in aliases(5) format, so it is opened as one; nil means the
// parameter is empty and local recipients are not checked.
func openLocalRecipientMaps(cfg *config.Config, open, openAliases Opener) (*table.Maps, error) {
	specs, err := table.SplitSpecs(cfg.Get("local_recipient_maps"))
	if err != nil {
		return nil, fmt.Errorf("local_recipient_maps: %w", err)
	}
	if len(specs) == 0 {
		return nil, nil
	}
	aliasSpecs, err := table.SplitSpecs(cfg.Get("alias_maps"))
	if err != nil {
		return nil, fmt.Errorf("alias_maps: %w", err)
	}
	isAlias := map[string]bool{}
	for _, s := range aliasSpecs {
		isAlias[strings.TrimPrefix(s, "proxy:")] = true
	}
	var ts []table.Table
	for _, spec := range specs {
		o := open
		if isAlias[strings.TrimPrefix(spec, "proxy:")] {
			o = openAliases
		}
		t, err := o(spec)
		if err != nil {
			return nil, fmt.Errorf("local_recipient_maps: %w", err)
		}
		ts = append(ts, t)
	}
	return table.NewMaps(ts...), nil
}

// OpenMaps opens the tables a *_maps parameter lists, searched in order.
func OpenMaps(cfg *config.Config, param string, open Opener) (*table.Maps, error) {
	specs, err := table.SplitSpecs(cfg.Get(param))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", param, err)
	}
	var ts []table.Table
	for _, spec := range specs {
		t, err := open(spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", param, err)
		}
		ts = append(ts, t)
	}
	return table.NewMaps(ts...), nil
}

// ClassOf returns the address class of a domain.
func (r *Resolver) ClassOf(domain string) (Class, error) {
	domain = address.FoldDomain(domain)
	if domain == "" {
		return Local, nil
	}
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		lit := strings.TrimPrefix(domain[1:len(domain)-1], "ipv6:")
		if a, err := netip.ParseAddr(lit); err == nil && r.ifaceAddrs[a.Unmap()] {
			return Local, nil
		}
		return Default, nil
	}
	for _, c := range []struct {
		l     *matchlist.List
		class Class
	}{{r.mydest, Local}, {r.valiasDomains, VirtualAlias}, {r.vmboxDomains, VirtualMailbox}, {r.relayDomains, Relay}} {
		ok, err := c.l.MatchDomain(domain)
		if err != nil {
			return Default, err
		}
		if ok {
			return c.class, nil
		}
	}
	return Default, nil
}

// Resolve finds the transport and next hop for a recipient: the address
// class's, then transport_maps, which overrides them for every class but
// virtual alias (whose "User unknown" result stands, as in Postfix).
func (r *Resolver) Resolve(rcpt string) (Result, error) {
	return r.resolve(rcpt, "", false)
}

// nullSenderKey is what sender_dependent_relayhost_maps is searched with
// for the null sender: the default of Postfix's
// empty_address_relayhost_maps_lookup_key, which main.cf may set.
const nullSenderKey = "<>"

// ResolveFrom is Resolve for mail from sender: for the relay and default
// classes sender_dependent_relayhost_maps may name the next hop (see the
// package doc).
func (r *Resolver) ResolveFrom(sender, rcpt string) (Result, error) {
	return r.resolve(rcpt, sender, true)
}

// senderRelay returns sender's entry in sender_dependent_relayhost_maps,
// or "" when there is none or it says DUNNO.
func (r *Resolver) senderRelay(sender string) (string, error) {
	if r.sndRelay == nil {
		return "", nil
	}
	key := sender
	if key == "" {
		key = r.nullRelayKey
	}
	v, found, err := table.LookupAddress(r.sndRelay, key, table.AddressOptions{Delimiter: r.delim})
	if err != nil {
		return "", fmt.Errorf("sender_dependent_relayhost_maps lookup failure: %w", err)
	}
	v = strings.TrimSpace(v)
	if !found || strings.EqualFold(v, "DUNNO") {
		return "", nil
	}
	return v, nil
}

func (r *Resolver) resolve(rcpt, sender string, withSender bool) (Result, error) {
	domain := address.Domain(rcpt)
	class, err := r.ClassOf(domain)
	if err != nil {
		return Result{}, err
	}
	res := Result{Class: class, Recipient: rcpt}
	res.Transport, res.Nexthop, _ = strings.Cut(r.transports[class], ":")
	var sndRelay string
	if withSender && res.Nexthop == "" && (class == Relay || class == Default) {
		if sndRelay, err = r.senderRelay(sender); err != nil {
			return Result{}, err
		}
	}
	if res.Nexthop == "" {
		switch {
		case sndRelay != "":
			res.Nexthop = sndRelay
		case (class == Relay || class == Default) && r.relayhost != "":
			res.Nexthop = r.relayhost
		case class == Local:
			res.Nexthop = r.myhostname
		case class == VirtualAlias:
			res.Nexthop = "5.1.1 User unknown in virtual alias table"
		default:
			res.Nexthop = domain
		}
	}
	if r.transportMaps != nil && class != VirtualAlias {
		v, ok, err := r.transportMaps.lookup(rcpt, r.delim)
		if err != nil {
			return Result{}, fmt.Errorf("transport_maps: %w", err)
		}
		if ok {
			applyTransport(v, address.FoldDomain(domain), &res.Transport, &res.Nexthop)
		}
	}
	return res, nil
}

// Authorized reports whether mail to rcpt may be accepted from a client
// that is not allowed to relay: its domain is one this host is final or
// relay destination for (Postfix's permit_auth_destination). Addresses
// with sender-specified routing ('@', '%' or '!' in the local part) are
// never authorized.
func (r *Resolver) Authorized(rcpt string) (bool, error) {
	local, domain := address.Split(rcpt)
	if strings.ContainsAny(local, "@%!") {
		return false, nil
	}
	class, err := r.ClassOf(domain)
	if err != nil {
		return false, err
	}
	return class != Default, nil
}

// Known reports whether a recipient in a local, virtual mailbox or virtual
// alias domain exists (Postfix's reject_unlisted_recipient for those
// classes). A local recipient is known when local_recipient_maps is empty
// or lists it, searched as smtpd(8) does for a local domain: user+ext@domain,
// user@domain, user+ext, user, @domain (so unix:passwd.byname and alias
// tables answer with the bare name). Recipients of the relay and default
// classes are reported as known: checking them is the job of
// relay_recipient_maps.
func (r *Resolver) Known(rcpt string) (bool, error) {
	domain := address.Domain(rcpt)
	class, err := r.ClassOf(domain)
	if err != nil {
		return false, err
	}
	var maps []*table.Maps
	local := false
	switch class {
	case Local:
		m, err := r.localRcpt.get()
		if err != nil {
			return false, err
		}
		if m == nil {
			return true, nil
		}
		maps, local = []*table.Maps{m}, true
	case VirtualMailbox:
		maps = []*table.Maps{r.valiasMaps, r.vmboxMaps}
	case VirtualAlias:
		maps = []*table.Maps{r.valiasMaps}
	default:
		return true, nil
	}
	for _, t := range maps {
		_, found, err := table.LookupAddress(t, rcpt, table.AddressOptions{Delimiter: r.delim, LocalDomain: local})
		if err != nil {
			return false, err
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

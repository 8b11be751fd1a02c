package cleanup

// Address rewriting as Postfix's cleanup does it before a message is
// queued (canonical(5), postconf(5)):
//
//   - append_dot_mydomain turns user@host into user@host.$mydomain;
//   - sender_canonical_maps (senders), recipient_canonical_maps
//     (recipients), then canonical_maps map an address one to one; a
//     result is mapped again until it maps to itself or has no mapping;
//   - masquerade_domains strips subdomains: with "example.com",
//     user@host.example.com becomes user@example.com; "!sub.example.com"
//     protects a domain; masquerade_exceptions names users never
//     masqueraded.
//
// Each step applies to the address classes its *_classes parameter names:
// envelope_sender, envelope_recipient, header_sender (From:, Sender:,
// Reply-To:, ...) and header_recipient (To:, Cc:, ...).

import (
	"strings"

	"postern/pkg/table"
)

// Address classes of canonical_classes and friends.
const (
	classEnvSender = 1 << iota
	classEnvRcpt
	classHdrSender
	classHdrRcpt
)

func parseClasses(list []string) int {
	m := 0
	for _, s := range list {
		switch strings.ToLower(s) {
		case "envelope_sender":
			m |= classEnvSender
		case "envelope_recipient":
			m |= classEnvRcpt
		case "header_sender":
			m |= classHdrSender
		case "header_recipient":
			m |= classHdrRcpt
		}
	}
	return m
}

// canonicalLimit bounds one-to-one mapping chains, as Postfix's fixed
// limit of 100 in cleanup.
const canonicalLimit = 100

// addrRewrite is the configured rewriting; nil when nothing is set.
type addrRewrite struct {
	canonical, senderCanon, rcptCanon          *table.Maps
	canonClasses, senderClasses, rcptClasses   int
	masqDomains                                []string
	masqExcept                                 func(user string) bool
	masqClasses                                int
	delim                                      string
	propagate                                  bool
	local                                      func(domain string) bool
	canonicalSet, senderCanonSet, rcptCanonSet bool
}

// headerClasses says whether any step touches header addresses.
func (r *addrRewrite) headerClasses() bool {
	m := (r.canonClasses & b2i(r.canonicalSet)) | (r.senderClasses & b2i(r.senderCanonSet)) |
		(r.rcptClasses & b2i(r.rcptCanonSet))
	if len(r.masqDomains) > 0 {
		m |= r.masqClasses
	}
	return m&(classHdrSender|classHdrRcpt) != 0
}

func b2i(b bool) int {
	if b {
		return -1
	}
	return 0
}

// rewrite applies canonical mapping and masquerading to a qualified
// address of the given class. The null sender is never rewritten.
func (c *Cleanup) rewrite(id, addr string, class int) (string, error) {
	r := c.addr
	if r == nil || addr == "" {
		return addr, nil
	}
	var err error
	if r.senderCanonSet && class&(classEnvSender|classHdrSender) != 0 && r.senderClasses&class != 0 {
		if addr, err = c.map11(id, r.senderCanon, "sender_canonical_maps", addr); err != nil {
			return "", err
		}
	}
	if r.rcptCanonSet && class&(classEnvRcpt|classHdrRcpt) != 0 && r.rcptClasses&class != 0 {
		if addr, err = c.map11(id, r.rcptCanon, "recipient_canonical_maps", addr); err != nil {
			return "", err
		}
	}
	if r.canonicalSet && r.canonClasses&class != 0 {
		if addr, err = c.map11(id, r.canonical, "canonical_maps", addr); err != nil {
			return "", err
		}
	}
	if len(r.masqDomains) > 0 && r.masqClasses&class != 0 {
		addr = r.masquerade(addr)
	}
	return addr, nil
}

// map11 maps addr through maps until it maps to itself or has no mapping.
func (c *Cleanup) map11(id string, maps *table.Maps, title, addr string) (string, error) {
	r := c.addr
	for depth := 0; depth < canonicalLimit; depth++ {
		vals, found, err := c.lookupAddr(maps, addr, r.delim, r.propagate, r.local)
		if err != nil {
			c.log.Warning("%s: %s map lookup problem for %s -- message not accepted, try again later", id, title, addr)
			return "", errDefer
		}
		if !found || len(vals) == 0 {
			return addr, nil
		}
		if len(vals) > 1 {
			c.log.Warning("%s: multi-valued %s entry for %s", id, title, addr)
		}
		next := c.qualify(vals[0])
		if strings.EqualFold(next, addr) {
			return next, nil
		}
		addr = next
	}
	c.log.Warning("%s: unreasonable %s map nesting for %s -- message not accepted", id, title, addr)
	return "", errDefer
}

// masquerade strips the subdomains of addr's domain down to the first
// masquerade_domains entry that is a parent of it; an entry "!d" that
// equals or is a parent of the domain stops the search without change.
func (r *addrRewrite) masquerade(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	user, domain := addr[:at], addr[at+1:]
	if r.masqExcept != nil && r.masqExcept(user) {
		return addr
	}
	for _, m := range r.masqDomains {
		keep := strings.HasPrefix(m, "!")
		m = strings.TrimPrefix(m, "!")
		if m == "" {
			continue
		}
		if len(m) == len(domain) {
			if strings.EqualFold(m, domain) {
				return addr
			}
			continue
		}
		if len(m) < len(domain) {
			parent := domain[len(domain)-len(m):]
			if domain[len(domain)-len(m)-1] == '.' && strings.EqualFold(parent, m) {
				if keep {
					return addr
				}
				return user + "@" + parent
			}
		}
	}
	return addr
}

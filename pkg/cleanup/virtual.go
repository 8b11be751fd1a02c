package cleanup

// Envelope recipient expansion through virtual_alias_maps, as Postfix's
// cleanup does it (cleanup(8), virtual(5)): each recipient is looked up in
// the order of virtual(5) (user+ext@domain, user@domain, user+ext and user
// when the domain is local, @domain); a result is a list of addresses,
// each of which is looked up again. The recursion stops at an address
// that maps to itself (it stays, once), or at an address without a
// mapping. A chain deeper than virtual_alias_recursion_limit (a loop
// a -> b -> a ends here) or a result list longer than
// virtual_alias_expansion_limit makes cleanup refuse the message
// temporarily with a warning, as Postfix does.
//
// An unmapped address in a virtual alias domain stays as it is: smtpd
// refuses it at RCPT time, and one that arrives otherwise (sendmail) is
// bounced by qmgr (the virtual alias class resolves to the error
// transport).

import (
	"errors"
	"fmt"
	"strings"

	"postern/pkg/table"
)

// errDefer is a lookup problem or an unreasonable expansion: the message
// is refused with a temporary error, as Postfix's CLEANUP_STAT_DEFER.
var errDefer = errors.New("deferred")

// virtualAlias holds what expansion needs; nil maps means no expansion.
type virtualAlias struct {
	maps           *table.Maps
	recursionLimit int
	expansionLimit int
	delim          string
	propagate      bool // propagate_unmatched_extensions has "virtual"
	local          func(domain string) bool
}

// expand returns the addresses addr expands to (addr itself when it has
// no mapping). Warnings are logged with the queue ID id.
func (c *Cleanup) expandVirtual(id, addr string) ([]string, error) {
	va := c.valias
	out := []string{addr}
	// selfMapped holds addresses that mapped to themselves: they stay
	// and are not looked up again.
	var selfMapped map[string]bool
	for i := 0; i < len(out); i++ {
		for depth := 0; ; depth++ {
			cur := out[i]
			if selfMapped[strings.ToLower(cur)] {
				break
			}
			if depth >= va.recursionLimit {
				c.log.Warning("%s: unreasonable virtual_alias_maps map nesting for %s -- message not accepted", id, addr)
				return nil, errDefer
			}
			vals, found, err := c.lookupAddr(va.maps, cur, va.delim, va.propagate, va.local)
			if err != nil {
				c.log.Warning("%s: virtual_alias_maps map lookup problem for %s -- message not accepted, try again later", id, cur)
				return nil, errDefer
			}
			if !found {
				break
			}
			if len(vals) == 0 {
				break
			}
			for j, v := range vals {
				if j == 0 {
					out[i] = v
				} else {
					out = append(out, v)
				}
				if strings.EqualFold(v, cur) {
					if selfMapped == nil {
						selfMapped = map[string]bool{}
					}
					selfMapped[strings.ToLower(v)] = true
				}
			}
			if len(out) > va.expansionLimit {
				c.log.Warning("%s: unreasonable virtual_alias_maps map expansion size for %s -- message not accepted", id, addr)
				return nil, errDefer
			}
		}
	}
	return out, nil
}

// lookupAddr searches maps for addr in the order of virtual(5) and
// canonical(5) and returns the result split into addresses, with an
// extension the lookup stripped carried over when propagate is set.
func (c *Cleanup) lookupAddr(maps *table.Maps, addr, delim string, propagate bool, local func(string) bool) ([]string, bool, error) {
	isLocal := false
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && local != nil {
		isLocal = local(addr[i+1:])
	}
	v, ext, found, err := table.LookupAddressExt(maps, addr, table.AddressOptions{Delimiter: delim, LocalDomain: isLocal})
	if err != nil || !found {
		return nil, false, err
	}
	vals := splitAddrList(v)
	if propagate && ext != "" {
		for k, a := range vals {
			vals[k] = addExtension(a, ext)
		}
	}
	return vals, true, nil
}

// splitAddrList splits a table result into addresses: separated by commas
// and/or white space, outside double quotes.
func splitAddrList(v string) []string {
	var out []string
	start, inQuote := -1, false
	for i := 0; i <= len(v); i++ {
		sep := i == len(v)
		if !sep {
			switch ch := v[i]; {
			case ch == '"':
				inQuote = !inQuote
			case ch == '\\' && inQuote && i+1 < len(v):
				i++
			case !inQuote && (ch == ',' || ch == ' ' || ch == '\t'):
				sep = true
			}
		}
		if sep {
			if start >= 0 {
				out = append(out, v[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}

// addExtension puts ext ("+foo") at the end of addr's local part, as
// propagate_unmatched_extensions does; an address that already has it
// stays.
func addExtension(addr, ext string) string {
	local, domain := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain = addr[:i], addr[i:]
	}
	if strings.HasSuffix(local, ext) || local == "" {
		return addr
	}
	return fmt.Sprintf("%s%s%s", local, ext, domain)
}

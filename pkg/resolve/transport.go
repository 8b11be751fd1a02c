package resolve

// transport_maps (transport(5)): a table that overrides the transport and
// next hop of the address class, per recipient address or domain.

import (
	"fmt"
	"strings"

	"postern/pkg/config"
	"postern/pkg/table"
)

// transportMaps holds the tables of transport_maps in search order, each
// with whether it takes partial keys.
type transportMaps struct {
	tables []transportTable
}

type transportTable struct {
	t       table.Table
	pattern bool // regexp, pcre, cidr: searched with the full address only
}

// openTransportMaps opens transport_maps; nil when the parameter is empty.
func openTransportMaps(cfg *config.Config, open Opener) (*transportMaps, error) {
	specs, err := table.SplitSpecs(cfg.Get("transport_maps"))
	if err != nil {
		return nil, fmt.Errorf("transport_maps: %w", err)
	}
	if len(specs) == 0 {
		return nil, nil
	}
	tm := &transportMaps{}
	for _, spec := range specs {
		t, err := open(spec)
		if err != nil {
			return nil, fmt.Errorf("transport_maps: %w", err)
		}
		tm.tables = append(tm.tables, transportTable{t: t, pattern: patternSpec(spec)})
	}
	return tm, nil
}

// patternSpec says whether a table spec names a pattern table (or a union
// or pipe containing one), which Postfix searches with the full address
// only: partial keys such as a domain would match its expressions in
// unintended ways.
func patternSpec(spec string) bool {
	spec = strings.TrimPrefix(spec, "proxy:")
	typ, rest, _ := strings.Cut(spec, ":")
	switch typ {
	case "regexp", "pcre", "cidr":
		return true
	case "unionmap", "pipemap":
		return strings.Contains(rest, "regexp:") || strings.Contains(rest, "pcre:") || strings.Contains(rest, "cidr:")
	}
	return false
}

// find searches every table for key, in order; fixedOnly skips pattern
// tables.
func (tm *transportMaps) find(key string, fixedOnly bool) (string, bool, error) {
	for _, tt := range tm.tables {
		if fixedOnly && tt.pattern {
			continue
		}
		k := key
		if !tt.pattern {
			// Fixed tables are searched case-folded; pattern tables get
			// the address as written, as transport(5) says.
			k = strings.ToLower(key)
		}
		v, ok, err := tt.t.Lookup(k)
		if err != nil || ok {
			return v, ok, err
		}
	}
	return "", false, nil
}

// lookup finds the transport(5) entry for rcpt in the order of transport(5)
// "TABLE SEARCH ORDER": user+extension@domain, user@domain, domain, then
// each parent domain as ".parent" (transport_maps is not in Postern's
// parent_domain_matches_subdomains, Postfix's default), then "*". Only the
// first key goes to pattern tables.
func (tm *transportMaps) lookup(rcpt, delim string) (string, bool, error) {
	if v, ok, err := tm.find(rcpt, false); err != nil || ok {
		return v, ok, err
	}
	local, domain, hasDomain := rcpt, "", false
	if i := strings.LastIndexByte(rcpt, '@'); i >= 0 {
		local, domain, hasDomain = rcpt[:i], rcpt[i+1:], true
	}
	if hasDomain {
		if user, _, split := table.SplitLocal(local, delim, false); split {
			if v, ok, err := tm.find(user+"@"+domain, true); err != nil || ok {
				return v, ok, err
			}
		}
		name := domain
		for name != "" {
			if v, ok, err := tm.find(name, true); err != nil || ok {
				return v, ok, err
			}
			i := strings.IndexByte(name[1:], '.')
			if i < 0 {
				break
			}
			name = name[1+i:]
		}
	}
	return tm.find("*", true)
}

// applyTransport changes transport and nexthop by a transport(5) result
// "transport:nexthop", with transport(5)'s rules for empty fields: both
// empty changes nothing; an empty transport keeps the transport (and takes
// the nexthop when one is given); a transport with no nexthop resets the
// nexthop to the recipient domain, except for the error and retry
// transports, whose nexthop is the reason text.
func applyTransport(value, domain string, transport, nexthop *string) {
	tr, nh, _ := strings.Cut(strings.TrimSpace(value), ":")
	if tr == "" {
		if nh != "" {
			*nexthop = nh
		}
		return
	}
	*transport = tr
	switch {
	case nh != "":
		*nexthop = nh
	case tr == "error" || tr == "retry":
		*nexthop = "Address is undeliverable"
	default:
		*nexthop = domain
	}
}

// Package matchlist implements Postfix's match lists: the values of
// parameters such as mydestination, relay_domains, virtual_mailbox_domains
// and mynetworks. A list is a sequence of patterns tried in order; the first
// that matches decides, and a pattern preceded by '!' turns a match into a
// non-match (Postfix 2.4 and later).
//
// Patterns:
//   - a domain name ("example.com") matches that domain; ".example.com"
//     matches its subdomains (Postfix with an empty
//     parent_domain_matches_subdomains, the current default);
//   - in host lists, an address ("127.0.0.1", "[::1]") or a network in CIDR
//     form ("10.0.0.0/8", "[2001:db8::]/32");
//   - "/path/name" reads more patterns from that file (comments and blank
//     lines allowed);
//   - "type:table" matches when the domain (or client address) is found in
//     the table.
//
// The list is built once and is safe for concurrent use.
package matchlist

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Lookuper is the part of a lookup table a match list needs.
type Lookuper interface {
	Lookup(key string) (string, bool, error)
}

// Opener opens a "type:name" table.
type Opener func(spec string) (Lookuper, error)

type item struct {
	neg    bool
	domain string // exact domain, or ".parent" for subdomains
	prefix netip.Prefix
	table  Lookuper
	spec   string
}

// List is a compiled match list.
type List struct {
	items []item
}

// Domains compiles a domain list.
func Domains(patterns []string, open Opener) (*List, error) {
	return compile(patterns, open, false)
}

// Hosts compiles a host/network list (mynetworks and friends).
func Hosts(patterns []string, open Opener) (*List, error) {
	return compile(patterns, open, true)
}

func compile(patterns []string, open Opener, hosts bool) (*List, error) {
	l := &List{}
	if err := l.add(patterns, open, hosts, 0); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *List) add(patterns []string, open Opener, hosts bool, depth int) error {
	if depth > 5 {
		return fmt.Errorf("match list: files nested too deeply")
	}
	for _, p := range patterns {
		neg := false
		for strings.HasPrefix(p, "!") {
			neg = !neg
			p = p[1:]
		}
		if p == "" {
			continue
		}
		switch {
		case strings.HasPrefix(p, "/"):
			more, err := readFile(p)
			if err != nil {
				return err
			}
			if neg {
				return fmt.Errorf("match list: %s: a negated file name is not supported", p)
			}
			if err := l.add(more, open, hosts, depth+1); err != nil {
				return err
			}
		case isTableSpec(p):
			if open == nil {
				return fmt.Errorf("match list: %s: tables are not allowed here", p)
			}
			t, err := open(p)
			if err != nil {
				return err
			}
			l.items = append(l.items, item{neg: neg, table: t, spec: p})
		case hosts:
			pfx, err := parseNet(p)
			if err != nil {
				return err
			}
			l.items = append(l.items, item{neg: neg, prefix: pfx})
		default:
			l.items = append(l.items, item{neg: neg, domain: strings.ToLower(strings.TrimSuffix(p, "."))})
		}
	}
	return nil
}

func isTableSpec(p string) bool {
	i := strings.IndexByte(p, ':')
	if i <= 0 {
		return false
	}
	// "[::1]" and bare IPv6 addresses are not tables.
	if strings.HasPrefix(p, "[") {
		return false
	}
	for _, c := range p[:i] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func parseNet(p string) (netip.Prefix, error) {
	s := p
	bits := ""
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s, bits = s[:i], s[i+1:]
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("match list: %q: not an address or network", p)
	}
	a = a.Unmap()
	if bits == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pfx, err := netip.ParsePrefix(a.String() + "/" + bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("match list: %q: bad network: %v", p, err)
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, fmt.Errorf("match list: %q: non-null host address bits, use %s", p, pfx.Masked())
	}
	return pfx, nil
}

func readFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("match list: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		out = append(out, strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })...)
	}
	return out, sc.Err()
}

// MatchDomain reports whether domain matches the list.
func (l *List) MatchDomain(domain string) (bool, error) {
	if l == nil {
		return false, nil
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, it := range l.items {
		var hit bool
		switch {
		case it.table != nil:
			_, found, err := it.table.Lookup(domain)
			if err != nil {
				return false, fmt.Errorf("%s: lookup %s: %w", it.spec, domain, err)
			}
			hit = found
		case strings.HasPrefix(it.domain, "."):
			hit = strings.HasSuffix(domain, it.domain)
		default:
			hit = domain == it.domain
		}
		if hit {
			return !it.neg, nil
		}
	}
	return false, nil
}

// MatchAddr reports whether an IP address matches a host list.
func (l *List) MatchAddr(a netip.Addr) (bool, error) {
	if l == nil {
		return false, nil
	}
	a = a.Unmap()
	for _, it := range l.items {
		var hit bool
		switch {
		case it.table != nil:
			_, found, err := it.table.Lookup(a.String())
			if err != nil {
				return false, fmt.Errorf("%s: lookup %s: %w", it.spec, a, err)
			}
			hit = found
		case it.prefix.IsValid():
			hit = it.prefix.Contains(a)
		}
		if hit {
			return !it.neg, nil
		}
	}
	return false, nil
}

// Empty reports whether the list has no patterns.
func (l *List) Empty() bool { return l == nil || len(l.items) == 0 }

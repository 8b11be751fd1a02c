package table

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// cidrRule is one line of a cidr: table, or an if..endif block.
type cidrRule struct {
	prefix netip.Prefix
	neg    bool
	isIf   bool
	result string
	body   []cidrRule
}

type cidrTable struct {
	*patternTableSource[[]cidrRule]
}

func openCIDR(name string, o Options) (Table, error) {
	src, err := openPatternSource("cidr", name, o, parseCIDR)
	if err != nil {
		return nil, err
	}
	return cidrTable{src}, nil
}

func (cidrTable) pattern() bool { return true }

// Lookup matches an IPv4 or IPv6 address, optionally in brackets; an
// IPv4-mapped IPv6 address matches as IPv4. A key that is not an address
// is not found.
func (t cidrTable) Lookup(key string) (string, bool, error) {
	addr, err := parseCIDRAddr(key)
	if err != nil {
		return "", false, nil
	}
	v, ok := cidrSearch(*t.cur.Load(), addr)
	return v, ok, nil
}

func cidrSearch(rules []cidrRule, addr netip.Addr) (string, bool) {
	for i := range rules {
		r := &rules[i]
		if r.prefix.Contains(addr) == r.neg {
			continue
		}
		if !r.isIf {
			return r.result, true
		}
		if v, ok := cidrSearch(r.body, addr); ok {
			return v, true
		}
	}
	return "", false
}

// parseCIDRAddr parses an address, with or without [], without a zone.
func parseCIDRAddr(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, errors.New("address with a zone")
	}
	return a.Unmap(), nil
}

// parseCIDRPattern parses "address" or "address/prefix"; the address may be
// in brackets ("[2001:db8::]/32" or "[2001:db8::/32]").
func parseCIDRPattern(s string) (netip.Prefix, error) {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "[", ""), "]", "")
	addrText, bitsText, hasBits := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrText)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad network address %q", addrText)
	}
	a = a.Unmap()
	if !hasBits {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(a.String() + "/" + bitsText)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad network prefix %q", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("non-null host address bits in %q, perhaps you should use %q instead", s, m.String())
	}
	return p, nil
}

func parseCIDR(file, data string) ([]cidrRule, error) {
	lines, err := logicalLines(file, data)
	if err != nil {
		return nil, err
	}
	var (
		errs   []error
		top    []cidrRule
		stack  []*cidrRule
		lines0 []int
	)
	appendRule := func(r cidrRule) *cidrRule {
		if n := len(stack); n > 0 {
			p := stack[n-1]
			p.body = append(p.body, r)
			return &p.body[len(p.body)-1]
		}
		top = append(top, r)
		return &top[len(top)-1]
	}
	for _, l := range lines {
		fail := func(format string, a ...any) {
			errs = append(errs, &SyntaxError{file, l.no, fmt.Sprintf(format, a...)})
		}
		word, rest := firstWord(l.text)
		switch {
		case word == "endif":
			if rest != "" {
				fail("text after endif: %q", rest)
			}
			if len(stack) == 0 {
				fail("endif without if")
				continue
			}
			stack, lines0 = stack[:len(stack)-1], lines0[:len(lines0)-1]
			continue
		case word == "if":
			pat, tail := firstWord(rest)
			if tail != "" {
				fail("text after if pattern: %q", tail)
			}
			neg := strings.HasPrefix(pat, "!")
			p, err := parseCIDRPattern(strings.TrimPrefix(pat, "!"))
			if err != nil {
				fail("%v", err)
			}
			stack = append(stack, appendRule(cidrRule{prefix: p, neg: neg, isIf: true}))
			lines0 = append(lines0, l.no)
			continue
		}
		neg := strings.HasPrefix(word, "!")
		p, err := parseCIDRPattern(strings.TrimPrefix(word, "!"))
		if err != nil {
			fail("%v", err)
			continue
		}
		if rest == "" {
			fail("missing result after %q", word)
			continue
		}
		appendRule(cidrRule{prefix: p, neg: neg, result: rest})
	}
	for _, n := range lines0 {
		errs = append(errs, &SyntaxError{file, n, "if without endif"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return top, nil
}

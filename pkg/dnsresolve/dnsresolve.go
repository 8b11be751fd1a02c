// Package dnsresolve looks up what the SMTP client needs from the DNS: the
// MX records of a destination (RFC 5321 §5.1) and the IPv4/IPv6 addresses
// of a host. It asks recursive name servers directly with miekg/dns, so
// that it sees the DNS as Postfix's smtp(8) does (no /etc/hosts, no search
// list) and so that tests can point it at an in-process server.
//
// The servers come from the Postern-only main.cf parameter
// dns_resolver_address when it is set ("host:port" or "host", several
// separated by commas or spaces), otherwise from /etc/resolv.conf
// (nameserver lines; timeout and attempts options).
//
// Answers are classified the way Postfix's dns_lookup() does: a name that
// does not exist (NXDOMAIN) is a permanent NotFound error; a name with no
// record of the type asked (NODATA) is an empty answer, not an error, so
// that callers can fall back from MX to A/AAAA; server failures and
// timeouts are temporary. A domain whose only MX record has the root as
// exchange is a null MX (RFC 7505): LookupMX returns ErrNullMX. MX records
// come back sorted by preference with equal preferences shuffled
// (RFC 5321 §5.1), unless the Resolver is told not to.
//
// Security: answers are untrusted data from the network. Only answers
// whose ID and question match the query are used (miekg/dns checks the ID;
// the question is checked here); names are returned as written and
// callers use them only as host names to connect to and to log. No DNSSEC
// validation is done, so an MX host name is not authenticated (TLS levels
// that must authenticate it, "verify" and "secure", say so in
// pkg/smtpclient).
package dnsresolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// MX is one mail exchanger of a domain.
type MX struct {
	Host string // without the trailing dot
	Pref uint16
}

// ErrNullMX is returned by LookupMX for a domain that publishes a null MX
// (RFC 7505): it accepts no mail.
var ErrNullMX = errors.New("null MX")

// Error is a failed lookup.
type Error struct {
	Name      string // the name looked up
	Type      string // "MX", "A", "AAAA"
	NotFound  bool   // the name does not exist (NXDOMAIN)
	Temporary bool   // try again later
	Detail    string // e.g. "Host not found, try again"
}

// Error formats as Postfix's dns_lookup reasons: "Name service error for
// name=example.com type=MX: Host not found, try again".
func (e *Error) Error() string {
	return "Name service error for name=" + e.Name + " type=" + e.Type + ": " + e.Detail
}

// Resolver asks a fixed list of recursive servers. It is safe for
// concurrent use.
type Resolver struct {
	servers  []string // host:port
	timeout  time.Duration
	attempts int
	// NoShuffle keeps equal-preference MX records in answer order
	// (smtp_randomize_addresses = no).
	NoShuffle bool
}

// New returns a Resolver for address (dns_resolver_address); when address
// is empty it reads /etc/resolv.conf.
func New(address string) (*Resolver, error) {
	return newResolver(address, "/etc/resolv.conf")
}

// NewFromFile returns a Resolver for the servers of a resolv.conf(5) file.
func NewFromFile(resolvConf string) (*Resolver, error) {
	return newResolver("", resolvConf)
}

func newResolver(address, resolvConf string) (*Resolver, error) {
	r := &Resolver{timeout: 5 * time.Second, attempts: 2}
	if address != "" {
		for _, s := range strings.FieldsFunc(address, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' }) {
			if _, _, err := net.SplitHostPort(s); err != nil {
				s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
			}
			r.servers = append(r.servers, s)
		}
		if len(r.servers) == 0 {
			return nil, fmt.Errorf("dnsresolve: empty dns_resolver_address")
		}
		return r, nil
	}
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("dnsresolve: %w", err)
	}
	for _, s := range cc.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
	}
	if cc.Timeout > 0 {
		r.timeout = time.Duration(cc.Timeout) * time.Second
	}
	if cc.Attempts > 0 {
		r.attempts = cc.Attempts
	}
	if len(r.servers) == 0 {
		// resolv.conf(5): no nameserver line means the local host.
		r.servers = []string{"127.0.0.1:53"}
	}
	return r, nil
}

// Servers returns the servers asked, in order.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// query asks each server in turn, attempts rounds, until one answers with
// NOERROR or NXDOMAIN. A truncated UDP answer is asked again over TCP.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	udp := &dns.Client{Net: "udp", Timeout: r.timeout}
	tcp := &dns.Client{Net: "tcp", Timeout: r.timeout}
	var last error
	for range r.attempts {
		for _, srv := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			in, _, err := udp.ExchangeContext(ctx, m, srv)
			if err == nil && in.Truncated {
				in, _, err = tcp.ExchangeContext(ctx, m, srv)
			}
			if err != nil {
				last = err
				continue
			}
			if len(in.Question) != 1 || !strings.EqualFold(in.Question[0].Name, m.Question[0].Name) || in.Question[0].Qtype != qtype {
				last = errors.New("answer does not match the question")
				continue
			}
			switch in.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return in, nil
			}
			last = fmt.Errorf("server %s: %s", srv, dns.RcodeToString[in.Rcode])
		}
	}
	return nil, last
}

func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	in, err := r.query(ctx, name, qtype)
	tname := dns.TypeToString[qtype]
	if err != nil {
		return nil, &Error{Name: name, Type: tname, Temporary: true, Detail: "Host not found, try again"}
	}
	if in.Rcode == dns.RcodeNameError {
		return nil, &Error{Name: name, Type: tname, NotFound: true, Detail: "Host not found"}
	}
	var out []dns.RR
	for _, rr := range in.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	return out, nil
}

// LookupMX returns the MX records of domain sorted by preference, equal
// preferences in random order. No MX records (NODATA) is (nil, nil);
// a null MX is ErrNullMX.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	rrs, err := r.lookup(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []MX
	null := false
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		host := strings.TrimSuffix(mx.Mx, ".")
		if host == "" {
			null = true
			continue
		}
		out = append(out, MX{Host: host, Pref: mx.Preference})
	}
	if null && len(out) == 0 {
		return nil, ErrNullMX
	}
	if !r.NoShuffle {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	slices.SortStableFunc(out, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupIP returns the addresses of host: A records when v4, AAAA records
// when v6, IPv4 first. A host with neither is an Error with NotFound set
// (Postfix treats "no address" as "not found"); when one family failed
// temporarily and the other gave nothing, the error is temporary.
func (r *Resolver) LookupIP(ctx context.Context, host string, v4, v6 bool) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	var out []netip.Addr
	var firstErr *Error
	types := []uint16{}
	if v4 {
		types = append(types, dns.TypeA)
	}
	if v6 {
		types = append(types, dns.TypeAAAA)
	}
	for _, t := range types {
		rrs, err := r.lookup(ctx, host, t)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && (firstErr == nil || e.Temporary) {
				firstErr = e
			}
			continue
		}
		for _, rr := range rrs {
			var ip net.IP
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if firstErr != nil {
		return nil, firstErr
	}
	t := "A"
	if !v4 {
		t = "AAAA"
	}
	return nil, &Error{Name: host, Type: t, NotFound: true, Detail: "Host found but no data record of requested type"}
}

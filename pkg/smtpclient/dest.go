// Next hops: parsing them and finding the servers to try (RFC 5321 §5).

package smtpclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"postern/pkg/dnsresolve"
)

// destination is one parsed next hop.
type destination struct {
	raw  string // as written; key for SASL passwords and the cache
	host string // domain or host name, or an address, without brackets
	port int
	mx   bool   // look up MX records for host
	path string // LMTP unix socket
}

// Well-known ports, for when /etc/services has no entry.
var knownPorts = map[string]int{"smtp": 25, "lmtp": 24, "submission": 587, "submissions": 465, "smtps": 465}

func parsePort(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65536 {
		return n, nil
	}
	if n, ok := knownPorts[strings.ToLower(s)]; ok {
		return n, nil
	}
	if n, err := net.LookupPort("tcp", s); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("bad port %q", s)
}

// parseNexthop reads one next hop. SMTP (Postfix smtp(8)): "[host]:port"
// and "[host]" mean that host, no MX lookup; "host:port" and "host" mean
// an MX lookup for host; "inet:" in front is allowed. LMTP (lmtp(8)):
// "unix:/path", or "inet:host:port", "host:port", "[host]:port", "host"
// with no MX lookup. defPort is smtp_tcp_port or lmtp_tcp_port.
func parseNexthop(s string, lmtp bool, defPort int) (destination, error) {
	d := destination{raw: s, port: defPort, mx: !lmtp}
	rest := s
	if p, ok := strings.CutPrefix(rest, "unix:"); ok {
		if !lmtp {
			return d, fmt.Errorf("unix-domain next hop %q needs the lmtp transport", s)
		}
		if p == "" {
			return d, fmt.Errorf("empty socket path in %q", s)
		}
		d.path, d.mx = p, false
		return d, nil
	}
	rest = strings.TrimPrefix(rest, "inet:")
	host := rest
	port := ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return d, fmt.Errorf("bad next hop %q: missing ']'", s)
		}
		host = rest[1:end]
		tail := rest[end+1:]
		if tail != "" {
			p, ok := strings.CutPrefix(tail, ":")
			if !ok {
				return d, fmt.Errorf("bad next hop %q", s)
			}
			port = p
		}
		d.mx = false
		if h, ok := strings.CutPrefix(strings.ToLower(host), "ipv6:"); ok {
			host = h
		}
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 && strings.Count(rest, ":") == 1 {
		host, port = rest[:i], rest[i+1:]
	}
	if port != "" {
		n, err := parsePort(port)
		if err != nil {
			return d, fmt.Errorf("bad next hop %q: %v", s, err)
		}
		d.port = n
	}
	if host == "" {
		return d, fmt.Errorf("empty host in next hop %q", s)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		d.mx = false
	}
	d.host = strings.TrimSuffix(host, ".")
	return d, nil
}

// splitNexthops reads a next-hop list ("[a]:587, [b]:587"), as Postfix
// 3.5 and later accept in relayhost and transport next hops.
func splitNexthops(s string) []string {
	return strings.FieldsFunc(s, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' })
}

// hostResolver is what the agent needs from the DNS; dnsresolve.Resolver
// implements it, tests may give another.
type hostResolver interface {
	LookupMX(ctx context.Context, domain string) ([]dnsresolve.MX, error)
	LookupIP(ctx context.Context, host string, v4, v6 bool) ([]netip.Addr, error)
}

// targets lists the servers of d, in the order to try them.
func (a *Agent) targets(ctx context.Context, d destination) ([]target, *failure) {
	if d.path != "" {
		return []target{{name: a.myhostname, path: d.path}}, nil
	}
	type host struct{ name string }
	var hosts []host
	if d.mx {
		mxs, err := a.res.LookupMX(ctx, d.host)
		var de *dnsresolve.Error
		switch {
		case errors.Is(err, dnsresolve.ErrNullMX):
			return nil, &failure{dsn: "5.1.10", text: "Domain " + d.host + " does not accept mail (nullMX)"}
		case errors.As(err, &de):
			return nil, dnsFailure(de)
		case err != nil:
			return nil, &failure{dsn: "4.4.3", text: "Host or domain name not found. " + err.Error()}
		}
		if len(mxs) == 0 {
			hosts = []host{{d.host}}
		} else {
			// Mail to ourselves through an MX list that names us would
			// loop: keep only the hosts preferred over us (RFC 5321
			// §5.1).
			for i, mx := range mxs {
				if strings.EqualFold(mx.Host, a.myhostname) {
					mxs = mxs[:i]
					for len(mxs) > 0 && mxs[len(mxs)-1].Pref >= mx.Pref {
						mxs = mxs[:len(mxs)-1]
					}
					if len(mxs) == 0 {
						return nil, &failure{dsn: "5.4.6", text: "mail for " + d.host + " loops back to myself"}
					}
					break
				}
			}
			for _, mx := range mxs {
				hosts = append(hosts, host{mx.Host})
			}
		}
	} else {
		hosts = []host{{d.host}}
	}
	var out []target
	var lastErr *dnsresolve.Error
	temporary := false
	for _, h := range hosts {
		addrs, err := a.lookupIP(ctx, h.name)
		if err != nil {
			var de *dnsresolve.Error
			if errors.As(err, &de) {
				lastErr = de
				temporary = temporary || de.Temporary
			} else {
				temporary = true
				lastErr = &dnsresolve.Error{Name: h.name, Type: "A", Temporary: true, Detail: err.Error()}
			}
			continue
		}
		for _, ad := range addrs {
			out = append(out, target{name: h.name, addr: ad, port: d.port})
			if a.addrLimit > 0 && len(out) >= a.addrLimit {
				return out, nil
			}
		}
	}
	if len(out) == 0 {
		if lastErr == nil {
			return nil, &failure{dsn: "4.4.3", text: "no address found for " + d.host}
		}
		lastErr.Temporary = temporary
		return nil, dnsFailure(lastErr)
	}
	return out, nil
}

// dnsFailure words a lookup error as Postfix: "Host or domain name not
// found. Name service error for name=... type=...: Host not found".
func dnsFailure(de *dnsresolve.Error) *failure {
	f := &failure{dsn: "5.4.4", text: "Host or domain name not found. " + de.Error()}
	if de.Temporary {
		f.dsn = "4.4.3"
		f.next = true
	}
	return f
}

// lookupIP finds a host's addresses per smtp_host_lookup and
// inet_protocols.
func (a *Agent) lookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if ad, err := netip.ParseAddr(host); err == nil {
		if (ad.Is4() && !a.v4) || (ad.Is6() && !a.v6) {
			return nil, &dnsresolve.Error{Name: host, Type: "A", NotFound: true, Detail: "address family disabled by inet_protocols"}
		}
		return []netip.Addr{ad}, nil
	}
	var err error
	if a.hostDNS {
		var addrs []netip.Addr
		addrs, err = a.res.LookupIP(ctx, host, a.v4, a.v6)
		if err == nil || !a.hostNative {
			return addrs, err
		}
	}
	netw := "ip"
	switch {
	case a.v4 && !a.v6:
		netw = "ip4"
	case a.v6 && !a.v4:
		netw = "ip6"
	}
	addrs, nerr := net.DefaultResolver.LookupNetIP(ctx, netw, host)
	if nerr != nil {
		if err != nil {
			return nil, err
		}
		var dnsErr *net.DNSError
		if errors.As(nerr, &dnsErr) && dnsErr.IsNotFound {
			return nil, &dnsresolve.Error{Name: host, Type: "A", NotFound: true, Detail: "Host not found"}
		}
		return nil, &dnsresolve.Error{Name: host, Type: "A", Temporary: true, Detail: "Host not found, try again"}
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

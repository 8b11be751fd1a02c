// Package dnstest runs a small authoritative-style DNS server on loopback
// for tests, as net/http/httptest does for HTTP: give it records in zone
// file syntax, point dns_resolver_address at Addr, and the code under test
// sees those records and nothing else.
//
// Names with no record of the asked type but with records of another type
// answer NODATA; unknown names answer NXDOMAIN; names marked with
// ServFail answer SERVFAIL. It answers over UDP and TCP on the same port.
//
// Security: test code only. It listens on 127.0.0.1 and answers anyone
// who asks there.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a running test DNS server.
type Server struct {
	Addr string // "127.0.0.1:port", for dns_resolver_address

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool
	queries  int

	udp, tcp *dns.Server
}

// New starts a server with the given records ("example.com. MX 10
// mx.example.com.", TTL and class optional) and stops it when t ends.
func New(t testing.TB, records ...string) *Server {
	t.Helper()
	s := &Server{rrs: map[string][]dns.RR{}, servfail: map[string]bool{}}
	for _, r := range records {
		s.Add(t, r)
	}
	// The UDP port the kernel picks may be taken for TCP (by another
	// test's listener or a connection's local port): try other ports.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if attempt == 20 {
			t.Fatal(err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("dnstest: server did not start")
		}
	}
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	return s
}

// Add adds one record in zone file syntax.
func (s *Server) Add(t testing.TB, record string) {
	t.Helper()
	rr, err := dns.NewRR(record)
	if err != nil {
		t.Fatalf("dnstest: bad record %q: %v", record, err)
	}
	name := strings.ToLower(rr.Header().Name)
	s.mu.Lock()
	s.rrs[name] = append(s.rrs[name], rr)
	s.mu.Unlock()
}

// ServFail makes every query for name answer SERVFAIL.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	s.servfail[strings.ToLower(dns.Fqdn(name))] = true
	s.mu.Unlock()
}

// Queries returns how many queries the server answered.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	s.mu.Lock()
	s.queries++
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		rrs, known := s.rrs[name]
		switch {
		case s.servfail[name]:
			m.Rcode = dns.RcodeServerFailure
		case !known:
			m.Rcode = dns.RcodeNameError
		default:
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
		}
	}
	s.mu.Unlock()
	w.WriteMsg(m)
}

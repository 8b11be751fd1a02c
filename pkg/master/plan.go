package master

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"postern/pkg/config"
	"postern/pkg/mastercf"
	"postern/pkg/queue"
)

// aliases maps a Postfix program to the Postern program that does its
// job when run under the Postfix name (argv[0] tells it which role).
var aliases = map[string]string{
	"virtual": "local",
	"lmtp":    "smtp",
	"oqmgr":   "qmgr",
}

// builtIn says, for each Postfix program Postern has no binary for, which
// Postern program does its job or why it is not needed. The master logs
// this once per service and skips the service.
var builtIn = map[string]string{
	"trivial-rewrite": "address rewriting and resolution are built into qmgr and cleanup",
	"bounce":          "non-delivery, delay and success notices are built into qmgr",
	"defer":           "delay notices are built into qmgr",
	"trace":           "delivery reports are built into qmgr",
	"verify":          "address verification is not offered by Postern",
	"flush":           "\"postern flush\" asks qmgr to retry the deferred queue",
	"proxymap":        "every daemon reads its lookup tables itself",
	"error":           "the error and retry transports are built into qmgr",
	"retry":           "the error and retry transports are built into qmgr",
	"discard":         "the discard transport is built into qmgr",
	"anvil":           "connection and rate limits are kept inside smtpd",
	"scache":          "connection caching is kept inside smtp",
	"tlsmgr":          "smtpd and smtp keep their TLS session caches themselves",
	"postlogd":        "every daemon writes maillog_file directly",
	"postscreen":      "smtpd accepts connections itself",
	"dnsblog":         "smtpd makes its DNS lookups itself",
	"tlsproxy":        "smtpd handles TLS itself",
	"spawn":           "Postern has no spawn service",
	"pipe":            "Postern has no pipe delivery agent",
}

// Plan is what the master does with one master.cf service.
type Plan struct {
	Service mastercf.Service
	Path    string // executable to run
	Argv0   string // argv[0]: the master.cf command name, which picks the role
	// Skip, when not empty, is why the service is not run: one log line.
	Skip string
}

// Resolve decides how to run s from daemonDir. A service is run when
// daemonDir holds its command, or the Postern program that plays that
// role (virtual → local, lmtp → smtp, oqmgr → qmgr); unix-dgram, pass
// and the Postfix programs whose job Postern does elsewhere are skipped
// with the reason in Plan.Skip.
func Resolve(s mastercf.Service, daemonDir string) Plan {
	p := Plan{Service: s, Argv0: s.Command}
	switch s.Type {
	case mastercf.TypeUnixDgram:
		p.Skip = fmt.Sprintf("service %s (%s): unix-dgram services are not needed; %s", s.Key(), s.Command, builtIn["postlogd"])
		return p
	case mastercf.TypePass:
		p.Skip = fmt.Sprintf("service %s (%s): pass services are not supported", s.Key(), s.Command)
		return p
	}
	if strings.Contains(s.Command, "/") {
		p.Skip = fmt.Sprintf("service %s: command %q must be a program name in daemon_directory", s.Key(), s.Command)
		return p
	}
	if path := filepath.Join(daemonDir, s.Command); executable(path) {
		p.Path = path
		return p
	}
	if a, ok := aliases[s.Command]; ok {
		if path := filepath.Join(daemonDir, a); executable(path) {
			p.Path = path
			return p
		}
		p.Skip = fmt.Sprintf("service %s (%s): no Postern program %s in %s", s.Key(), s.Command, a, daemonDir)
		return p
	}
	if why, ok := builtIn[s.Command]; ok {
		p.Skip = fmt.Sprintf("service %s (%s) not started: %s", s.Key(), s.Command, why)
		return p
	}
	p.Skip = fmt.Sprintf("service %s not started: no program %s in %s", s.Key(), s.Command, daemonDir)
	return p
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Address is one listening socket of a service.
type Address struct {
	Network string // "tcp", "tcp4", "tcp6" or "unix"
	Address string // host:port, or a socket path
}

// String is the form used in the worker's EnvListen: "inet:host:port" or
// "unix:path".
func (a Address) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Address
	}
	return "inet:" + a.Address
}

// Addresses returns the sockets the master opens for s. An inet service
// named "host:port" or "[v6addr]:port" listens there; a bare port (or
// service name such as "smtp") listens on every address of
// inet_interfaces: "all" is the wildcard of each protocol of
// inet_protocols (one dual-stack socket when both), "loopback-only" is
// 127.0.0.1 and/or ::1. unix and fifo services are sockets in
// $queue_directory/private (private=y) or public.
func Addresses(cfg *config.Config, s mastercf.Service) ([]Address, error) {
	switch s.Type {
	case mastercf.TypeUnix, mastercf.TypeFifo:
		dir := queue.Public
		if s.Private {
			dir = queue.Private
		}
		return []Address{{"unix", filepath.Join(cfg.Get("queue_directory"), dir, s.Name)}}, nil
	case mastercf.TypeInet:
	default:
		return nil, fmt.Errorf("service %s: type %s has no listener", s.Key(), s.Type)
	}
	if host, port, err := net.SplitHostPort(s.Name); err == nil {
		return []Address{{hostNetwork(host), net.JoinHostPort(host, port)}}, nil
	}
	port := s.Name
	v4, v6 := false, false
	for _, p := range cfg.List("inet_protocols") {
		switch strings.ToLower(p) {
		case "all":
			v4, v6 = true, true
		case "ipv4":
			v4 = true
		case "ipv6":
			v6 = true
		default:
			return nil, fmt.Errorf("inet_protocols: unknown protocol %q", p)
		}
	}
	if !v4 && !v6 {
		return nil, fmt.Errorf("inet_protocols: no protocol enabled")
	}
	var out []Address
	for _, iface := range cfg.List("inet_interfaces") {
		switch strings.ToLower(iface) {
		case "all":
			switch {
			case v4 && v6:
				out = append(out, Address{"tcp", ":" + port})
			case v4:
				out = append(out, Address{"tcp4", "0.0.0.0:" + port})
			default:
				out = append(out, Address{"tcp6", "[::]:" + port})
			}
		case "loopback-only":
			if v4 {
				out = append(out, Address{"tcp4", "127.0.0.1:" + port})
			}
			if v6 {
				out = append(out, Address{"tcp6", "[::1]:" + port})
			}
		default:
			host := strings.TrimSuffix(strings.TrimPrefix(iface, "["), "]")
			if ip := net.ParseIP(host); ip != nil && ((ip.To4() != nil && !v4) || (ip.To4() == nil && !v6)) {
				continue
			}
			out = append(out, Address{hostNetwork(host), net.JoinHostPort(host, port)})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("service %s: inet_interfaces has no address for inet_protocols", s.Key())
	}
	return out, nil
}

func hostNetwork(host string) string {
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return "tcp"
	case ip.To4() != nil:
		return "tcp4"
	default:
		return "tcp6"
	}
}

// TLS policy of the client: smtp_tls_security_level and friends.

package smtpclient

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// TLS security levels (postconf(5) smtp_tls_security_level).
const (
	levelNone    = "none"
	levelMay     = "may"
	levelEncrypt = "encrypt"
	levelVerify  = "verify"
	levelSecure  = "secure"
)

// tlsPolicy is the TLS configuration of one agent.
type tlsPolicy struct {
	level      string
	wrapper    bool // smtp_tls_wrappermode: TLS from the first byte (port 465)
	roots      *x509.CertPool
	minVersion uint16
	servername string // smtp_tls_servername: "", "hostname", "nexthop" or a name
	verifyName []string
	secureName []string
	certs      []tls.Certificate
}

// mandatory reports whether the session must be encrypted.
func (p *tlsPolicy) mandatory() bool {
	return p.wrapper || p.level == levelEncrypt || p.level == levelVerify || p.level == levelSecure
}

// verifyError is a certificate that did not pass the policy.
type verifyError struct{ msg string }

func (e *verifyError) Error() string { return e.msg }

// parseTLSLevel maps the level names Postern knows; dane falls back to
// may, as Postfix does without DNSSEC; dane-only and fingerprint are not
// implemented and refuse to run rather than deliver with less security
// than asked.
func parseTLSLevel(s string) (string, error) {
	switch strings.ToLower(s) {
	case "", levelNone:
		return levelNone, nil
	case levelMay, "dane":
		return levelMay, nil
	case levelEncrypt:
		return levelEncrypt, nil
	case levelVerify:
		return levelVerify, nil
	case levelSecure:
		return levelSecure, nil
	}
	return "", fmt.Errorf("unsupported TLS security level %q", s)
}

// minTLSVersion reads a Postfix protocol list (">=TLSv1.2",
// "!SSLv2, !SSLv3, !TLSv1") as the lowest version allowed.
func minTLSVersion(list []string) uint16 {
	versions := []struct {
		name string
		v    uint16
	}{{"TLSV1", tls.VersionTLS10}, {"TLSV1.1", tls.VersionTLS11}, {"TLSV1.2", tls.VersionTLS12}, {"TLSV1.3", tls.VersionTLS13}}
	min := uint16(tls.VersionTLS10)
	for _, item := range list {
		item = strings.ToUpper(strings.TrimSpace(item))
		if v, ok := strings.CutPrefix(item, ">="); ok {
			for _, x := range versions {
				if x.name == v && x.v > min {
					min = x.v
				}
			}
			continue
		}
		if v, ok := strings.CutPrefix(item, "!"); ok {
			// Excluding the lowest allowed version raises the floor.
			for i, x := range versions {
				if x.name == v && x.v == min && i+1 < len(versions) {
					min = versions[i+1].v
				}
			}
		}
	}
	return min
}

// loadRoots reads smtp_tls_CAfile and smtp_tls_CApath; with neither, the
// system roots are used.
func loadRoots(file, dir string) (*x509.CertPool, error) {
	if file == "" && dir == "" {
		return x509.SystemCertPool()
	}
	pool := x509.NewCertPool()
	add := func(p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("%s: no PEM certificates", p)
		}
		return nil
	}
	if file != "" {
		if err := add(file); err != nil {
			return nil, err
		}
	}
	if dir != "" {
		names, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, n := range names {
			if st, err := os.Stat(n); err == nil && st.Mode().IsRegular() {
				add(n)
			}
		}
	}
	return pool, nil
}

// config builds the tls.Config for one server: host is the server's name
// (MX host or nexthop host), nexthop the destination domain.
func (p *tlsPolicy) config(host, nexthop string) *tls.Config {
	c := &tls.Config{
		InsecureSkipVerify: true, // verified below by policy, not by Go's default
		MinVersion:         p.minVersion,
		Certificates:       p.certs,
	}
	switch p.servername {
	case "":
		// As Postfix: no SNI unless smtp_tls_servername asks for one
		// (a smart host behind a shared front end wants "hostname").
		// Verification does not depend on it (VerifyConnection below).
	case "hostname":
		c.ServerName = host
	case "nexthop":
		c.ServerName = nexthop
	default:
		c.ServerName = p.servername
	}
	if net.ParseIP(c.ServerName) != nil {
		c.ServerName = ""
	}
	var names []string
	switch p.level {
	case levelVerify:
		names = matchNames(p.verifyName, host, nexthop)
	case levelSecure:
		names = matchNames(p.secureName, host, nexthop)
	default:
		return c
	}
	roots := p.roots
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &verifyError{"no server certificate"}
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
			return &verifyError{"untrusted issuer: " + err.Error()}
		}
		for _, n := range names {
			if strings.HasPrefix(n, ".") {
				for _, dn := range leaf.DNSNames {
					if strings.HasSuffix(strings.ToLower(dn), n) && len(dn) > len(n) {
						return nil
					}
				}
				continue
			}
			if leaf.VerifyHostname(n) == nil {
				return nil
			}
		}
		return &verifyError{"name mismatch: certificate does not match " + strings.Join(names, ", ")}
	}
	return c
}

// matchNames expands smtp_tls_verify_cert_match/secure_cert_match
// strategies: "hostname", "nexthop", "dot-nexthop", or literal names.
func matchNames(strategies []string, host, nexthop string) []string {
	var out []string
	for _, s := range strategies {
		switch strings.ToLower(s) {
		case "hostname":
			out = append(out, host)
		case "nexthop":
			out = append(out, nexthop)
		case "dot-nexthop":
			out = append(out, "."+strings.ToLower(nexthop))
		default:
			out = append(out, s)
		}
	}
	return out
}

// loadKeyPair reads the client certificate (smtp_tls_cert_file) and its
// key (smtp_tls_key_file, by default the same file).
func loadKeyPair(cert, key string) ([]tls.Certificate, error) {
	if key == "" {
		key = cert
	}
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	return []tls.Certificate{c}, nil
}

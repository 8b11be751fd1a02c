// SASL client authentication (RFC 4954) with PLAIN (RFC 4616) and LOGIN.

package smtpclient

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// saslMechs are the mechanisms Postern's client speaks, in order of
// preference. Both send the password in the clear, so both are
// "plaintext" for smtp_sasl_security_options.
var saslMechs = []string{"PLAIN", "LOGIN"}

// pickMech returns the first mechanism of ours that the server offers
// (its AUTH parameters), that passes filter (smtp_sasl_mechanism_filter,
// empty = any) and that the security options allow; "" if none.
func pickMech(offered string, filter []string, options []string) string {
	if slices.ContainsFunc(options, func(o string) bool { return strings.EqualFold(o, "noplaintext") }) {
		return ""
	}
	off := strings.Fields(strings.ToUpper(offered))
	for _, m := range saslMechs {
		if !slices.Contains(off, m) {
			continue
		}
		if len(filter) > 0 && !slices.ContainsFunc(filter, func(f string) bool { return strings.EqualFold(f, m) }) {
			continue
		}
		return m
	}
	return ""
}

// authenticate runs the AUTH exchange. It returns the server's last
// reply and an I/O error, if any; the caller judges the reply.
func (s *session) authenticate(mech, user, pass string) (Reply, error) {
	b64 := base64.StdEncoding.EncodeToString
	switch mech {
	case "PLAIN":
		return s.cmd(s.t.helo, "AUTH PLAIN "+b64([]byte("\x00"+user+"\x00"+pass)))
	case "LOGIN":
		r, err := s.cmd(s.t.helo, "AUTH LOGIN")
		if err != nil || r.Code != 334 {
			return r, err
		}
		r, err = s.cmd(s.t.helo, b64([]byte(user)))
		if err != nil || r.Code != 334 {
			return r, err
		}
		return s.cmd(s.t.helo, b64([]byte(pass)))
	}
	return Reply{}, fmt.Errorf("unsupported SASL mechanism %s", mech)
}

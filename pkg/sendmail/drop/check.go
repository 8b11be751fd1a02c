package drop

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"postern/pkg/address"
	"postern/pkg/config"
	"postern/pkg/table"
)

// LoginName returns the login name of uid, or "" if the password
// database has none.
func LoginName(uid int) string {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return ""
	}
	return u.Username
}

// CheckSubmit applies authorized_submit_users to uid, as Postfix's
// check_user_acl_byuid: a value starting with "static:" admits everyone
// without a lookup; otherwise the login name ("unknown" for a uid without
// a password entry) is matched against the list, first match wins, a
// leading '!' negates, "type:table" matches when the name is a key, and
// "/file" reads more patterns from a file. No match refuses.
func CheckSubmit(cfg *config.Config, uid int) error {
	return checkUserACL(cfg, "authorized_submit_users", uid, "submit mail")
}

// CheckMailq applies authorized_mailq_users to uid, as CheckSubmit.
func CheckMailq(cfg *config.Config, uid int) error {
	return checkUserACL(cfg, "authorized_mailq_users", uid, "view the mail queue")
}

// CheckFlush applies authorized_flush_users to uid, as CheckSubmit.
func CheckFlush(cfg *config.Config, uid int) error {
	return checkUserACL(cfg, "authorized_flush_users", uid, "flush the mail queue")
}

func checkUserACL(cfg *config.Config, param string, uid int, what string) error {
	acl := cfg.Get(param)
	if strings.HasPrefix(acl, "static:") {
		return nil
	}
	name := LoginName(uid)
	if name == "" {
		name = "unknown"
	}
	ok, err := matchList(config.SplitList(acl), name, 0)
	if err != nil {
		return &Refusal{Status: StatusTemp, Text: fmt.Sprintf("%s: %v", param, err)}
	}
	if !ok {
		return &Refusal{Status: StatusNoPerm, Text: fmt.Sprintf("User %s(%d) is not allowed to %s", name, uid, what)}
	}
	return nil
}

// matchList is Postfix's string_list_match for a login name.
func matchList(patterns []string, name string, depth int) (bool, error) {
	if depth > 10 {
		return false, fmt.Errorf("pattern files nested too deeply")
	}
	for _, p := range patterns {
		neg := false
		for strings.HasPrefix(p, "!") {
			neg = !neg
			p = p[1:]
		}
		var hit bool
		switch {
		case strings.HasPrefix(p, "/"):
			sub, err := readPatterns(p)
			if err != nil {
				return false, err
			}
			m, err := matchList(sub, name, depth+1)
			if err != nil {
				return false, err
			}
			hit = m
		case strings.Contains(p, ":"):
			t, err := table.Open(p, table.Options{NoWatch: true})
			if err != nil {
				return false, err
			}
			_, found, err := t.Lookup(name)
			t.Close()
			if err != nil {
				return false, err
			}
			hit = found
		default:
			hit = strings.EqualFold(p, name)
		}
		if hit {
			return !neg, nil
		}
	}
	return false, nil
}

func readPatterns(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		out = append(out, config.SplitList(line)...)
	}
	return out, sc.Err()
}

// NullSenderKey is the sender pattern that matches the null sender in
// local_login_sender_maps (Postfix's
// empty_address_local_login_sender_maps_lookup_key default).
const NullSenderKey = "<>"

// CheckSender applies local_login_sender_maps (Postfix 3.6): the tables
// are searched with the login name of uid ("uid:N" without a password
// entry) and return sender patterns separated by commas or spaces. A
// pattern "*" allows any sender, "<>" the null sender, "@domain" any
// address in that domain; any other pattern must equal the sender with
// its address extension (recipient_delimiter) removed, case-insensitively.
// No entry, or no matching pattern, refuses; a table error is temporary.
// The default, static:*, allows everything without a lookup.
func CheckSender(cfg *config.Config, uid int, sender string) error {
	maps := strings.TrimSpace(cfg.Get("local_login_sender_maps"))
	if maps == "static:*" {
		return nil
	}
	if strings.ContainsAny(sender, "\x00\r\n") {
		return &Refusal{Status: StatusBad, Text: "NUL or line break in sender"}
	}
	login := LoginName(uid)
	if login == "" {
		login = "uid:" + strconv.Itoa(uid)
	}
	m, err := table.OpenMaps(maps, table.Options{NoWatch: true})
	if err != nil {
		return &Refusal{Status: StatusTemp, Text: fmt.Sprintf("local_login_sender_maps table lookup error for '%s'", maps)}
	}
	defer m.Close()
	patterns, found, err := m.Lookup(login)
	if err != nil {
		return &Refusal{Status: StatusTemp, Text: fmt.Sprintf("local_login_sender_maps table lookup error for '%s'", maps)}
	}
	if found && SenderMatches(patterns, sender, cfg.Get("recipient_delimiter")) {
		return nil
	}
	return &Refusal{Status: StatusNoPerm, Text: fmt.Sprintf("not authorized to use sender='%s'", sender)}
}

// SenderMatches reports whether sender matches one of the patterns of a
// local_login_sender_maps result (see CheckSender).
func SenderMatches(patterns, sender, delims string) bool {
	var stripped string
	done := false
	for _, p := range splitPatterns(patterns) {
		switch {
		case strings.HasPrefix(p, "@"):
			if i := strings.LastIndexByte(sender, '@'); i >= 0 && strings.EqualFold(p, sender[i:]) {
				return true
			}
		case p == "*":
			return true
		case strings.EqualFold(p, NullSenderKey):
			if sender == "" {
				return true
			}
		default:
			if !done {
				stripped, done = externalStripped(sender, delims), true
			}
			if strings.EqualFold(p, stripped) {
				return true
			}
		}
	}
	return false
}

// externalStripped removes the address extension and quotes the local
// part where RFC 5322 needs it (Postfix strip_addr + quote_822_local).
func externalStripped(addr, delims string) string {
	local, domain := address.Split(addr)
	if delims != "" {
		local, _ = address.StripExtension(local, delims)
	}
	if needsQuote(local) {
		local = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(local) + `"`
	}
	if domain == "" && !strings.Contains(addr, "@") {
		return local
	}
	return local + "@" + domain
}

func needsQuote(local string) bool {
	if local == "" {
		return false
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return true
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"[]`, c) >= 0 {
			return true
		}
	}
	return false
}

// splitPatterns splits on commas and white space, keeping double-quoted
// text together (Postfix mystrtokdq).
func splitPatterns(s string) []string {
	var out []string
	var b strings.Builder
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(s):
			b.WriteByte(c)
			i++
			b.WriteByte(s[i])
		case c == '"':
			inQuote = !inQuote
			b.WriteByte(c)
		case !inQuote && (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n'):
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
		default:
			b.WriteByte(c)
		}
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

package local

// Pure pieces of local(8) delivery: what an alias or .forward entry is,
// how .forward files are read, and how forward_path, mailbox_command and
// command_execution_directory are expanded with per-recipient attributes.

import (
	"strings"

	"postern/pkg/config"
	"postern/pkg/table"
)

// destKind is what an aliases(5) right-hand side element names.
type destKind int

const (
	destAddress destKind = iota // re-injected as a new message
	destSelf                    // the recipient itself: deliver to its mailbox
	destCommand                 // |command
	destFile                    // /file or /maildir/
	destInclude                 // :include:/file
)

// destination is one element of an alias value, .forward or :include: file.
type destination struct {
	kind  destKind
	value string // address, command, path
}

// classify sorts one alias value element. name is the local part being
// expanded (folded to lower case) and addr the full recipient address: an
// element naming either is the recipient itself (aliases(5): "an address
// found in its own alias expansion is delivered to the user"), as is a
// backslash-escaped name ("\user", sendmail's way of saying "no further
// aliasing").
func classify(elem, name, addr string) destination {
	switch {
	case strings.HasPrefix(elem, "|"):
		return destination{destCommand, strings.TrimSpace(elem[1:])}
	case strings.HasPrefix(elem, "/"):
		return destination{destFile, elem}
	case len(elem) >= len(":include:") && strings.EqualFold(elem[:len(":include:")], ":include:"):
		return destination{destInclude, strings.TrimSpace(elem[len(":include:"):])}
	}
	if strings.HasPrefix(elem, "\\") {
		e := strings.TrimPrefix(elem, "\\")
		if strings.EqualFold(e, name) || strings.EqualFold(e, addr) {
			return destination{destSelf, e}
		}
		return destination{destAddress, e}
	}
	if strings.EqualFold(elem, name) || strings.EqualFold(elem, addr) {
		return destination{destSelf, elem}
	}
	return destination{destAddress, elem}
}

// parseForward reads the text of a .forward file: logical lines as in
// aliases(5) (blank and '#' lines ignored, a line starting with white
// space continues the previous one), each a comma-separated list of
// destinations.
func parseForward(data string) []string {
	var lines []string
	for _, l := range strings.Split(data, "\n") {
		l = strings.TrimRight(l, "\r")
		t := strings.TrimSpace(l)
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
			continue
		case (l[0] == ' ' || l[0] == '\t') && len(lines) > 0:
			lines[len(lines)-1] += " " + t
		default:
			lines = append(lines, t)
		}
	}
	var out []string
	for _, l := range lines {
		out = append(out, table.SplitAliasValue(l)...)
	}
	return out
}

// attrs are the per-recipient attributes local(8) interpolates into
// forward_path, mailbox_command, command_execution_directory and
// luser_relay ($mailbox is $local, as in Postfix's local_expand).
type attrs struct {
	user, home, shell, recipient, extension, domain, local, delimiter string
}

func (a *attrs) value(name string) (string, bool) {
	switch name {
	case "user":
		return a.user, true
	case "home":
		return a.home, true
	case "shell":
		return a.shell, true
	case "recipient":
		return a.recipient, true
	case "extension":
		return a.extension, true
	case "domain":
		return a.domain, true
	case "local", "mailbox":
		return a.local, true
	case "recipient_delimiter":
		return a.delimiter, true
	}
	return "", false
}

// filterChars replaces every byte of s not in allowed with '_' (Postfix's
// *_expansion_filter: attribute values must not carry shell or file
// system syntax into a path or a command).
func filterChars(s, allowed string) string {
	b := []byte(s)
	for i, c := range b {
		if strings.IndexByte(allowed, c) < 0 {
			b[i] = '_'
		}
	}
	return string(b)
}

// expandAttrs expands raw with the recipient's attributes, each filtered
// through allowed. undef reports that an empty attribute was used, which
// makes Postfix skip a forward_path element.
func expandAttrs(cfg *config.Config, raw string, a *attrs, allowed string) (out string, undef bool, err error) {
	out, err = cfg.ExpandWith(raw, func(name string) (string, bool) {
		v, ok := a.value(name)
		if !ok {
			return "", false
		}
		if v == "" {
			undef = true
		}
		return filterChars(v, allowed), true
	})
	return out, undef, err
}

// expandAddress expands luser_relay: the attributes unfiltered, as
// Postfix passes no filter there (the result is an address, never a path
// or a command).
func expandAddress(cfg *config.Config, raw string, a *attrs) (string, error) {
	return cfg.ExpandWith(raw, a.value)
}

// forwardPaths expands forward_path: its elements in order, each expanded
// on its own; elements using an attribute that is empty (such as
// ${extension} for an address without one) are left out.
func forwardPaths(cfg *config.Config, a *attrs) []string {
	var out []string
	for _, elem := range config.SplitList(cfg.Get("forward_path")) {
		p, undef, err := expandAttrs(cfg, elem, a, cfg.Get("forward_expansion_filter"))
		if err != nil || undef || p == "" {
			continue
		}
		out = append(out, p)
	}
	return out
}

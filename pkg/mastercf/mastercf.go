// Package mastercf reads master.cf, the table of services the master
// process runs, exactly as Postfix's master(5) describes it.
//
// # File format
//
// Comment, blank and continuation lines are handled as in main.cf
// (config.ScanLogical). Each logical line has eight columns and then the
// command's arguments:
//
//		service type private unpriv chroot wakeup maxproc command [args...]
//
//	  - service: a name (unix, unix-dgram, fifo, pass) or, for inet,
//	    "host:port" or "port";
//	  - type: inet, unix, unix-dgram, fifo or pass;
//	  - private, unpriv, chroot: y or n; "-" gives the default (private y,
//	    unpriv y, chroot n, as in Postfix 3.x; inet services are never
//	    private);
//	  - wakeup: seconds between wake-up triggers; "N?" sends them only once
//	    the service has been used; "-" or 0 means none;
//	  - maxproc: the largest number of concurrent sessions; "-" means
//	    default_process_limit, 0 means no limit;
//	  - command: the program name (looked up in daemon_directory) and its
//	    arguments.
//
// Arguments are separated by white space; an argument in braces ("{ text
// with spaces }", Postfix 3.0) is one argument with the braces and the
// white space just inside them removed. Braces inside an argument
// ("${recipient}") are balanced and kept. As the daemons' getopt does,
// the leading options of the command are examined: "-o name=value",
// "-oname=value" and "-o { name = value }" become Overrides (in order;
// the later of two for one name wins when applied); every other argument
// stays in Args in order. Option processing stops at the first
// non-option argument or "--", so "-o" after "argv=" in a pipe(8) entry
// belongs to the command.
//
// # Results
//
// Parse returns the services in file order. Syntax errors are
// *config.Error ("file:line: what is wrong") and stop the parse. When a
// name/type pair appears twice, the later entry wins and a warning is
// returned, as are other non-fatal findings.
package mastercf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"postern/pkg/config"
)

// File is the name of the service table inside the configuration
// directory.
const File = "master.cf"

// Service types.
const (
	TypeInet      = "inet"
	TypeUnix      = "unix"
	TypeUnixDgram = "unix-dgram"
	TypeFifo      = "fifo"
	TypePass      = "pass"
)

// Override is one "-o name=value" of a service.
type Override struct {
	Name, Value string
}

// Service is one master.cf entry.
type Service struct {
	Name    string
	Type    string
	Private bool
	Unpriv  bool
	Chroot  bool
	// Wakeup is the interval of wake-up triggers, 0 for none.
	Wakeup time.Duration
	// WakeupIfUsed is the "?" flag: trigger only after first use.
	WakeupIfUsed bool
	// Maxproc bounds concurrent sessions; 0 means no limit.
	Maxproc   int
	Command   string
	Args      []string // arguments other than -o, in order
	Overrides []Override
	File      string
	Line      int

	// cols holds columns 3-7 as written, so Format shows "-" where the
	// file did; empty for services built in code.
	cols [5]string
}

// Key returns "name/type", the form postconf -M and the master use to
// name a service.
func (s Service) Key() string { return s.Name + "/" + s.Type }

// Override returns the value of the last -o for name.
func (s Service) Override(name string) (string, bool) {
	for i := len(s.Overrides) - 1; i >= 0; i-- {
		if s.Overrides[i].Name == name {
			return s.Overrides[i].Value, true
		}
	}
	return "", false
}

// Apply sets every override of s on c (config.Config.Set), in order.
func (s Service) Apply(c *config.Config) {
	for _, o := range s.Overrides {
		c.Set(o.Name, o.Value)
	}
}

// Parse reads master.cf text from r; filename is used in messages.
// defaultMaxproc is the value of "-" in the maxproc column
// (default_process_limit).
func Parse(r io.Reader, filename string, defaultMaxproc int) ([]Service, []config.Problem, error) {
	var (
		services []Service
		warnings []config.Problem
		index    = map[string]int{}
	)
	err := config.ScanLogical(r, filename, func(text string, line int) error {
		s, warns, err := parseEntry(text, filename, line, defaultMaxproc)
		if err != nil {
			return err
		}
		warnings = append(warnings, warns...)
		if i, dup := index[s.Key()]; dup {
			warnings = append(warnings, config.Problem{
				File: filename, Line: line, Severity: config.SeverityWarning,
				Msg: fmt.Sprintf("duplicate service %s (also at line %d); this entry replaces it", s.Key(), services[i].Line),
			})
			services = append(services[:i], services[i+1:]...)
			for k, j := range index {
				if j > i {
					index[k] = j - 1
				}
			}
		}
		index[s.Key()] = len(services)
		services = append(services, s)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return services, warnings, nil
}

// Load reads dir/master.cf.
func Load(dir string, defaultMaxproc int) ([]Service, []config.Problem, error) {
	path := filepath.Join(dir, File)
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return Parse(f, path, defaultMaxproc)
}

func parseEntry(text, file string, line, defaultMaxproc int) (Service, []config.Problem, error) {
	var warns []config.Problem
	bad := func(format string, args ...any) (Service, []config.Problem, error) {
		return Service{}, nil, &config.Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	toks, err := tokenize(text)
	if err != nil {
		return bad("%v", err)
	}
	if len(toks) < 8 {
		return bad("expected 8 or more fields, found %d: %q", len(toks), trunc(text))
	}
	for i := 0; i < 8; i++ {
		if toks[i].group {
			return bad("field %d must not be a {...} group", i+1)
		}
	}
	s := Service{Name: toks[0].text, Type: toks[1].text, File: file, Line: line}
	switch s.Type {
	case TypeInet, TypeUnix, TypeUnixDgram, TypeFifo, TypePass:
	default:
		return bad("bad transport type: %s", s.Type)
	}
	if s.Type == TypeInet {
		if err := checkInetName(s.Name); err != nil {
			return bad("%s", err)
		}
	} else if strings.Contains(s.Name, "/") || s.Name == "" {
		return bad("bad service name: %s", s.Name)
	}
	for i := range s.cols {
		s.cols[i] = toks[2+i].text
	}
	yn := func(col int, what string, def bool) (bool, error) {
		switch v := toks[col].text; v {
		case "-":
			return def, nil
		case "y":
			return true, nil
		case "n":
			return false, nil
		default:
			return false, fmt.Errorf("bad %s field: %s (expected y, n or -)", what, v)
		}
	}
	if s.Private, err = yn(2, "private", s.Type != TypeInet); err != nil {
		return bad("%v", err)
	}
	if s.Private && s.Type == TypeInet {
		warns = append(warns, config.Problem{File: file, Line: line, Severity: config.SeverityWarning,
			Msg: fmt.Sprintf("service %s: inet services cannot be private; treated as n", s.Key())})
		s.Private = false
	}
	if s.Unpriv, err = yn(3, "unprivileged", true); err != nil {
		return bad("%v", err)
	}
	if s.Chroot, err = yn(4, "chroot", false); err != nil {
		return bad("%v", err)
	}
	if w := toks[5].text; w != "-" {
		num := w
		if strings.HasSuffix(w, "?") {
			num = w[:len(w)-1]
			s.WakeupIfUsed = true
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 0 || num == "" || num[0] == '+' || n > 1<<31-1 {
			return bad("bad wakeup time field: %s", w)
		}
		s.Wakeup = time.Duration(n) * time.Second
		if n == 0 {
			s.WakeupIfUsed = false
		}
	}
	if m := toks[6].text; m == "-" {
		s.Maxproc = defaultMaxproc
	} else {
		n, err := strconv.Atoi(m)
		if err != nil || n < 0 || m[0] == '+' {
			return bad("bad process limit field: %s", m)
		}
		s.Maxproc = n
	}
	s.Command = toks[7].text
	if s.Command == "" {
		return bad("empty command field")
	}
	if err := s.parseArgs(toks[8:]); err != nil {
		return bad("%v", err)
	}
	return s, warns, nil
}

// checkInetName accepts "port", "host:port" and "[ipv6]:port".
func checkInetName(name string) error {
	port := name
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		host := name[:i]
		port = name[i+1:]
		if host == "" {
			return fmt.Errorf("bad inet service name: %s (empty host)", name)
		}
		if strings.Contains(host, ":") && !(strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")) {
			return fmt.Errorf("bad inet service name: %s (put an IPv6 address in [])", name)
		}
	}
	if port == "" {
		return fmt.Errorf("bad inet service name: %s (empty port)", name)
	}
	return nil
}

// getopt options of the Postfix-style daemon command line that take a
// value; all others are flags.
const optionsWithValue = "imnost"

func (s *Service) parseArgs(toks []token) error {
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.group || !strings.HasPrefix(t.text, "-") || t.text == "-" {
			for _, r := range toks[i:] {
				s.Args = append(s.Args, r.text)
			}
			return nil
		}
		if t.text == "--" {
			for _, r := range toks[i:] {
				s.Args = append(s.Args, r.text)
			}
			return nil
		}
		if strings.HasPrefix(t.text, "-o") {
			var val token
			if t.text == "-o" {
				if i+1 >= len(toks) {
					return errors.New("option -o requires a name=value argument")
				}
				i++
				val = toks[i]
			} else {
				val = token{text: t.text[2:]}
			}
			name, value, ok := strings.Cut(val.text, "=")
			name = strings.TrimSpace(name)
			if val.group {
				value = strings.TrimSpace(value)
			}
			if !ok || name == "" {
				return fmt.Errorf("bad -o argument %q (expected name=value)", val.text)
			}
			for j := 0; j < len(name); j++ {
				if c := name[j]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
					return fmt.Errorf("bad parameter name in -o %q", val.text)
				}
			}
			s.Overrides = append(s.Overrides, Override{Name: name, Value: value})
			continue
		}
		s.Args = append(s.Args, t.text)
		// A flag cluster such as "-vv" or "-t unix": the value of an
		// option that takes one is the rest of the token or the next
		// token.
		for j := 1; j < len(t.text); j++ {
			if strings.IndexByte(optionsWithValue, t.text[j]) >= 0 {
				if j == len(t.text)-1 && i+1 < len(toks) {
					i++
					s.Args = append(s.Args, toks[i].text)
				}
				break
			}
		}
	}
	return nil
}

type token struct {
	text  string
	group bool // was "{ ... }"; text is the inside, trimmed
}

// tokenize splits a logical line on white space, keeping balanced braces
// together and unwrapping "{ ... }" groups.
func tokenize(s string) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return toks, nil
		}
		start := i
		depth := 0
		for i < len(s) && (depth > 0 || !isSpace(s[i])) {
			switch s[i] {
			case '{':
				depth++
			case '}':
				depth--
				if depth < 0 {
					return nil, fmt.Errorf("unbalanced '}' in %q", trunc(s[start:]))
				}
			}
			i++
		}
		if depth != 0 {
			return nil, fmt.Errorf("missing '}' in %q", trunc(s[start:]))
		}
		word := s[start:i]
		if word[0] == '{' {
			end := matching(word)
			if end != len(word)-1 {
				return nil, fmt.Errorf("text after '}' in %q", trunc(word))
			}
			toks = append(toks, token{text: strings.TrimFunc(word[1:end], func(r rune) bool { return r < 128 && isSpace(byte(r)) }), group: true})
			continue
		}
		toks = append(toks, token{text: word})
	}
}

func matching(w string) int {
	depth := 0
	for i := 0; i < len(w); i++ {
		switch w[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f'
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// Select returns the services that match any of the selectors, each
// "name", "name/type" or "/type" (as postconf -M takes them), in file
// order, and the selectors that matched nothing.
func Select(services []Service, selectors []string) (matched []Service, unmatched []string) {
	hit := make([]bool, len(selectors))
	for _, s := range services {
		match := false
		for i, sel := range selectors {
			name, typ, hasType := strings.Cut(sel, "/")
			if (name == "" || name == s.Name) && (!hasType || typ == "" || typ == s.Type) {
				hit[i] = true
				match = true
			}
		}
		if match {
			matched = append(matched, s)
		}
	}
	for i, sel := range selectors {
		if !hit[i] {
			unmatched = append(unmatched, sel)
		}
	}
	return matched, unmatched
}

// ParamNames returns a function, for config.Config.Check, that accepts the
// parameter names master.cf makes valid: per-transport parameters of its
// services ("relay_destination_concurrency_limit") and the names its
// entries set with -o.
func ParamNames(services []Service) func(string) bool {
	svc := map[string]bool{}
	opts := map[string]bool{}
	for _, s := range services {
		svc[s.Name] = true
		for _, o := range s.Overrides {
			opts[o.Name] = true
		}
	}
	return func(name string) bool {
		return opts[name] || config.TransportParam(name, func(t string) bool { return svc[t] })
	}
}

// Names returns the sorted keys of services.
func Names(services []Service) []string {
	out := make([]string, len(services))
	for i, s := range services {
		out[i] = s.Key()
	}
	sort.Strings(out)
	return out
}

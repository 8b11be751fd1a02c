// Package config reads Postern's main.cf and holds the registry of every
// parameter Postern knows, as Postfix's postconf(5) describes them.
//
// # File format
//
// main.cf is read exactly as postconf(5) specifies:
//
//   - a logical line has the form "name = value"; white space around the
//     "=" and at the end of the logical line is dropped;
//   - empty lines, white-space-only lines and lines whose first
//     non-white-space character is "#" are ignored, also in the middle of a
//     logical line;
//   - a line that starts with white space continues the previous logical
//     line (the newline is dropped, the leading white space is kept);
//   - when a name is defined more than once, the last definition wins.
//
// # Values
//
// Values are stored as written and expanded when read (Get and the typed
// getters). Expansion follows postconf(5): "$name", "${name}" and "$(name)"
// are replaced by the expanded value of name; "${name?value}",
// "${name?{value}}" give value when $name is non-empty; "${name:value}",
// "${name:{value}}" give value when $name is empty;
// "${name?{value1}:{value2}}" chooses one of two; "${{a} OP {b} ? {v1} :
// {v2}}" compares two values with ==, !=, <, <=, >=, > (numerically when
// both are all digits) or the compatibility-level forms ==level, <level,
// ...; "$$" is a literal "$". An undefined name expands to the empty
// string. Expansion is recursive and stops with an error on a loop or
// after MaxDepth nested expansions; the getters then return the value
// expanded as far as possible, and Check reports the error.
//
// A few parameters are expanded at use time by the program that uses them,
// with per-message attributes such as $recipient or $home (Param.NoExpand,
// as Postfix's "raw" parameters): Get returns them unexpanded and the user
// calls ExpandWith.
//
// # Precedence
//
// The value of a parameter is, from highest to lowest precedence: an
// override (Set, as from master.cf "-o name=value" or a daemon's -o flag),
// the last definition in main.cf, the registry default. Defaults may
// themselves reference other parameters. Some defaults are computed at run
// time like Postfix's: myhostname from the host name, mydomain from
// myhostname, daemon_directory and command_directory from the location of
// the running executable, config_directory from the directory in use.
//
// # Registry
//
// The registry (Params, Lookup) is the one table that pairs each parameter
// name with its kind, default, default time unit and a one-line doc, like
// Postfix's mail_params.h. Defaults are Postfix 3.9's, resolved at the
// current compatibility level, except where Postern's identity differs
// (mail_name, mail_owner, setgid_group, syslog_name and the directories).
// Param.Supported marks what Postern implements; the rest are known names
// that are accepted with a warning and ignored.
//
// # Errors
//
// Problems in a file are reported as "file:line: what is wrong" (Error,
// Problem). A missing main.cf is an error for Load; Default gives a
// configuration with every parameter at its default.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultDir is the configuration directory used when neither a -c flag
// nor the MAIL_CONFIG environment variable names one.
const DefaultDir = "/etc/postern"

// MainFile is the name of the parameter file inside the configuration
// directory.
const MainFile = "main.cf"

// MaxDepth bounds the nesting of $name expansions; deeper nesting is
// reported as a loop.
const MaxDepth = 100

// MaxLineLength bounds one logical line of main.cf, so a corrupt or hostile
// file cannot make the reader hold unbounded memory.
const MaxLineLength = 1 << 20

// Dir returns the configuration directory: flag when non-empty, else the
// MAIL_CONFIG environment variable when set and non-empty, else DefaultDir.
func Dir(flag string) string {
	if flag != "" {
		return flag
	}
	if d := os.Getenv("MAIL_CONFIG"); d != "" {
		return d
	}
	return DefaultDir
}

// Error is a problem at a place in a configuration file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

type setting struct {
	value string
	line  int
}

// Config is one instance's parameters: main.cf plus overrides plus the
// registry defaults. The zero value is not usable; use Load, Parse or
// Default. A Config is not safe for concurrent modification; Clone it for
// each user that calls Set.
type Config struct {
	dir      string
	file     string
	main     map[string]setting
	override map[string]string
	computed map[string]string
}

// Default returns a configuration without a main.cf: every parameter has
// its default value. Its directory is Dir("").
func Default() *Config {
	return newConfig(Dir(""), "")
}

// DefaultFor is Default for configuration directory dir (so that
// config_directory and the defaults derived from it refer to dir).
func DefaultFor(dir string) *Config {
	return newConfig(dir, "")
}

func newConfig(dir, file string) *Config {
	c := &Config{
		dir:      dir,
		file:     file,
		main:     map[string]setting{},
		override: map[string]string{},
	}
	c.computed = computedDefaults(dir)
	return c
}

// Load reads dir/main.cf. A missing file is an error.
func Load(dir string) (*Config, error) {
	path := filepath.Join(dir, MainFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := Parse(f, path)
	if err != nil {
		return nil, err
	}
	c.dir = dir
	c.computed = computedDefaults(dir)
	return c, nil
}

// Parse reads main.cf text from r; filename is used in errors and by Line.
// The configuration directory of the result is the directory of filename.
func Parse(r io.Reader, filename string) (*Config, error) {
	c := newConfig(filepath.Dir(filename), filename)
	err := ScanLogical(r, filename, func(text string, line int) error {
		name, value, ok := splitAssignment(text)
		if !ok {
			return &Error{filename, line, fmt.Sprintf("missing '=' after attribute name: %q", truncate(text, 60))}
		}
		if !validName(name) {
			return &Error{filename, line, fmt.Sprintf("bad parameter name: %q", truncate(name, 60))}
		}
		c.main[name] = setting{value: value, line: line}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ScanLogical calls fn for each logical line of a Postfix-style file
// (main.cf, master.cf) with the number of the physical line it starts on.
// Comment and blank lines are skipped even between a line and its
// continuation, as Postfix does; a continuation line's newline is dropped
// and its leading white space kept; trailing white space is removed. An
// error from fn stops the scan and is returned.
func ScanLogical(r io.Reader, filename string, fn func(text string, line int) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineLength)
	var cur strings.Builder
	start, n := 0, 0
	flush := func() error {
		if start == 0 {
			return nil
		}
		text := strings.TrimRight(cur.String(), " \t\r\n\v\f")
		cur.Reset()
		s := start
		start = 0
		return fn(text, s)
	}
	for sc.Scan() {
		n++
		raw := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimLeft(raw, " \t\v\f\r")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if trimmed != raw { // continuation
			if start == 0 {
				return &Error{filename, n, "logical line must not start with white space"}
			}
			if cur.Len()+len(raw) > MaxLineLength {
				return &Error{filename, start, "logical line too long"}
			}
			cur.WriteString(raw)
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		start = n
		cur.WriteString(raw)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &Error{filename, n + 1, "line too long"}
		}
		return fmt.Errorf("%s: %w", filename, err)
	}
	return flush()
}

func splitAssignment(text string) (name, value string, ok bool) {
	i := strings.IndexByte(text, '=')
	if i < 0 {
		return "", "", false
	}
	name = strings.TrimRight(text[:i], " \t\v\f\r")
	value = strings.Trim(text[i+1:], " \t\v\f\r\n")
	return name, value, true
}

func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return false
		}
	}
	return true
}

func isNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_'
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Dir returns the configuration directory this configuration belongs to.
func (c *Config) Dir() string { return c.dir }

// File returns the path of the main.cf that was read, or "" for Default.
func (c *Config) File() string { return c.file }

// Clone returns an independent copy; Set on either does not affect the
// other.
func (c *Config) Clone() *Config {
	n := &Config{
		dir:      c.dir,
		file:     c.file,
		main:     make(map[string]setting, len(c.main)),
		override: make(map[string]string, len(c.override)),
		computed: make(map[string]string, len(c.computed)),
	}
	for k, v := range c.main {
		n.main[k] = v
	}
	for k, v := range c.override {
		n.override[k] = v
	}
	for k, v := range c.computed {
		n.computed[k] = v
	}
	return n
}

// Set overrides name with value (as "-o name=value"); overrides take
// precedence over main.cf and defaults. The value may reference $names.
func (c *Config) Set(name, value string) {
	c.override[name] = value
}

// Raw returns the value of name as written, unexpanded: the override if
// there is one, else the main.cf setting. It reports false when the
// parameter is set in neither place.
func (c *Config) Raw(name string) (string, bool) {
	if v, ok := c.override[name]; ok {
		return v, true
	}
	if s, ok := c.main[name]; ok {
		return s.value, true
	}
	return "", false
}

// DefaultValue returns the default of name, unexpanded: the computed value
// for run-time defaults (myhostname, daemon_directory, ...), else the
// registry default. It reports false for a name not in the registry.
func (c *Config) DefaultValue(name string) (string, bool) {
	if v, ok := c.computed[name]; ok {
		return v, true
	}
	if name == "mydomain" {
		return c.derivedDomain(), true
	}
	p, ok := Lookup(name)
	if !ok {
		return "", false
	}
	return p.Default, true
}

// rawOrDefault is the unexpanded effective value of name.
func (c *Config) rawOrDefault(name string) (string, bool) {
	if v, ok := c.Raw(name); ok {
		return v, true
	}
	return c.DefaultValue(name)
}

// Get returns the effective value of name, expanded. NoExpand parameters
// are returned as written. Unknown unset names give "".
func (c *Config) Get(name string) string {
	v, _ := c.rawOrDefault(name)
	if p, ok := Lookup(name); ok && p.NoExpand {
		return v
	}
	s, _ := c.expand(v, nil, []string{name})
	return s
}

// GetErr is Get that also reports an expansion error (a loop, too deep a
// nesting or a malformed "${...}").
func (c *Config) GetErr(name string) (string, error) {
	v, _ := c.rawOrDefault(name)
	if p, ok := Lookup(name); ok && p.NoExpand {
		return v, nil
	}
	return c.expand(v, nil, []string{name})
}

// Expand expands $name references in s against this configuration.
func (c *Config) Expand(s string) (string, error) {
	return c.expand(s, nil, nil)
}

// ExpandWith expands s, looking names up first in vars (per-message
// attributes such as recipient or home) and then in the configuration.
// vars may be nil.
func (c *Config) ExpandWith(s string, vars func(name string) (string, bool)) (string, error) {
	return c.expand(s, vars, nil)
}

// Bool returns a boolean parameter. "yes" and "true" are true, "no" and
// "false" false, in any case; any other value gives the default.
func (c *Config) Bool(name string) bool {
	if b, ok := parseBool(c.Get(name)); ok {
		return b
	}
	b, _ := parseBool(c.expandedDefault(name))
	return b
}

// Int returns an integer parameter; an invalid value gives the default
// (Check reports it).
func (c *Config) Int(name string) int {
	if n, err := strconv.Atoi(strings.TrimSpace(c.Get(name))); err == nil {
		return n
	}
	n, _ := strconv.Atoi(strings.TrimSpace(c.expandedDefault(name)))
	return n
}

// Duration returns a time parameter: an integer with an optional unit
// s, m, h, d or w; a bare number is in the parameter's default unit
// (Param.Unit, seconds for unknown names). An invalid value gives the
// default.
func (c *Config) Duration(name string) time.Duration {
	unit := byte('s')
	if p, ok := Lookup(name); ok && p.Unit != 0 {
		unit = p.Unit
	}
	if d, err := ParseDuration(c.Get(name), unit); err == nil {
		return d
	}
	d, _ := ParseDuration(c.expandedDefault(name), unit)
	return d
}

// Size returns a byte-count parameter. As in Postfix, sizes are plain
// decimal numbers without unit suffixes. An invalid value gives the
// default.
func (c *Config) Size(name string) int64 {
	if n, err := ParseSize(c.Get(name)); err == nil {
		return n
	}
	n, _ := ParseSize(c.expandedDefault(name))
	return n
}

// List returns a list parameter split as Postfix splits lists; see
// SplitList.
func (c *Config) List(name string) []string {
	return SplitList(c.Get(name))
}

func (c *Config) expandedDefault(name string) string {
	v, _ := c.DefaultValue(name)
	s, _ := c.expand(v, nil, []string{name})
	return s
}

// Explicit returns the names set in main.cf, sorted (postconf -n).
func (c *Config) Explicit() []string {
	names := make([]string, 0, len(c.main))
	for n := range c.main {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Overrides returns the names set with Set, sorted.
func (c *Config) Overrides() []string {
	names := make([]string, 0, len(c.override))
	for n := range c.override {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Line returns where name was last set in main.cf, or ("", 0) when it is
// not set there.
func (c *Config) Line(name string) (file string, line int) {
	s, ok := c.main[name]
	if !ok {
		return "", 0
	}
	return c.file, s.line
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "true":
		return true, true
	case "no", "false":
		return false, true
	}
	return false, false
}

// ParseDuration parses a Postfix time value: a non-negative integer with
// an optional one-letter unit (s, m, h, d, w); defUnit is the unit of a
// bare number.
func ParseDuration(s string, defUnit byte) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty time value")
	}
	unit := defUnit
	num := s
	if last := s[len(s)-1]; last < '0' || last > '9' {
		unit = last
		num = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || num[0] == '+' {
		return 0, fmt.Errorf("bad time value %q", s)
	}
	var mult time.Duration
	switch unit {
	case 's', 'S':
		mult = time.Second
	case 'm', 'M':
		mult = time.Minute
	case 'h', 'H':
		mult = time.Hour
	case 'd', 'D':
		mult = 24 * time.Hour
	case 'w', 'W':
		mult = 7 * 24 * time.Hour
	default:
		return 0, fmt.Errorf("bad time unit in %q", s)
	}
	if n > int64((1<<63-1)/mult) {
		return 0, fmt.Errorf("time value %q out of range", s)
	}
	return time.Duration(n) * mult, nil
}

// ParseSize parses a Postfix size: a non-negative decimal byte count.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || s == "" || s[0] == '+' {
		return 0, fmt.Errorf("bad size value %q", s)
	}
	return n, nil
}

// SplitList splits a Postfix list value on commas and white space. A
// "{...}" group stays one element with its braces, wherever in the
// element it starts ("inline:{a=b, c=d}", "{ x y }"); empty elements are
// dropped.
func SplitList(s string) []string {
	var out []string
	depth := 0
	start := -1
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '{':
			depth++
		case ch == '}' && depth > 0:
			depth--
		case depth == 0 && (ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// derivedDomain is the default of mydomain: the effective myhostname
// minus its first label. A myhostname that refers back to mydomain falls
// back to the host's own name.
func (c *Config) derivedDomain() string {
	raw, _ := c.rawOrDefault("myhostname")
	host, err := c.expand(raw, nil, []string{"mydomain", "myhostname"})
	if err != nil {
		host = c.computed["myhostname"]
	}
	return domainOf(host)
}

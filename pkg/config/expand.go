package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ExpandError is a malformed or looping $name reference.
type ExpandError struct {
	Msg string
}

func (e *ExpandError) Error() string { return e.Msg }

type expander struct {
	c     *Config
	vars  func(string) (string, bool)
	stack []string // names being expanded, outermost first
	steps int      // lookups done, bounded by maxSteps
	err   error    // first error seen
}

// maxSteps and maxResult bound the work and output of one expansion, so
// that "a = $b$b$b", "b = $c$c$c", ... cannot blow up exponentially.
const (
	maxSteps  = 100000
	maxResult = 4 << 20
)

// expand expands s. stack names the parameters whose values are being
// expanded, for loop detection. On error the result is expanded as far as
// possible: malformed references are kept literally.
func (c *Config) expand(s string, vars func(string) (string, bool), stack []string) (string, error) {
	e := &expander{c: c, vars: vars, stack: append([]string(nil), stack...)}
	out := e.text(s)
	return out, e.err
}

func (e *expander) fail(format string, args ...any) {
	if e.err == nil {
		e.err = &ExpandError{Msg: fmt.Sprintf(format, args...)}
	}
}

// text expands every reference in s.
func (e *expander) text(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if b.Len() > maxResult {
			e.fail("$name expansion too large")
			return b.String()
		}
		ch := s[i]
		if ch != '$' {
			j := strings.IndexByte(s[i:], '$')
			if j < 0 {
				b.WriteString(s[i:])
				break
			}
			b.WriteString(s[i : i+j])
			i += j
			continue
		}
		if i+1 >= len(s) {
			e.fail("empty macro name in %q", truncate(s, 60))
			b.WriteByte('$')
			i++
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i += 2
		case next == '{' || next == '(':
			end, ok := matchClose(s, i+1)
			if !ok {
				e.fail("truncated macro reference in %q", truncate(s, 60))
				b.WriteString(s[i:])
				return b.String()
			}
			b.WriteString(e.macro(s[i+2 : end]))
			i = end + 1
		case isNameByte(next):
			j := i + 1
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			b.WriteString(e.lookup(s[i+1 : j]))
			i = j
		default:
			e.fail("empty macro name in %q", truncate(s, 60))
			b.WriteByte('$')
			i++
		}
	}
	return b.String()
}

// matchClose returns the index of the bracket closing the one at s[open]:
// "}" for "{" counting nested braces, ")" for "(" counting parentheses.
func matchClose(s string, open int) (int, bool) {
	o := s[open]
	cl := byte('}')
	if o == '(' {
		cl = ')'
	}
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case o:
			depth++
		case cl:
			depth--
			if depth == 0 {
				return i, true
			}
		}
	}
	return 0, false
}

// lookup returns the expanded value of name.
func (e *expander) lookup(name string) string {
	if e.vars != nil {
		if v, ok := e.vars(name); ok {
			return v // attributes are data, never expanded again
		}
	}
	e.steps++
	if e.steps > maxSteps {
		e.fail("$name expansion too large")
		return ""
	}
	for i, n := range e.stack {
		if n == name {
			e.fail("loop in $name expansion: %s -> %s", strings.Join(e.stack[i:], " -> "), name)
			return ""
		}
	}
	if len(e.stack) >= MaxDepth {
		e.fail("$name expansion nested too deeply: %s", strings.Join(e.stack[:3], " -> ")+" -> ...")
		return ""
	}
	v, ok := e.c.rawOrDefault(name)
	if !ok {
		return ""
	}
	if p, known := Lookup(name); known && p.NoExpand {
		return v
	}
	e.stack = append(e.stack, name)
	out := e.text(v)
	e.stack = e.stack[:len(e.stack)-1]
	return out
}

// macro expands the inside of "${...}" or "$(...)".
func (e *expander) macro(in string) string {
	rest := strings.TrimLeft(in, " \t")
	if strings.HasPrefix(rest, "{") {
		return e.relational(in, rest)
	}
	j := 0
	for j < len(in) && isNameByte(in[j]) {
		j++
	}
	if j == 0 {
		e.fail("empty macro name in \"${%s}\"", truncate(in, 60))
		return ""
	}
	name, rest := in[:j], in[j:]
	if rest == "" {
		return e.lookup(name)
	}
	switch rest[0] {
	case '?':
		v1, v2, has2, ok := e.alternatives(rest[1:])
		if !ok {
			return ""
		}
		if e.lookup(name) != "" {
			return e.text(v1)
		}
		if has2 {
			return e.text(v2)
		}
		return ""
	case ':':
		v := rest[1:]
		if t := strings.TrimSpace(v); strings.HasPrefix(t, "{") {
			inner, after, ok := braced(t)
			if !ok || strings.TrimSpace(after) != "" {
				e.fail("unexpected input after {value} in \"${%s}\"", truncate(in, 60))
				return ""
			}
			v = inner
		}
		if e.lookup(name) == "" {
			return e.text(v)
		}
		return ""
	}
	e.fail("unexpected input after name in \"${%s}\"", truncate(in, 60))
	return ""
}

// alternatives parses what follows "?": "value", "{value}" or
// "{value1}:value2" / "{value1}:{value2}".
func (e *expander) alternatives(s string) (v1, v2 string, has2, ok bool) {
	t := strings.TrimLeft(s, " \t\r\n\v\f")
	if !strings.HasPrefix(t, "{") {
		return s, "", false, true
	}
	v1, after, ok := braced(t)
	if !ok {
		e.fail("unbalanced '{' in %q", truncate(s, 60))
		return "", "", false, false
	}
	after = strings.TrimLeft(after, " \t\r\n\v\f")
	if after == "" {
		return v1, "", false, true
	}
	if after[0] != ':' {
		e.fail("\":\" expected at %q", truncate(after, 60))
		return "", "", false, false
	}
	v2 = after[1:]
	if t2 := strings.TrimSpace(v2); strings.HasPrefix(t2, "{") {
		inner, rest, ok := braced(t2)
		if !ok || strings.TrimSpace(rest) != "" {
			e.fail("unexpected input after {value2} in %q", truncate(s, 60))
			return "", "", false, false
		}
		v2 = inner
	}
	return v1, v2, true, true
}

// braced splits "{inner}rest" (s starts with "{").
func braced(s string) (inner, rest string, ok bool) {
	end, ok := matchClose(s, 0)
	if !ok {
		return "", "", false
	}
	return s[1:end], s[end+1:], true
}

var relOps = []string{"==level", "!=level", "<=level", ">=level", "<level", ">level", "==", "!=", "<=", ">=", "<", ">"}

// relational evaluates "{a} OP {b}" optionally followed by "?{v1}" and/or
// ":{v2}"; without either it yields "true" or "false".
func (e *expander) relational(in, s string) string {
	a, rest, ok := braced(s)
	if !ok {
		e.fail("unbalanced '{' in \"${%s}\"", truncate(in, 60))
		return ""
	}
	rest = strings.TrimLeft(rest, " \t")
	op := ""
	for _, o := range relOps {
		if strings.HasPrefix(rest, o) {
			op = o
			break
		}
	}
	if op == "" {
		e.fail("relational operator expected in \"${%s}\"", truncate(in, 60))
		return ""
	}
	rest = strings.TrimLeft(rest[len(op):], " \t")
	if !strings.HasPrefix(rest, "{") {
		e.fail("'{' expected after %s in \"${%s}\"", op, truncate(in, 60))
		return ""
	}
	b, rest, ok := braced(rest)
	if !ok {
		e.fail("unbalanced '{' in \"${%s}\"", truncate(in, 60))
		return ""
	}
	truth, ok := compare(e.text(a), op, e.text(b))
	if !ok {
		e.fail("bad compatibility level in \"${%s}\"", truncate(in, 60))
		return ""
	}
	rest = strings.TrimSpace(rest)
	var v1, v2 string
	var has1, has2 bool
	if strings.HasPrefix(rest, "?") {
		t := strings.TrimSpace(rest[1:])
		if !strings.HasPrefix(t, "{") {
			e.fail("'{' expected after '?' in \"${%s}\"", truncate(in, 60))
			return ""
		}
		v1, rest, ok = braced(t)
		if !ok {
			e.fail("unbalanced '{' in \"${%s}\"", truncate(in, 60))
			return ""
		}
		has1 = true
		rest = strings.TrimSpace(rest)
	}
	if strings.HasPrefix(rest, ":") {
		t := strings.TrimSpace(rest[1:])
		if strings.HasPrefix(t, "{") {
			v2, rest, ok = braced(t)
			if !ok {
				e.fail("unbalanced '{' in \"${%s}\"", truncate(in, 60))
				return ""
			}
			rest = strings.TrimSpace(rest)
		} else {
			v2, rest = t, ""
		}
		has2 = true
	}
	if rest != "" {
		e.fail("unexpected input %q in \"${%s}\"", truncate(rest, 30), truncate(in, 60))
		return ""
	}
	switch {
	case !has1 && !has2:
		return strconv.FormatBool(truth)
	case truth:
		return e.text(v1)
	default:
		return e.text(v2)
	}
}

func compare(a, op, b string) (bool, bool) {
	var c int
	if base, isLevel := strings.CutSuffix(op, "level"); isLevel {
		la, ok1 := parseLevel(a)
		lb, ok2 := parseLevel(b)
		if !ok1 || !ok2 {
			return false, false
		}
		c = cmpLevel(la, lb)
		op = base
	} else if allDigits(a) && allDigits(b) {
		c = cmpNumeric(a, b)
	} else {
		c = strings.Compare(a, b)
	}
	switch op {
	case "==":
		return c == 0, true
	case "!=":
		return c != 0, true
	case "<":
		return c < 0, true
	case "<=":
		return c <= 0, true
	case ">":
		return c > 0, true
	default: // ">="
		return c >= 0, true
	}
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// cmpNumeric compares two digit strings of any length.
func cmpNumeric(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// parseLevel parses a compatibility level "major[.minor[.patch]]".
func parseLevel(s string) ([3]string, bool) {
	var l [3]string
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return l, false
	}
	for i := range l {
		l[i] = "0"
	}
	for i, p := range parts {
		if !allDigits(p) {
			return l, false
		}
		l[i] = p
	}
	return l, true
}

func cmpLevel(a, b [3]string) int {
	for i := range a {
		if c := cmpNumeric(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

package table

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
)

// rxRule is one line of a regexp: or pcre: table, or an if..endif block.
type rxRule struct {
	re     *regexp.Regexp
	neg    bool
	isIf   bool
	result []rxPiece // nil for if
	body   []rxRule  // the rules inside if..endif
}

// rxPiece is a literal (group < 0) or a $n substitution.
type rxPiece struct {
	lit   string
	group int
}

// rxDialect is the difference between regexp_table(5) and pcre_table(5):
// their flags and defaults.
type rxDialect struct {
	name string
	pcre bool
}

// patternTableSource loads a rules file, or the rules of an inline spec
// "{ {rule}, {rule} }", and reloads the file when it changes.
type patternTableSource[R any] struct {
	path  string
	o     Options
	parse func(file, data string) (R, error)
	cur   atomic.Pointer[R]
	watch *watch
}

// openPatternSource reads the rules from name, which is a file or (Postfix
// 3.7) an inline list of braced rules, one rule per line.
func openPatternSource[R any](typ, name string, o Options, parse func(file, data string) (R, error)) (*patternTableSource[R], error) {
	s := &patternTableSource[R]{path: name, o: o, parse: parse}
	if strings.HasPrefix(strings.TrimSpace(name), "{") {
		elems, err := bracedList(name)
		if err != nil {
			return nil, &SyntaxError{typ + ":" + name, 0, err.Error()}
		}
		var b strings.Builder
		for _, e := range elems {
			b.WriteString(unbrace(e))
			b.WriteByte('\n')
		}
		r, err := parse(typ+":"+name, b.String())
		if err != nil {
			return nil, err
		}
		s.cur.Store(&r)
		return s, nil
	}
	if name == "" {
		return nil, errors.New("missing file name")
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	if !o.NoWatch {
		s.watch = startWatch(name, o.Logger, s.reload)
	}
	return s, nil
}

func (s *patternTableSource[R]) load() error {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	r, err := s.parse(s.path, string(data))
	if err != nil {
		return err
	}
	s.cur.Store(&r)
	return nil
}

func (s *patternTableSource[R]) reload() {
	if err := s.load(); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			s.o.Logger.Warn(fmt.Sprintf("%s: table source is gone; keeping the previous contents", s.path))
			return
		}
		s.o.Logger.Warn(fmt.Sprintf("%s: reload failed, keeping the previous contents: %v", s.path, oneLine(err)))
		return
	}
	s.o.Logger.Info(fmt.Sprintf("%s: table reloaded", s.path))
}

func (s *patternTableSource[R]) Close() error {
	s.watch.stop()
	return nil
}

// regexpTable is a regexp: or pcre: table.
type regexpTable struct {
	*patternTableSource[[]rxRule]
}

func openRegexp(name string, o Options) (Table, error) {
	return openRx(rxDialect{name: "regexp"}, name, o)
}

func openPCRE(name string, o Options) (Table, error) {
	return openRx(rxDialect{name: "pcre", pcre: true}, name, o)
}

func openRx(d rxDialect, name string, o Options) (Table, error) {
	src, err := openPatternSource(d.name, name, o, func(file, data string) ([]rxRule, error) {
		return parseRx(d, file, data)
	})
	if err != nil {
		return nil, err
	}
	return regexpTable{src}, nil
}

func (regexpTable) pattern() bool { return true }

func (t regexpTable) Lookup(key string) (string, bool, error) {
	v, ok := rxSearch(*t.cur.Load(), key)
	return v, ok, nil
}

func rxSearch(rules []rxRule, key string) (string, bool) {
	for i := range rules {
		r := &rules[i]
		if r.isIf {
			if r.re.MatchString(key) != r.neg {
				if v, ok := rxSearch(r.body, key); ok {
					return v, true
				}
			}
			continue
		}
		if r.neg {
			if !r.re.MatchString(key) {
				return expand(r.result, key, nil), true
			}
			continue
		}
		if m := r.re.FindStringSubmatchIndex(key); m != nil {
			return expand(r.result, key, m), true
		}
	}
	return "", false
}

// expand builds a result from its pieces; a group that did not take part in
// the match contributes nothing.
func expand(pieces []rxPiece, key string, m []int) string {
	if len(pieces) == 1 && pieces[0].group < 0 {
		return pieces[0].lit
	}
	var b strings.Builder
	for _, p := range pieces {
		if p.group < 0 {
			b.WriteString(p.lit)
			continue
		}
		if s, e := m[2*p.group], m[2*p.group+1]; s >= 0 {
			b.WriteString(key[s:e])
		}
	}
	return b.String()
}

// parseRx parses a regexp_table(5) or pcre_table(5) source.
func parseRx(d rxDialect, file, data string) ([]rxRule, error) {
	lines, err := logicalLines(file, data)
	if err != nil {
		return nil, err
	}
	var errs []error
	type frame struct {
		rule *rxRule
		line int
	}
	var (
		top   []rxRule
		stack []frame
	)
	appendRule := func(r rxRule) *rxRule {
		if n := len(stack); n > 0 {
			p := stack[n-1].rule
			p.body = append(p.body, r)
			return &p.body[len(p.body)-1]
		}
		top = append(top, r)
		return &top[len(top)-1]
	}
	for _, l := range lines {
		fail := func(format string, a ...any) {
			errs = append(errs, &SyntaxError{file, l.no, fmt.Sprintf(format, a...)})
		}
		text := l.text
		if word, rest := firstWord(text); word == "endif" {
			if rest != "" {
				fail("text after endif: %q", rest)
			}
			if len(stack) == 0 {
				fail("endif without if")
				continue
			}
			stack = stack[:len(stack)-1]
			continue
		} else if word == "if" && rest != "" {
			re, neg, tail, err := parseRxPattern(d, rest)
			if err != nil {
				fail("%v", err)
				// Push a placeholder so that the matching endif pairs up.
				stack = append(stack, frame{&rxRule{isIf: true}, l.no})
				continue
			}
			if tail != "" {
				fail("text after if pattern: %q", tail)
			}
			r := appendRule(rxRule{re: re, neg: neg, isIf: true})
			stack = append(stack, frame{r, l.no})
			continue
		}
		re, neg, result, err := parseRxPattern(d, text)
		if err != nil {
			fail("%v", err)
			continue
		}
		if result == "" {
			fail("missing result after pattern")
			continue
		}
		pieces, err := parseResult(result, re.NumSubexp(), neg)
		if err != nil {
			fail("%v", err)
			continue
		}
		appendRule(rxRule{re: re, neg: neg, result: pieces})
	}
	for _, f := range stack {
		errs = append(errs, &SyntaxError{file, f.line, "if without endif"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return top, nil
}

// firstWord splits s at its first white space.
func firstWord(s string) (word, rest string) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// parseRxPattern parses "[!]<d>pattern<d>flags" at the start of s and
// returns the compiled expression and the trimmed text after the flags.
func parseRxPattern(d rxDialect, s string) (re *regexp.Regexp, neg bool, rest string, err error) {
	if strings.HasPrefix(s, "!") {
		neg = true
		s = strings.TrimLeft(s[1:], " \t")
	}
	if s == "" {
		return nil, false, "", errors.New("missing pattern")
	}
	delim := s[0]
	if isSpace(delim) || delim == '\\' || delim >= 0x80 ||
		('a' <= delim && delim <= 'z') || ('A' <= delim && delim <= 'Z') || ('0' <= delim && delim <= '9') {
		return nil, false, "", fmt.Errorf("pattern must start with a non-alphanumeric delimiter such as '/', found %q", s[0])
	}
	end := -1
	for i := 1; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			continue
		}
		if s[i] == delim {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, false, "", fmt.Errorf("missing closing %q after pattern", delim)
	}
	pat := s[1:end]
	flagsEnd := end + 1
	for flagsEnd < len(s) && !isSpace(s[flagsEnd]) {
		flagsEnd++
	}
	flags := s[end+1 : flagsEnd]
	rest = strings.TrimSpace(s[flagsEnd:])
	re, err = compileRx(d, pat, flags)
	return re, neg, rest, err
}

// compileRx turns a Postfix pattern and its flags into an RE2 expression.
func compileRx(d rxDialect, pat, flags string) (*regexp.Regexp, error) {
	icase, multi, dotall, extended, anchored, ungreedy := true, false, true, !d.pcre, false, false
	for _, f := range flags {
		switch {
		case f == 'i':
			icase = !icase
		case f == 'm':
			multi = !multi
		case f == 'x':
			extended = !extended
		case d.pcre && f == 's':
			dotall = !dotall
		case d.pcre && f == 'A':
			anchored = !anchored
		case d.pcre && f == 'U':
			ungreedy = !ungreedy
		case d.pcre && (f == 'E' || f == 'X'):
			// E: RE2's $ already matches only at the end of the text.
			// X: RE2 already rejects unknown escapes.
		default:
			return nil, fmt.Errorf("unknown %s flag %q", d.name, f)
		}
	}
	if !d.pcre {
		if !extended {
			return nil, errors.New("basic (non-extended) regular expressions, flag x, are not supported; use extended syntax")
		}
		// POSIX REG_NEWLINE (flag m) makes . and [^...] stop at newlines and
		// ^ $ match at them; without it newlines are ordinary characters.
		dotall = !multi
	} else if extended {
		var err error
		if pat, err = stripExtended(pat); err != nil {
			return nil, err
		}
	}
	var fl strings.Builder
	if icase {
		fl.WriteByte('i')
	}
	if multi {
		fl.WriteByte('m')
	}
	if dotall {
		fl.WriteByte('s')
	}
	if ungreedy {
		fl.WriteByte('U')
	}
	expr := pat
	if anchored {
		expr = `\A(?:` + expr + `)`
	}
	if fl.Len() > 0 {
		expr = "(?" + fl.String() + ")" + expr
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("pattern %q is not supported by the RE2 engine: %v", pat, unwrapRxError(err))
	}
	return re, nil
}

// unwrapRxError drops regexp's "error parsing regexp: " prefix.
func unwrapRxError(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

// stripExtended applies PCRE's extended flag: white space outside character
// classes is dropped and '#' starts a comment to the end of the line;
// "\ " stands for a space. \Q...\E is kept literally.
func stripExtended(pat string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch {
		case c == '\\' && i+1 < len(pat):
			n := pat[i+1]
			if n == 'Q' && !inClass {
				end := strings.Index(pat[i+2:], `\E`)
				if end < 0 {
					b.WriteString(pat[i:])
					return b.String(), nil
				}
				b.WriteString(pat[i : i+2+end+2])
				i += 2 + end + 1
				continue
			}
			if isSpace(n) || n == '#' {
				// RE2 rejects "\ ": a space needs no escape once white
				// space is no longer ignored.
				if n == '#' {
					b.WriteString(`\#`)
				} else {
					b.WriteByte(n)
				}
			} else {
				b.WriteByte(c)
				b.WriteByte(n)
			}
			i++
		case inClass:
			b.WriteByte(c)
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			b.WriteByte(c)
			// A ']' right after '[' or '[^' is a literal member.
			if i+1 < len(pat) && pat[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(pat) && pat[i+1] == ']' {
				b.WriteByte(']')
				i++
			}
		case isSpace(c):
		case c == '#':
			for i < len(pat) && pat[i] != '\n' {
				i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// parseResult splits a result into literals and $n, ${n}, $(n)
// substitutions; $$ is a '$'. A '$' not followed by a digit, '{', '(' or
// '$' is literal.
func parseResult(s string, ngroups int, neg bool) ([]rxPiece, error) {
	var (
		out []rxPiece
		lit strings.Builder
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			lit.WriteByte(c)
			continue
		}
		var num string
		switch n := s[i+1]; {
		case n == '$':
			lit.WriteByte('$')
			i++
			continue
		case n == '{' || n == '(':
			closer := byte('}')
			if n == '(' {
				closer = ')'
			}
			end := strings.IndexByte(s[i+2:], closer)
			if end < 0 {
				return nil, fmt.Errorf("unterminated $%c in result", n)
			}
			num = s[i+2 : i+2+end]
			i += 2 + end
		case '0' <= n && n <= '9':
			j := i + 1
			for j < len(s) && (isAlnum(s[j]) || s[j] == '_') {
				j++
			}
			num = s[i+1 : j]
			i = j - 1
		default:
			lit.WriteByte(c)
			continue
		}
		g, err := strconv.Atoi(num)
		if err != nil || g < 0 {
			return nil, fmt.Errorf("unsupported substitution $%s in result (write ${n} before letters or digits)", num)
		}
		if neg {
			return nil, fmt.Errorf("$%d substitution in the result of a negated pattern", g)
		}
		if g > ngroups {
			return nil, fmt.Errorf("substitution $%d but the pattern has %d subexpressions", g, ngroups)
		}
		if lit.Len() > 0 {
			out = append(out, rxPiece{lit: lit.String(), group: -1})
			lit.Reset()
		}
		out = append(out, rxPiece{group: g})
	}
	if lit.Len() > 0 || len(out) == 0 {
		out = append(out, rxPiece{lit: lit.String(), group: -1})
	}
	return out, nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

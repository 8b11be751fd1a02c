package table

import (
	"errors"
	"strings"
)

// logicalLine is one logical line of a table source and the number of the
// physical line it starts on.
type logicalLine struct {
	no   int
	text string
}

// isSpace reports whether c is white space in the sense Postfix's table
// readers use (C isspace in the C locale).
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// logicalLines splits a table source into logical lines: blank lines and
// lines whose first non-blank character is '#' are dropped (also between a
// line and its continuation), and a line that starts with white space is
// appended, leading white space included, to the line before it. A
// continuation with nothing to continue is an error. A trailing CR of each
// physical line is dropped so files with CRLF line ends read the same.
func logicalLines(file string, data string) ([]logicalLine, error) {
	var (
		out  []logicalLine
		errs []error
		cur  *strings.Builder
		no   int
		curN int
	)
	flush := func() {
		if cur != nil {
			out = append(out, logicalLine{no: curN, text: cur.String()})
			cur = nil
		}
	}
	for rest := data; rest != ""; {
		var line string
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, ""
		}
		no++
		line = strings.TrimSuffix(line, "\r")
		t := strings.TrimLeft(line, " \t\r\v\f")
		if t == "" || t[0] == '#' {
			continue
		}
		if isSpace(line[0]) {
			if cur == nil {
				errs = append(errs, &SyntaxError{file, no, "logical line must not start with white space (continuation of nothing)"})
				continue
			}
			cur.WriteString(line)
			continue
		}
		flush()
		cur = &strings.Builder{}
		cur.WriteString(line)
		curN = no
	}
	flush()
	return out, errors.Join(errs...)
}

// bracedList splits "{ a, b {c d} }" into its top-level elements
// ["a", "b", "{c d}"]: the outer braces are required, elements are
// separated by white space or commas, and an element may contain balanced
// braces (a nested table spec or a braced rule) whose contents are kept.
func bracedList(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, errors.New("expected { ... }")
	}
	inner := s[1 : len(s)-1]
	var (
		out   []string
		depth int
		start = -1
	)
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		switch {
		case c == '{':
			if start < 0 {
				start = i
			}
			depth++
		case c == '}':
			if depth == 0 {
				return nil, errors.New("unbalanced '}'")
			}
			depth--
		case depth == 0 && (c == ',' || isSpace(c)):
			if start >= 0 {
				out = append(out, inner[start:i])
				start = -1
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if depth != 0 {
		return nil, errors.New("unbalanced '{'")
	}
	if start >= 0 {
		out = append(out, inner[start:])
	}
	return out, nil
}

// unbrace strips one pair of braces around s and the white space just
// inside them; s without braces is returned trimmed.
func unbrace(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '{' && s[len(s)-1] == '}' {
		return strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

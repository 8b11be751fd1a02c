package sendmail

import "strings"

// Header address lists: what "sendmail -t" and command-line recipients
// go through. Postfix parses both with its lenient RFC 822 tokenizer
// (tok822) and keeps every addr-spec it finds; so do we.

// tokKind classifies one token of an address list.
type tokKind int

const (
	tokWord    tokKind = iota // atom, dot-atom or quoted string (unquoted)
	tokLiteral                // domain literal, brackets included
	tokSpecial                // one of < > , : ; @
)

type token struct {
	kind tokKind
	text string
}

// maxTokens bounds the work one header value can cause.
const maxTokens = 100000

// tokenize splits an address list into tokens. Comments are dropped,
// quoted strings are unquoted (backslash escapes resolved), and white
// space only separates. Unbalanced quotes, comments and literals end at
// the end of the text, as tok822 does.
func tokenize(s string) []token {
	var toks []token
	for i := 0; i < len(s) && len(toks) < maxTokens; {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth := 0
			for ; i < len(s); i++ {
				if s[i] == '\\' {
					i++
					continue
				}
				if s[i] == '(' {
					depth++
				} else if s[i] == ')' {
					depth--
					if depth == 0 {
						i++
						break
					}
				}
			}
		case c == '"':
			var b strings.Builder
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			i++ // the closing quote, if any
			toks = append(toks, token{tokWord, b.String()})
		case c == '[':
			j := i + 1
			for ; j < len(s) && s[j] != ']'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			j = min(j+1, len(s))
			toks = append(toks, token{tokLiteral, s[i:j]})
			i = j
		case strings.IndexByte("<>,:;@", c) >= 0:
			toks = append(toks, token{tokSpecial, s[i : i+1]})
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n()\"[<>,:;@", s[j]) < 0 {
				j++
			}
			toks = append(toks, token{tokWord, s[i:j]})
			i = j
		}
	}
	return toks
}

// Addresses returns the addr-specs of an address list such as the value
// of a To: header or a sendmail command-line argument, in internal
// (unquoted) form: "Joe <joe@example.org>, team: a@x, b@y;, c (C)" gives
// joe@example.org, a@x, b@y and c. Display names, group names, comments
// and source routes are dropped; empty addresses ("<>") are skipped.
func Addresses(s string) []string {
	toks := tokenize(s)
	var out []string
	var cur []token    // tokens of the current mailbox outside <>
	var angle []token  // tokens inside <>, once seen
	haveAngle := false // the current mailbox has an <addr-spec>
	flush := func() {
		var a string
		if haveAngle {
			a = joinAddr(stripRoute(angle))
		} else {
			a = joinAddr(cur)
		}
		if a != "" {
			out = append(out, a)
		}
		cur, angle, haveAngle = cur[:0], nil, false
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind != tokSpecial {
			cur = append(cur, t)
			continue
		}
		switch t.text {
		case "<":
			j := i + 1
			for j < len(toks) && !(toks[j].kind == tokSpecial && toks[j].text == ">") {
				j++
			}
			if !haveAngle {
				angle = append([]token(nil), toks[i+1:j]...)
				haveAngle = true
			}
			i = j
		case ">":
			// A stray '>' is ignored.
		case ":":
			// "name: a, b;" is a group: what came before is its name.
			// Inside <> a colon ends a source route (handled there).
			cur = cur[:0]
		case ",", ";":
			flush()
		case "@":
			cur = append(cur, t)
		}
	}
	flush()
	return out
}

// stripRoute drops an obsolete source route, "@a,@b:" (RFC 5322 §4.4).
func stripRoute(toks []token) []token {
	if len(toks) > 0 && toks[0].kind == tokSpecial && toks[0].text == "@" {
		for i, t := range toks {
			if t.kind == tokSpecial && t.text == ":" {
				return toks[i+1:]
			}
		}
	}
	return toks
}

// joinAddr writes tokens as an address: words joined by a space when two
// follow each other (a phrase used as an address), everything else
// concatenated.
func joinAddr(toks []token) string {
	var b strings.Builder
	prevWord := false
	for _, t := range toks {
		if t.kind == tokSpecial && t.text != "@" {
			continue
		}
		word := t.kind == tokWord
		if word && prevWord {
			b.WriteByte(' ')
		}
		b.WriteString(t.text)
		prevWord = word
	}
	return b.String()
}

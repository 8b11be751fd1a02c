package maillog

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"unicode"
)

// Slog returns an *slog.Logger that writes through l, for leaf packages
// that take a *slog.Logger rather than a *Logger. A record becomes one
// line: the message, then its attributes as "key=value" joined by ", "
// after a colon ("queue file corrupt: id=4BzQ1c2XJhz9v, offset=120");
// values with spaces, quotes, commas or control characters are quoted.
// Levels map to Postfix severities: Debug (only when Verbose) and Info to
// plain lines, Warn to "warning: ", Error and above to "error: ".
func (l *Logger) Slog() *slog.Logger { return slog.New(&handler{l: l}) }

type handler struct {
	l      *Logger
	prefix string // group path, "a.b."
	attrs  string // preformatted attributes, each ", k=v"
}

func (h *handler) Enabled(_ context.Context, lv slog.Level) bool {
	return lv >= slog.LevelInfo || h.l.verbose
}

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.prefix, a)
		return true
	})
	text := r.Message
	if b.Len() > 0 {
		kv := strings.TrimPrefix(b.String(), ", ")
		if text == "" {
			text = kv
		} else {
			text += ": " + kv
		}
	}
	sev := sevInfo
	switch {
	case r.Level >= slog.LevelError:
		sev = sevError
	case r.Level >= slog.LevelWarn:
		sev = sevWarning
	}
	h.l.log(sev, text)
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		writeAttr(&b, h.prefix, a)
	}
	return &handler{l: h.l, prefix: h.prefix, attrs: b.String()}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{l: h.l, prefix: h.prefix + name + ".", attrs: h.attrs}
}

func writeAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			writeAttr(b, p, g)
		}
		return
	}
	b.WriteString(", ")
	b.WriteString(prefix)
	b.WriteString(a.Key)
	b.WriteByte('=')
	v := a.Value.String()
	if needsQuote(v) {
		v = strconv.Quote(v)
	}
	b.WriteString(v)
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if unicode.IsSpace(r) || r == '"' || r == ',' || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

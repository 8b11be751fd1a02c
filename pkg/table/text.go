package table

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

// entries is one loaded generation of a key/value table.
type entries struct {
	m    map[string]string
	keys []string // source order, for Walk
}

// parseText parses a postmap(1) source (or, with o.Aliases, a postalias(1)
// source). Duplicate keys keep the first value and are returned as
// warnings; anything else wrong is an error.
func parseText(file, data string, o Options) (*entries, []*SyntaxError, error) {
	lines, lerr := logicalLines(file, data)
	var errs []error
	if lerr != nil {
		errs = append(errs, lerr)
	}
	e := &entries{m: make(map[string]string)}
	var warns []*SyntaxError
	first := make(map[string]int)
	for _, l := range lines {
		var key, value string
		var err error
		if o.Aliases {
			key, value, err = parseAliasLine(l.text)
		} else {
			var warn string
			key, value, warn, err = parsePostmapLine(l.text)
			if warn != "" {
				warns = append(warns, &SyntaxError{file, l.no, warn})
			}
		}
		if err != nil {
			errs = append(errs, &SyntaxError{file, l.no, err.Error()})
			continue
		}
		key = fold(key, o)
		if n, dup := first[key]; dup {
			warns = append(warns, &SyntaxError{file, l.no, fmt.Sprintf("duplicate entry: %q (first at line %d wins)", key, n)})
			continue
		}
		first[key] = l.no
		e.m[key] = value
		e.keys = append(e.keys, key)
	}
	if len(errs) > 0 {
		return nil, warns, errors.Join(errs...)
	}
	return e, warns, nil
}

// parsePostmapLine splits "key whitespace value". The key ends at the first
// white space outside double quotes; a backslash protects the character
// after it. The key keeps its quotes and backslashes (postmap stores the
// external, quoted form of an address).
func parsePostmapLine(s string) (key, value, warn string, err error) {
	inQuotes := false
	i := 0
scan:
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '"':
			inQuotes = !inQuotes
		case isSpace(c) && !inQuotes:
			break scan
		}
	}
	if inQuotes {
		return "", "", "", errors.New(`unbalanced '"' in key`)
	}
	if i > len(s) {
		i = len(s)
	}
	key = s[:i]
	value = strings.TrimFunc(s[i:], func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
	if value == "" {
		msg := "expected format: key whitespace value"
		if strings.HasSuffix(key, ":") {
			msg += `; the record is in "key: value" format, is this an aliases file (postalias, -a)?`
		}
		return "", "", "", errors.New(msg)
	}
	if strings.HasSuffix(key, ":") {
		warn = `record is in "key: value" format; is this an aliases file?`
	}
	return key, value, warn, nil
}

// parseAliasLine splits an aliases(5) entry "name: value, value". The name
// ends at the first ':' outside double quotes; it must be a local part (no
// unquoted '@', '%' or ',') and is returned unquoted, as Postfix's local(8)
// searches with the internal (unquoted) form. The value is returned as
// written (trimmed); SplitAliasValue splits it.
func parseAliasLine(s string) (name, value string, err error) {
	var b strings.Builder
	inQuotes := false
	colon := -1
scan:
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '"':
			inQuotes = !inQuotes
		case inQuotes:
			b.WriteByte(c)
		case c == ':':
			colon = i
			break scan
		case c == '@' || c == '%':
			return "", "", errors.New("name must be local and have no domain")
		case c == ',':
			return "", "", errors.New("need name:value pair (comma in name)")
		default:
			b.WriteByte(c)
		}
	}
	if inQuotes {
		return "", "", errors.New(`unbalanced '"' in name`)
	}
	if colon < 0 {
		return "", "", errors.New("need name:value pair (no ':')")
	}
	name = strings.TrimSpace(b.String())
	value = strings.TrimSpace(s[colon+1:])
	if name == "" {
		return "", "", errors.New("need name:value pair (empty name)")
	}
	if value == "" {
		return "", "", errors.New(`need name:value pair (empty value; write "" for an empty string)`)
	}
	return name, value, nil
}

// textTable is a key/value table read from a text source into memory and
// reloaded when the file changes.
type textTable struct {
	path  string
	o     Options
	cur   atomic.Pointer[entries]
	watch *watch
}

// sourcePath maps a table name to its text source: Postfix names indexed
// tables without their suffix, but a suffix written out is tolerated.
func sourcePath(name string) string {
	for _, suf := range []string{".db", ".cdb", ".lmdb"} {
		if strings.HasSuffix(name, suf) && len(name) > len(suf) {
			return strings.TrimSuffix(name, suf)
		}
	}
	return name
}

func openText(name string, o Options) (Table, error) {
	if name == "" {
		return nil, errors.New("missing file name")
	}
	t := &textTable{path: sourcePath(name), o: o}
	if err := t.load(); err != nil {
		return nil, err
	}
	if !o.NoWatch {
		t.watch = startWatch(t.path, o.Logger, t.reload)
	}
	return t, nil
}

// load reads and parses the source and installs it.
func (t *textTable) load() error {
	data, err := os.ReadFile(t.path)
	if err != nil {
		return err
	}
	e, warns, err := parseText(t.path, string(data), t.o)
	for _, w := range warns {
		t.o.Logger.Warn(w.Error())
	}
	if err != nil {
		return err
	}
	t.cur.Store(e)
	return nil
}

// reload is called by the watcher after the file changed.
func (t *textTable) reload() {
	if err := t.load(); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			t.o.Logger.Warn(fmt.Sprintf("%s: table source is gone; keeping the previous contents", t.path))
			return
		}
		t.o.Logger.Warn(fmt.Sprintf("%s: reload failed, keeping the previous contents: %v", t.path, oneLine(err)))
		return
	}
	t.o.Logger.Info(fmt.Sprintf("%s: table reloaded, %d entries", t.path, len(t.cur.Load().keys)))
}

func (t *textTable) Lookup(key string) (string, bool, error) {
	v, ok := t.cur.Load().m[fold(key, t.o)]
	return v, ok, nil
}

func (t *textTable) Walk(fn func(key, value string) bool) error {
	e := t.cur.Load()
	for _, k := range e.keys {
		if !fn(k, e.m[k]) {
			break
		}
	}
	return nil
}

func (t *textTable) Close() error {
	t.watch.stop()
	return nil
}

// oneLine joins the lines of a (possibly joined) error with "; " so that it
// fits one log line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

package table

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
)

// staticTable returns its value for every key.
type staticTable struct{ value string }

func openStatic(name string, o Options) (Table, error) {
	v := name
	if strings.HasPrefix(strings.TrimSpace(name), "{") {
		if _, err := bracedList(name); err != nil {
			return nil, &SyntaxError{"static:" + name, 0, err.Error()}
		}
		v = unbrace(name)
	}
	return staticTable{v}, nil
}

func (t staticTable) Lookup(string) (string, bool, error) { return t.value, true, nil }
func (staticTable) Close() error                          { return nil }

// inlineTable is inline:{ key=value, { key = value } }.
type inlineTable struct {
	e *entries
	o Options
}

func openInline(name string, o Options) (Table, error) {
	spec := "inline:" + name
	elems, err := bracedList(name)
	if err != nil {
		return nil, &SyntaxError{spec, 0, err.Error()}
	}
	e := &entries{m: make(map[string]string)}
	var errs []error
	for i, el := range elems {
		braced := strings.HasPrefix(el, "{")
		kv := unbrace(el)
		k, v, ok := strings.Cut(kv, "=")
		if braced {
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		}
		if !ok || k == "" {
			errs = append(errs, &SyntaxError{spec, i + 1, fmt.Sprintf("expected key=value, found %q", kv)})
			continue
		}
		k = fold(k, o)
		if _, dup := e.m[k]; dup {
			o.Logger.Warn(fmt.Sprintf("%s: duplicate entry: %q (the first wins)", spec, k))
			continue
		}
		e.m[k] = v
		e.keys = append(e.keys, k)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return inlineTable{e, o}, nil
}

func (t inlineTable) Lookup(key string) (string, bool, error) {
	v, ok := t.e.m[fold(key, t.o)]
	return v, ok, nil
}

func (t inlineTable) Walk(fn func(key, value string) bool) error {
	for _, k := range t.e.keys {
		if !fn(k, t.e.m[k]) {
			break
		}
	}
	return nil
}

func (inlineTable) Close() error { return nil }

// failTable fails every lookup; the name only labels the error.
type failTable struct{ name string }

func openFail(name string, _ Options) (Table, error) { return failTable{name}, nil }

func (t failTable) Lookup(string) (string, bool, error) {
	return "", false, fmt.Errorf("table fail:%s: lookup failed (fail: table)", t.name)
}
func (failTable) Close() error { return nil }

// openMembers opens each table of "{ type:name, ... }".
func openMembers(typ, name string, o Options) ([]Table, error) {
	elems, err := bracedList(name)
	if err != nil {
		return nil, &SyntaxError{typ + ":" + name, 0, err.Error()}
	}
	if len(elems) == 0 {
		return nil, &SyntaxError{typ + ":" + name, 0, "no tables listed"}
	}
	var ts []Table
	for _, el := range elems {
		t, err := Open(el, o)
		if err != nil {
			closeAll(ts)
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

func closeAll(ts []Table) error {
	var errs []error
	for _, t := range ts {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}

// unionTable asks every member and joins what they found with commas.
type unionTable struct{ members []Table }

func openUnion(name string, o Options) (Table, error) {
	ts, err := openMembers("unionmap", name, o)
	if err != nil {
		return nil, err
	}
	return unionTable{ts}, nil
}

func (t unionTable) Lookup(key string) (string, bool, error) {
	var found []string
	for _, m := range t.members {
		v, ok, err := m.Lookup(key)
		if err != nil {
			return "", false, err
		}
		if ok {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return "", false, nil
	}
	return strings.Join(found, ","), true, nil
}

func (t unionTable) pattern() bool { return anyPattern(t.members) }
func (t unionTable) Close() error  { return closeAll(t.members) }

// pipeTable feeds each member's result to the next member as its key.
type pipeTable struct{ members []Table }

func openPipe(name string, o Options) (Table, error) {
	ts, err := openMembers("pipemap", name, o)
	if err != nil {
		return nil, err
	}
	return pipeTable{ts}, nil
}

func (t pipeTable) Lookup(key string) (string, bool, error) {
	for _, m := range t.members {
		v, ok, err := m.Lookup(key)
		if err != nil || !ok {
			return "", false, err
		}
		key = v
	}
	return key, true, nil
}

func (t pipeTable) pattern() bool { return anyPattern(t.members) }
func (t pipeTable) Close() error  { return closeAll(t.members) }

func anyPattern(ts []Table) bool {
	for _, t := range ts {
		if isPattern(t) {
			return true
		}
	}
	return false
}

// unixTable is unix:passwd.byname or unix:group.byname. The value is the
// passwd(5) or group(5) line. The local files are searched first so the
// line is exact; names only the system's name service knows are answered
// from os/user, with fields it cannot report left empty.
type unixTable struct {
	group bool
	file  string
	o     Options
}

func openUnix(name string, o Options) (Table, error) {
	switch name {
	case "passwd.byname":
		return unixTable{file: "/etc/passwd", o: o}, nil
	case "group.byname":
		return unixTable{group: true, file: "/etc/group", o: o}, nil
	}
	return nil, fmt.Errorf("unknown unix table %q (supported: passwd.byname, group.byname)", name)
}

func (t unixTable) Lookup(key string) (string, bool, error) {
	key = fold(key, t.o)
	if key == "" || strings.ContainsAny(key, ":\n") {
		return "", false, nil
	}
	if line, ok, err := scanColonFile(t.file, key); err != nil || ok {
		return line, ok, err
	}
	if t.group {
		g, err := user.LookupGroup(key)
		if err != nil {
			return "", false, unknownIsNotFound(err)
		}
		return fmt.Sprintf("%s:*:%s:", g.Name, g.Gid), true, nil
	}
	u, err := user.Lookup(key)
	if err != nil {
		return "", false, unknownIsNotFound(err)
	}
	return fmt.Sprintf("%s:*:%s:%s:%s:%s:", u.Username, u.Uid, u.Gid, u.Name, u.HomeDir), true, nil
}

func unknownIsNotFound(err error) error {
	var ue user.UnknownUserError
	var ge user.UnknownGroupError
	if errors.As(err, &ue) || errors.As(err, &ge) {
		return nil
	}
	return err
}

// scanColonFile finds the line of file whose first field is name.
func scanColonFile(file, name string) (string, bool, error) {
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", false, nil
		}
		return "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if first, _, ok := strings.Cut(sc.Text(), ":"); ok && first == name {
			return sc.Text(), true, nil
		}
	}
	return "", false, sc.Err()
}

func (unixTable) Close() error { return nil }

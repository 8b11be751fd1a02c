package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// EditFile changes main.cf at path in place, as postconf -e and -X do.
// Each name in set gets its new value: its first definition is replaced
// by "name = value" and later definitions are dropped; names not yet in
// the file are appended at the end in sorted order. Each name in remove
// loses every definition. Comments, blank lines and the order of
// everything else are kept, including comments inside a continued
// definition that is left alone. A missing file is created (mode 0644).
// The new file is written to a temporary file in the same directory,
// synced and renamed over the old one, so readers see the old or the new
// file, never a mix.
func EditFile(path string, set map[string]string, remove []string) error {
	for name, v := range set {
		if !validName(name) {
			return fmt.Errorf("%s: bad parameter name %q", path, name)
		}
		if strings.ContainsAny(v, "\n\r") {
			return fmt.Errorf("%s: value of %s contains a newline", path, name)
		}
	}
	drop := map[string]bool{}
	for _, name := range remove {
		if !validName(name) {
			return fmt.Errorf("%s: bad parameter name %q", path, name)
		}
		drop[name] = true
	}

	old, err := os.ReadFile(path)
	mode := fs.FileMode(0o644)
	switch {
	case err == nil:
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	default:
		return err
	}
	out := editText(old, set, drop)
	return writeAtomic(path, out, mode)
}

func formatSetting(name, value string) string {
	if value == "" {
		return name + " =\n"
	}
	return name + " = " + strings.TrimSpace(value) + "\n"
}

// editText applies the edit to the text of a main.cf.
func editText(old []byte, set map[string]string, drop map[string]bool) []byte {
	lines := strings.SplitAfter(string(old), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var out bytes.Buffer
	done := map[string]bool{}
	// skipping is true while the continuation lines of a definition that
	// is being replaced or removed go by.
	skipping := false
	for _, l := range lines {
		body := strings.TrimRight(l, "\r\n")
		trimmed := strings.TrimLeft(body, " \t\v\f")
		switch {
		case trimmed == "" || trimmed[0] == '#':
			// Comments inside a removed definition go with it only
			// when they are indented like a continuation.
			if skipping && trimmed != "" && trimmed != body {
				continue
			}
			out.WriteString(l)
			continue
		case trimmed != body: // continuation line
			if skipping {
				continue
			}
			out.WriteString(l)
			continue
		}
		skipping = false
		name, _, ok := splitAssignment(body)
		if !ok {
			out.WriteString(l)
			continue
		}
		if drop[name] {
			skipping = true
			continue
		}
		if v, ok := set[name]; ok {
			skipping = true
			if !done[name] {
				done[name] = true
				out.WriteString(formatSetting(name, v))
			}
			continue
		}
		out.WriteString(l)
	}
	var add []string
	for name := range set {
		if !done[name] && !drop[name] {
			add = append(add, name)
		}
	}
	sort.Strings(add)
	if len(add) > 0 && out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	for _, name := range add {
		out.WriteString(formatSetting(name, set[name]))
	}
	return out.Bytes()
}

// writeAtomic replaces path with data: temp file in the same directory,
// write, fsync, rename, fsync the directory.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return err
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

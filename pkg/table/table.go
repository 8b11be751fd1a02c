// Package table implements Postfix lookup tables, named "type:name"
// wherever main.cf takes a table (alias_maps, virtual_alias_maps,
// transport_maps, access maps, canonical maps, SASL password maps, TLS
// policy maps).
//
// # Contract
//
// Open parses a "type:name" spec and returns a Table. Every Table is safe
// for concurrent use; Lookup returns (value, true, nil) on a match,
// ("", false, nil) when the key is not in the table and a non-nil error only
// when the table cannot answer (fail:, or a member of a union or pipe that
// fails). Close releases the file watch, if any.
//
// Types:
//
//   - texthash, hash, btree, lmdb, cdb: all read the postmap(1) TEXT SOURCE
//     into memory; Postern builds no .db, .cdb or .lmdb file. For
//     "hash:/etc/postfix/virtual" the file read is /etc/postfix/virtual; a
//     trailing ".db", ".cdb" or ".lmdb" in the name is stripped. With
//     Options.Aliases the source is in aliases(5) syntax (postalias(1)),
//     otherwise in postmap(1) syntax. Keys are folded to lower case when
//     loaded and queries are folded before the search (Postfix's
//     DICT_FLAG_FOLD_FIX). The file is reloaded automatically when it
//     changes (see Reloading).
//   - regexp, pcre: regexp_table(5) and pcre_table(5). Both use Go's RE2
//     engine; a pattern RE2 cannot express (backreferences, lookaround,
//     possessive quantifiers, ...) is a load error. Matching is
//     case-insensitive unless the "i" flag toggles it. Results substitute
//     $1, ${1} and $(1); $$ is a literal $. Files are reloaded like the
//     text tables. The Postfix 3.7 inline form "regexp:{ {rule}, {rule} }"
//     is accepted too.
//   - cidr: cidr_table(5), IPv4 and IPv6, network/prefix or exact address,
//     "!pattern", if/endif; first match wins. Also in inline form.
//   - static:value, static:{ text with spaces }.
//   - inline:{ key=value, { key = text with spaces } }.
//   - unionmap:{ type:name, ... } returns every member's result joined with
//     commas; pipemap:{ type:name, ... } feeds each result to the next table
//     as its key.
//   - fail:name fails every lookup.
//   - unix:passwd.byname and unix:group.byname look up the system's user
//     and group databases.
//   - proxy:type:name opens type:name directly (there is no proxymap).
//
// Keys of postmap sources are stored as written: a quoted local part such
// as "a b"@example.com keeps its quotes (postmap's external form), so
// callers query with the quoted form. Aliases names are stored unquoted
// (the form local(8) searches with).
//
// # Searching
//
// Lookup is one exact query. LookupAddress (virtual(5), canonical(5)) and
// LookupLocal (aliases(5)) derive the partial keys Postfix tries; partial
// keys never go to pattern tables. Maps is a main.cf list of tables
// ("hash:/a, regexp:/b") searched in order, and can be given to
// LookupAddress so that each query form is tried on every table before the
// next form, as Postfix does.
//
// # Source syntax and errors
//
// Every file format shares Postfix's logical lines: blank lines and lines
// whose first non-blank character is '#' are ignored, and a line starting
// with white space continues the previous logical line.
//
// A line Postfix's postmap or postalias would skip with a warning (a key
// without a value, an unbalanced quote, an alias without "name:") makes the
// whole load fail instead: a silently missing entry in an access, transport
// or alias table changes where mail goes. Load errors are *SyntaxError
// values ("file:line: what is wrong"), several joined with errors.Join.
// Duplicate keys are not errors: as with postmap, the first entry wins and
// a warning naming file:line is logged.
//
// # Reloading
//
// File-backed tables watch the file's directory with fsnotify (so editors
// that write a new file and rename it over the old one are seen), wait for
// a short quiet period, then reload. A reload that fails keeps the previous
// contents and logs a warning with file:line; a removed file keeps the last
// contents until it reappears. Lookups never block on a reload. One
// fsnotify watcher is shared by all tables of a process, because inotify
// instances are a small per-user resource; if it cannot be created the
// tables poll the file instead.
package table

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Table is an open lookup table.
type Table interface {
	// Lookup searches for key. It is safe for concurrent use.
	Lookup(key string) (value string, found bool, err error)
	// Close stops watching the table's files.
	Close() error
}

// Walker is implemented by tables whose entries can be listed (postmap -s):
// the text tables and inline:. Walk calls fn for every entry, in source
// order, until fn returns false.
type Walker interface {
	Walk(fn func(key, value string) bool) error
}

// Options control how Open reads a table.
type Options struct {
	// Logger receives reloads, reload failures and duplicate-key warnings.
	// nil discards them.
	Logger *slog.Logger
	// Aliases says the file source is in aliases(5) format (postalias(1)),
	// not postmap(1)'s "key value" format.
	Aliases bool
	// NoWatch disables reloading when files change.
	NoWatch bool
	// NoFold disables folding keys to lower case (postmap -f).
	NoFold bool
}

// SyntaxError is a problem in a table source, reported as "file:line: msg".
// For inline specs File is the spec and Line counts the rules from 1.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// opener builds a table from the name part of a spec.
type opener func(name string, o Options) (Table, error)

// openerFor returns the opener of a type. It is a switch rather than a map
// because the union and pipe openers call Open, which would make a package
// map refer to itself.
func openerFor(typ string) opener {
	switch typ {
	case "texthash", "hash", "btree", "lmdb", "cdb":
		return openText
	case "regexp":
		return openRegexp
	case "pcre":
		return openPCRE
	case "cidr":
		return openCIDR
	case "static":
		return openStatic
	case "inline":
		return openInline
	case "unionmap":
		return openUnion
	case "pipemap":
		return openPipe
	case "fail":
		return openFail
	case "unix":
		return openUnix
	}
	return nil
}

var typeNames = []string{
	"btree", "cdb", "cidr", "fail", "hash", "inline", "lmdb", "pcre",
	"pipemap", "proxy", "regexp", "static", "texthash", "unionmap", "unix",
}

// Types returns the supported table types, sorted.
func Types() []string {
	return append([]string(nil), typeNames...)
}

// Open opens the table named by spec ("type:name").
func Open(spec string, o Options) (Table, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	typ, name, ok := strings.Cut(strings.TrimSpace(spec), ":")
	if !ok || typ == "" {
		return nil, fmt.Errorf("table %q: expected type:name (types: %s)", spec, strings.Join(Types(), ", "))
	}
	if typ == "proxy" {
		// Postfix's proxymap(8) shares tables between processes; Postern
		// has none, so the table is opened in this process.
		return Open(name, o)
	}
	op := openerFor(typ)
	if op == nil {
		return nil, fmt.Errorf("table %q: unsupported type %q (supported: %s)", spec, typ, strings.Join(Types(), ", "))
	}
	t, err := op(name, o)
	if err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, fmt.Errorf("table %s: %w", spec, err)
	}
	return t, nil
}

// fold lowers s unless folding is disabled.
func fold(s string, o Options) string {
	if o.NoFold {
		return s
	}
	return strings.ToLower(s)
}

// patternTable is implemented by tables that match patterns against the
// whole key (regexp, pcre, cidr). LookupAddress sends them only the full
// address, as Postfix sends partial keys only to fixed-key tables.
type patternTable interface {
	pattern() bool
}

func isPattern(t Table) bool {
	p, ok := t.(patternTable)
	return ok && p.pattern()
}

// Package postmap is "postern map": Postfix's postmap(1) and postalias(1)
// for Postern's lookup tables (package table).
//
// Postern reads table sources directly, so there is no database to build:
//
//	postern map [options] [type:]name ...
//
// checks each source and prints every problem as "file:line: what is
// wrong", exiting 1 if any table does not load and 0 otherwise (duplicate
// keys are warnings, as with postmap, and do not change the status). A name
// without a type means hash:name.
//
// Options:
//
//	-a        the sources are aliases(5) files (postalias mode); implied when
//	          the program is called postalias
//	-q key    print the value of key from the first table that has it; exit
//	          1 when none has it. With "-q -", read keys from standard input
//	          and print "key<TAB>value" ("key:<TAB>value" in postalias mode)
//	          for every key found; exit 0 when at least one was found
//	-s        print every entry as "key<TAB>value" (only tables that can be
//	          listed: the file types and inline:)
//	-f        do not fold keys to lower case
//	-j        print -q and -s output as one {"key": "value"} object a line
//	-w        do not print duplicate-key warnings
//	-c dir -v -N -n -o -p -r -u -U
//	          accepted for compatibility and ignored
//
// Options that change a database (-d, -i) or query message content (-b, -h,
// -m, -F) have no meaning here and are errors. Lookup errors and usage
// errors exit 1, as with postmap.
package postmap

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"postern/pkg/table"
)

// Main runs postmap with os.Stdin as standard input. args[0] is the program
// name: when its base name is "postalias", aliases mode is on.
func Main(args []string, stdout, stderr io.Writer) int {
	return Run(args, os.Stdin, stdout, stderr)
}

// MainAlias runs postalias: Main with -a implied.
func MainAlias(args []string, stdout, stderr io.Writer) int {
	return run(args, os.Stdin, stdout, stderr, true)
}

// Run is Main with an explicit standard input.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(args, stdin, stdout, stderr, false)
}

type cmd struct {
	prog    string
	aliases bool
	query   string
	hasQ    bool
	show    bool
	noFold  bool
	json    bool
	noWarn  bool
	maps    []string
	stdout  io.Writer
	stderr  io.Writer
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, aliases bool) int {
	c := &cmd{prog: "postern map", aliases: aliases, stdout: stdout, stderr: stderr}
	if len(args) > 0 {
		if args[0] != "" {
			c.prog = filepath.Base(args[0])
		}
		if c.prog == "postalias" {
			c.aliases = true
		}
		args = args[1:]
	}
	if err := c.parseArgs(args); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.prog, err)
		fmt.Fprintf(stderr, "usage: %s [-afjsw] [-q key] [type:]name ...\n", c.prog)
		return 1
	}
	tables, ok := c.open()
	defer func() {
		for _, t := range tables {
			t.t.Close()
		}
	}()
	if !ok {
		return 1
	}
	switch {
	case c.hasQ && c.query == "-":
		return c.queryStream(tables, stdin)
	case c.hasQ:
		return c.queryOne(tables)
	case c.show:
		return c.showAll(tables)
	}
	return 0
}

func (c *cmd) parseArgs(args []string) error {
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			args = args[1:]
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		args = args[1:]
		for i := 1; i < len(a); i++ {
			switch f := a[i]; f {
			case 'a':
				c.aliases = true
			case 's':
				c.show = true
			case 'f':
				c.noFold = true
			case 'j':
				c.json = true
			case 'w':
				c.noWarn = true
			case 'v', 'N', 'n', 'o', 'p', 'r', 'u', 'U':
			case 'c', 'q':
				val := a[i+1:]
				if val == "" {
					if len(args) == 0 {
						return fmt.Errorf("option -%c needs an argument", f)
					}
					val, args = args[0], args[1:]
				}
				if f == 'q' {
					c.query, c.hasQ = val, true
				}
				i = len(a)
			case 'd', 'i':
				return fmt.Errorf("option -%c is not supported: Postern reads the table source itself, edit that file instead", f)
			case 'b', 'h', 'm', 'F':
				return fmt.Errorf("option -%c is not supported", f)
			default:
				return fmt.Errorf("unknown option -%c", f)
			}
		}
	}
	if c.hasQ && c.show {
		return errors.New("-q and -s cannot be used together")
	}
	if len(args) == 0 {
		return errors.New("no table given")
	}
	c.maps = args
	return nil
}

type openTable struct {
	spec string
	t    table.Table
}

// open opens every table, printing problems; ok is false if any failed.
func (c *cmd) open() ([]openTable, bool) {
	var out []openTable
	ok := true
	log := slog.New(&lineHandler{prog: c.prog, w: c.stderr, quiet: c.noWarn})
	for _, spec := range c.maps {
		if !strings.Contains(spec, ":") {
			spec = "hash:" + spec
		}
		t, err := table.Open(spec, table.Options{Logger: log, Aliases: c.aliases, NoWatch: true, NoFold: c.noFold})
		if err != nil {
			ok = false
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintf(c.stderr, "%s: error: %s\n", c.prog, line)
			}
			continue
		}
		out = append(out, openTable{spec, t})
	}
	return out, ok
}

// lookup returns the value of key in the first table that has it.
func (c *cmd) lookup(tables []openTable, key string) (string, bool, error) {
	for _, t := range tables {
		v, ok, err := t.t.Lookup(key)
		if err != nil {
			return "", false, fmt.Errorf("%s: %w", t.spec, err)
		}
		if ok {
			return v, true, nil
		}
	}
	return "", false, nil
}

func (c *cmd) queryOne(tables []openTable) int {
	v, ok, err := c.lookup(tables, c.query)
	if err != nil {
		fmt.Fprintf(c.stderr, "%s: error: %v\n", c.prog, err)
		return 1
	}
	if !ok {
		return 1
	}
	if c.json {
		c.printJSON(c.query, v)
	} else {
		fmt.Fprintln(c.stdout, v)
	}
	return 0
}

func (c *cmd) queryStream(tables []openTable, stdin io.Reader) int {
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	found := false
	for sc.Scan() {
		key := strings.TrimSuffix(sc.Text(), "\r")
		v, ok, err := c.lookup(tables, key)
		if err != nil {
			fmt.Fprintf(c.stderr, "%s: error: %v\n", c.prog, err)
			return 1
		}
		if ok {
			found = true
			c.printEntry(key, v)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(c.stderr, "%s: error: reading keys: %v\n", c.prog, err)
		return 1
	}
	if !found {
		return 1
	}
	return 0
}

func (c *cmd) showAll(tables []openTable) int {
	ok := true
	for _, t := range tables {
		w, can := t.t.(table.Walker)
		if !can {
			fmt.Fprintf(c.stderr, "%s: error: table %s cannot be listed\n", c.prog, t.spec)
			ok = false
			continue
		}
		if err := w.Walk(func(k, v string) bool { c.printEntry(k, v); return true }); err != nil {
			fmt.Fprintf(c.stderr, "%s: error: %s: %v\n", c.prog, t.spec, err)
			ok = false
		}
	}
	if !ok {
		return 1
	}
	return 0
}

func (c *cmd) printEntry(k, v string) {
	switch {
	case c.json:
		c.printJSON(k, v)
	case c.aliases:
		fmt.Fprintf(c.stdout, "%s:\t%s\n", k, v)
	default:
		fmt.Fprintf(c.stdout, "%s\t%s\n", k, v)
	}
}

func (c *cmd) printJSON(k, v string) {
	b, _ := json.Marshal(map[string]string{k: v})
	fmt.Fprintf(c.stdout, "%s\n", b)
}

// lineHandler prints table warnings as "prog: warning: text".
type lineHandler struct {
	prog  string
	w     io.Writer
	quiet bool
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn
}

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	if h.quiet && strings.Contains(r.Message, "duplicate entry") {
		return nil
	}
	_, err := fmt.Fprintf(h.w, "%s: warning: %s\n", h.prog, r.Message)
	return err
}

func (h *lineHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *lineHandler) WithGroup(string) slog.Handler      { return h }

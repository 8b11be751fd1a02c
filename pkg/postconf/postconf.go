// Package postconf is the "postern conf" command: it shows and edits
// Postern's configuration as Postfix's postconf(1) does.
//
// Usage:
//
//	postern conf [-c dir] [-dhnxf] [name ...]
//	postern conf [-c dir] -e name=value ...
//	postern conf [-c dir] -X name ...
//	postern conf [-c dir] -M[f] [service[/type] ...]
//
// Without names, every known parameter is shown as "name = value" with its
// effective value as written (main.cf, else the default); names select
// parameters. -n shows only the parameters set in main.cf, -d shows
// defaults instead of main.cf values (Postern-only parameters are marked
// with "# Postern only"), -h prints values without "name = ", -x expands
// $name references, -f folds long lines. -e sets and -X removes
// parameters in main.cf in place (config.EditFile). -M shows master.cf
// entries, all or those selected by "name", "name/type" or "/type"; -Mf
// puts each -o on its own line. The configuration directory is -c dir,
// else $MAIL_CONFIG, else config.DefaultDir.
//
// An unknown parameter name is reported on stderr as "postern conf:
// warning: NAME: unknown parameter" and does not change the exit status,
// as with postconf. The exit status is 1 for usage errors and for files
// that cannot be read or written, else 0.
package postconf

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"postern/pkg/config"
	"postern/pkg/mastercf"
)

const prog = "postern conf"

type options struct {
	dir                          string
	nflag, dflag, hflag, xflag   bool
	fold, edit, remove, showMast bool
	args                         []string
}

type runner struct {
	opt    options
	stdout io.Writer
	stderr io.Writer
}

// Main runs the command with args (without the program name) and returns
// the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	r := &runner{stdout: stdout, stderr: stderr}
	if err := r.parseFlags(args); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		fmt.Fprintf(stderr, "usage: %s [-c dir] [-dhnxf] [name ...] | -e name=value ... | -X name ... | -M[f] [service[/type] ...]\n", prog)
		return 1
	}
	var err error
	switch {
	case r.opt.edit:
		err = r.runEdit()
	case r.opt.remove:
		err = r.runRemove()
	case r.opt.showMast:
		err = r.runMaster()
	default:
		err = r.runParams()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: fatal: %v\n", prog, err)
		return 1
	}
	return 0
}

func (r *runner) parseFlags(args []string) error {
	o := &r.opt
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			switch a[j] {
			case 'c':
				v := a[j+1:]
				if v == "" {
					if i+1 >= len(args) {
						return errors.New("option -c requires a directory")
					}
					i++
					v = args[i]
				}
				o.dir = v
				j = len(a)
			case 'n':
				o.nflag = true
			case 'd':
				o.dflag = true
			case 'h':
				o.hflag = true
			case 'x':
				o.xflag = true
			case 'f':
				o.fold = true
			case 'e':
				o.edit = true
			case 'X':
				o.remove = true
			case 'M':
				o.showMast = true
			default:
				return fmt.Errorf("unknown option -%c", a[j])
			}
		}
	}
	o.args = args[i:]
	modes := 0
	for _, m := range []bool{o.edit, o.remove, o.showMast} {
		if m {
			modes++
		}
	}
	if modes > 1 {
		return errors.New("-e, -X and -M are mutually exclusive")
	}
	if (o.edit || o.remove) && len(o.args) == 0 {
		return errors.New("-e and -X need at least one argument")
	}
	return nil
}

func (r *runner) warn(format string, args ...any) {
	fmt.Fprintf(r.stderr, "%s: warning: %s\n", prog, fmt.Sprintf(format, args...))
}

// load reads main.cf; with -d a missing main.cf is fine.
func (r *runner) load() (*config.Config, error) {
	dir := config.Dir(r.opt.dir)
	c, err := config.Load(dir)
	if err != nil {
		if r.opt.dflag && errors.Is(err, fs.ErrNotExist) {
			return config.DefaultFor(dir), nil
		}
		return nil, err
	}
	return c, nil
}

// loadMaster reads master.cf for the per-transport parameter names; a
// missing file only loses those names.
func (r *runner) loadMaster(c *config.Config, required bool) ([]mastercf.Service, error) {
	services, warns, err := mastercf.Load(c.Dir(), c.Int("default_process_limit"))
	if err != nil {
		if !required && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	for _, w := range warns {
		r.warn("%s", strings.TrimPrefix(w.String(), "warning: "))
	}
	return services, nil
}

func (r *runner) runParams() error {
	c, err := r.load()
	if err != nil {
		return err
	}
	services, err := r.loadMaster(c, false)
	if err != nil {
		r.warn("%v", err)
	}
	extra := mastercf.ParamNames(services)
	known := func(name string) bool {
		if _, ok := config.Lookup(name); ok {
			return true
		}
		return extra(name) || c.Referenced(name)
	}

	var names []string
	switch {
	case len(r.opt.args) > 0:
		for _, n := range r.opt.args {
			if !known(n) {
				r.warn("%s: unknown parameter", n)
				continue
			}
			if r.opt.nflag {
				if _, set := c.Raw(n); !set {
					continue
				}
			}
			names = append(names, n)
		}
	case r.opt.nflag:
		names = c.Explicit()
	default:
		for _, p := range config.Params() {
			names = append(names, p.Name)
		}
		seen := map[string]bool{}
		for _, n := range names {
			seen[n] = true
		}
		added := false
		for _, n := range c.Explicit() {
			if !seen[n] && known(n) {
				names = append(names, n)
				added = true
			}
		}
		if added {
			sort.Strings(names)
		}
	}

	for _, name := range names {
		p, reg := config.Lookup(name)
		var value string
		if r.opt.dflag {
			value, _ = c.DefaultValue(name)
		} else {
			v, ok := c.Raw(name)
			if !ok {
				v, _ = c.DefaultValue(name)
			}
			value = v
		}
		if r.opt.xflag && !(reg && p.NoExpand) {
			exp, err := c.Expand(value)
			if err != nil {
				r.warn("%s: %v", name, err)
			}
			value = exp
		}
		line := value
		if !r.opt.hflag {
			line = name + " = " + value
			if value == "" {
				line = name + " ="
			}
		}
		if r.opt.fold {
			line = fold(line)
		}
		if r.opt.dflag && reg && p.PosternOnly {
			line += " # Postern only"
		}
		fmt.Fprintln(r.stdout, line)
	}
	return nil
}

func (r *runner) runEdit() error {
	dir := config.Dir(r.opt.dir)
	set := map[string]string{}
	for _, a := range r.opt.args {
		name, value, ok := strings.Cut(a, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return fmt.Errorf("-e requires name=value, not %q", a)
		}
		if _, known := config.Lookup(name); !known {
			r.warn("%s: unknown parameter", name)
		}
		set[name] = strings.TrimSpace(value)
	}
	return config.EditFile(filepath.Join(dir, config.MainFile), set, nil)
}

func (r *runner) runRemove() error {
	dir := config.Dir(r.opt.dir)
	path := filepath.Join(dir, config.MainFile)
	c, err := config.Load(dir)
	if err != nil {
		return err
	}
	var remove []string
	for _, n := range r.opt.args {
		if _, set := c.Raw(n); !set {
			continue
		}
		remove = append(remove, n)
	}
	if len(remove) == 0 {
		return nil
	}
	return config.EditFile(path, nil, remove)
}

func (r *runner) runMaster() error {
	dir := config.Dir(r.opt.dir)
	c, err := config.Load(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		c = config.DefaultFor(dir)
	}
	services, err := r.loadMaster(c, true)
	if err != nil {
		return err
	}
	if len(r.opt.args) > 0 {
		var unmatched []string
		services, unmatched = mastercf.Select(services, r.opt.args)
		for _, u := range unmatched {
			r.warn("unmatched request: %q", u)
		}
	}
	for _, s := range services {
		if r.opt.fold {
			fmt.Fprintln(r.stdout, s.FormatFolded())
		} else {
			fmt.Fprintln(r.stdout, s.Format())
		}
	}
	return nil
}

// fold breaks a "name = value" line at white space so that lines stay
// under 80 columns, continuing with a four-space indent (postconf -f).
func fold(line string) string {
	const width = 79
	if len(line) <= width {
		return line
	}
	var b strings.Builder
	col := 0
	words := strings.Fields(line)
	for i, w := range words {
		switch {
		case i == 0:
		case col+1+len(w) > width && col > 4:
			b.WriteString("\n    ")
			col = 4
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String()
}

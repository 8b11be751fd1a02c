package sendmail

import (
	"path/filepath"
	"strings"
)

// Mode is what one invocation does.
type Mode int

const (
	ModeEnqueue  Mode = iota // -bm, the default: read a message and queue it
	ModeNewAlias             // -bi, -I, newaliases
	ModeMailq                // -bp, mailq
	ModeDaemon               // -bd, -bl: start the mail system
	ModeSMTP                 // -bs: SMTP on stdin/stdout
	ModeFlush                // -q: flush the queue
	ModeIgnore               // -bh, -bH, -q<interval>: nothing to do
)

// Options is the parsed command line.
type Options struct {
	Mode       Mode
	ConfigDir  string // -C (directory; a path ending in main.cf is cut to its directory)
	Sender     string // -f or -r, as given
	HaveSender bool
	FullName   string // -F
	HaveName   bool
	Extract    bool   // -t
	DotEnds    bool   // a lone "." ends the input (cleared by -i, -oi)
	Notify     string // -N, normalised: "NEVER" or a subset of "SUCCESS,DELAY,FAILURE"
	Ret        string // -R: "FULL" or "HDRS"
	EnvID      string // -V
	BodyType   string // -B: "7BIT" or "8BITMIME"
	SMTPUTF8   bool   // -O smtputf8=yes
	Remote     bool   // -G: gateway submission, remote rewrite context
	Verbose    int    // -v count
	// Trace: -v given exactly once in delivery mode asks for a report of
	// the first delivery attempt; more than one -v means verbose output
	// instead (Postfix: "The -v option plays double duty").
	Trace      bool
	AliasFile  string // -oA
	Recipients []string
	Warnings   []string // ignored values, to report on stderr
}

// optArg lists the options that take an argument (Postfix's getopt
// string "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx").
const optArg = "ABCFLNORVXbefhopqr"

// optFlag lists the options without an argument.
const optFlag = "GIUcimntvx"

// ParseArgs parses the command line of sendmail invoked as argv0 (its
// base name picks mailq or newaliases mode). Option parsing stops at the
// first argument that is not an option, or after "--"; the rest are
// recipients. Errors are *Error with ExUsage.
func ParseArgs(argv0 string, args []string) (*Options, error) {
	o := &Options{DotEnds: true}
	switch filepath.Base(argv0) {
	case "mailq":
		o.Mode = ModeMailq
	case "newaliases":
		o.Mode = ModeNewAlias
	}
	var qInterval, qSite, qID bool
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
		if a == "-q" {
			o.Mode = ModeFlush
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			if strings.IndexByte(optFlag, c) >= 0 {
				switch c {
				case 'G':
					o.Remote = true
				case 'I':
					o.Mode = ModeNewAlias
				case 'i':
					o.DotEnds = false
				case 'n':
					return nil, fatalf(ExUsage, "-n option not supported")
				case 't':
					o.Extract = true
				case 'v':
					o.Verbose++
				}
				continue
			}
			if strings.IndexByte(optArg, c) < 0 {
				return nil, fatalf(ExUsage, "usage: %s [options] [recipient ...]: invalid option -%c", filepath.Base(argv0), c)
			}
			val := a[j+1:]
			if val == "" {
				if i+1 >= len(args) {
					return nil, fatalf(ExUsage, "option -%c requires an argument", c)
				}
				i++
				val = args[i]
			}
			if err := o.set(c, val, &qInterval, &qSite, &qID); err != nil {
				return nil, err
			}
			break
		}
	}
	o.Recipients = args[i:]
	if o.Extract && o.Mode != ModeEnqueue {
		return nil, fatalf(ExUsage, "-t can be used only in delivery mode")
	}
	if (qSite || qID) && o.Mode != ModeEnqueue {
		return nil, fatalf(ExUsage, "-qR and -qI can be used only in delivery mode")
	}
	if qSite || qID {
		return nil, fatalf(ExUsage, "-qR and -qI are not supported; use sendmail -q")
	}
	if qInterval && o.Mode != ModeDaemon {
		o.Mode = ModeIgnore
	}
	if o.Mode != ModeEnqueue && len(o.Recipients) > 0 {
		return nil, fatalf(ExUsage, "%s mode requires no recipient", o.Mode)
	}
	o.Trace = o.Verbose == 1 && o.Mode == ModeEnqueue
	return o, nil
}

func (o *Options) set(c byte, val string, qInterval, qSite, qID *bool) error {
	switch c {
	case 'B':
		switch val {
		case "8BITMIME", "7BIT":
			o.BodyType = val
		default:
			return fatalf(ExUsage, "-B option needs 8BITMIME or 7BIT")
		}
	case 'C':
		if filepath.Base(val) == "main.cf" {
			val = filepath.Dir(val)
		}
		o.ConfigDir = val
	case 'F':
		o.FullName, o.HaveName = val, true
	case 'N':
		n, ok := parseNotify(val)
		if !ok {
			o.Warnings = append(o.Warnings, "bad -N option value: '"+val+"' -- ignored")
		} else {
			o.Notify = n
		}
	case 'O':
		name, v, _ := strings.Cut(val, "=")
		if strings.EqualFold(name, "smtputf8") {
			switch {
			case strings.EqualFold(v, "yes"):
				o.SMTPUTF8 = true
			case strings.EqualFold(v, "no"):
				o.SMTPUTF8 = false
			default:
				o.Warnings = append(o.Warnings, "bad -O option: '"+val+"' -- ignored")
			}
		}
	case 'R':
		switch strings.ToLower(val) {
		case "full":
			o.Ret = "FULL"
		case "hdrs":
			o.Ret = "HDRS"
		default:
			o.Warnings = append(o.Warnings, "bad -R option value -- ignored")
		}
	case 'V':
		if len(val) > 100 {
			o.Warnings = append(o.Warnings, "too long -V option value -- ignored")
		} else if !printableTab(val) {
			o.Warnings = append(o.Warnings, "bad syntax in -V option value -- ignored")
		} else {
			o.EnvID = val
		}
	case 'X':
		return fatalf(ExUsage, "unsupported: -X%s (VERP is not supported)", val)
	case 'b':
		switch val[0] {
		case 'd', 'l':
			o.Mode = ModeDaemon
		case 'h', 'H':
			o.Mode = ModeIgnore
		case 'i':
			o.Mode = ModeNewAlias
		case 'm':
			o.Mode = ModeEnqueue
		case 'p':
			o.Mode = ModeMailq
		case 's':
			o.Mode = ModeSMTP
		default:
			return fatalf(ExUsage, "unsupported: -b%c", val[0])
		}
	case 'f', 'r':
		o.Sender, o.HaveSender = val, true
	case 'o':
		switch val[0] {
		case 'A':
			if len(val) == 1 {
				return fatalf(ExUsage, "-oA requires pathname")
			}
			o.AliasFile = val[1:]
		case 'i':
			o.DotEnds = false
		}
	case 'q':
		switch {
		case val[0] >= '0' && val[0] <= '9':
			*qInterval = true
		case val[0] == 'R':
			if len(val) == 1 {
				return fatalf(ExUsage, "specify: -qRsitename")
			}
			*qSite = true
		case val[0] == 'I':
			if len(val) == 1 {
				return fatalf(ExUsage, "specify: -qIqueueid")
			}
			*qID = true
		default:
			return fatalf(ExUsage, "-q%c is not implemented", val[0])
		}
	}
	// -A, -L, -e, -h, -p: accepted and ignored, as Postfix does.
	return nil
}

func (m Mode) String() string {
	switch m {
	case ModeNewAlias:
		return "alias initialization"
	case ModeMailq:
		return "display queue"
	case ModeDaemon:
		return "daemon"
	case ModeSMTP:
		return "stand-alone"
	case ModeFlush:
		return "flush queue"
	}
	return "delivery"
}

// parseNotify normalises a -N value (RFC 3461 NOTIFY): "never", or a
// comma-separated subset of success, delay, failure.
func parseNotify(v string) (string, bool) {
	var have [3]bool
	names := [3]string{"SUCCESS", "DELAY", "FAILURE"}
	never := false
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		switch strings.ToUpper(f) {
		case "NEVER":
			never = true
		case "SUCCESS":
			have[0] = true
		case "DELAY":
			have[1] = true
		case "FAILURE":
			have[2] = true
		default:
			return "", false
		}
	}
	if never {
		if have[0] || have[1] || have[2] {
			return "", false
		}
		return "NEVER", true
	}
	var out []string
	for i, h := range have {
		if h {
			out = append(out, names[i])
		}
	}
	if len(out) == 0 {
		return "", false
	}
	return strings.Join(out, ","), true
}

func printableTab(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < ' ' && s[i] != '\t') || s[i] > '~' {
			return false
		}
	}
	return true
}

package mastercf

import (
	"strconv"
	"strings"
)

// columnStops are where postconf -M starts each of the first eight
// columns; a longer field pushes the rest of the line right by at least
// one space.
var columnStops = [8]int{0, 11, 17, 25, 33, 41, 49, 57}

// Format returns s as one normalized master.cf line, as postconf -M
// prints it: aligned columns, "-" where the file had it, then the
// command, its -o overrides and its other arguments. Arguments with white
// space or braces at the start are written as "{ ... }" groups, so the
// line parses back to the same service.
func (s Service) Format() string {
	var b strings.Builder
	s.writeColumns(&b)
	for _, o := range s.Overrides {
		b.WriteString(" -o ")
		b.WriteString(formatOverride(o))
	}
	for _, a := range s.Args {
		b.WriteByte(' ')
		b.WriteString(quoteArg(a))
	}
	return b.String()
}

// FormatFolded is Format with each -o on its own indented continuation
// line and the other arguments on one more, as postconf -Mf prints.
func (s Service) FormatFolded() string {
	var b strings.Builder
	s.writeColumns(&b)
	for _, o := range s.Overrides {
		b.WriteString("\n    -o ")
		b.WriteString(formatOverride(o))
	}
	if len(s.Args) > 0 {
		b.WriteString("\n   ")
		for _, a := range s.Args {
			b.WriteByte(' ')
			b.WriteString(quoteArg(a))
		}
	}
	return b.String()
}

func (s Service) writeColumns(b *strings.Builder) {
	fields := [8]string{s.Name, s.Type}
	for i := range s.cols {
		fields[2+i] = s.cols[i]
	}
	if fields[2] == "" {
		fields[2] = yn(s.Private)
		fields[3] = yn(s.Unpriv)
		fields[4] = yn(s.Chroot)
		fields[5] = "-"
		if s.Wakeup > 0 {
			fields[5] = strconv.Itoa(int(s.Wakeup.Seconds()))
			if s.WakeupIfUsed {
				fields[5] += "?"
			}
		}
		fields[6] = strconv.Itoa(s.Maxproc)
	}
	fields[7] = s.Command
	for i, f := range fields {
		if i > 0 {
			pad := columnStops[i] - b.Len()
			if pad < 1 {
				pad = 1
			}
			b.WriteString(strings.Repeat(" ", pad))
		}
		b.WriteString(f)
	}
}

func yn(v bool) string {
	if v {
		return "y"
	}
	return "n"
}

func formatOverride(o Override) string {
	v := o.Name + "=" + o.Value
	if strings.ContainsAny(o.Value, " \t\n\r\v\f") {
		return "{ " + v + " }"
	}
	return v
}

func quoteArg(a string) string {
	if needsGroup(a) {
		return "{ " + a + " }"
	}
	return a
}

// needsGroup reports whether a value must be wrapped in braces to stay
// one argument.
func needsGroup(v string) bool {
	return v == "" || strings.ContainsAny(v, " \t\n\r\v\f") || v[0] == '{' || v[0] == '#'
}

package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Severities of a Problem.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Problem is one finding of Check.
type Problem struct {
	File     string
	Line     int
	Severity string // SeverityError or SeverityWarning
	Msg      string
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if loc == "" {
		return fmt.Sprintf("%s: %s", p.Severity, p.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Severity, p.Msg)
}

// transportSuffixes are the per-transport parameter families: for a
// master.cf transport T, "T_<suffix>" overrides "default_<suffix>" (or
// "transport_<suffix>" for time_limit), as in Postfix.
var transportSuffixes = []string{
	"delivery_slot_cost", "delivery_slot_discount", "delivery_slot_loan",
	"destination_concurrency_failed_cohort_limit", "destination_concurrency_limit",
	"destination_concurrency_negative_feedback", "destination_concurrency_positive_feedback",
	"destination_rate_delay", "destination_recipient_limit", "extra_recipient_limit",
	"initial_destination_concurrency", "minimum_delivery_slots", "recipient_limit",
	"recipient_refill_delay", "recipient_refill_limit", "transport_rate_delay", "time_limit",
}

// TransportParam reports whether name is a per-transport parameter
// ("relay_destination_concurrency_limit", "uucp_time_limit") of a
// transport for which isTransport is true.
func TransportParam(name string, isTransport func(string) bool) bool {
	for _, suf := range transportSuffixes {
		t, ok := strings.CutSuffix(name, "_"+suf)
		if ok && t != "" && isTransport(t) {
			return true
		}
	}
	return false
}

// TransportKind returns the kind and default unit of a per-transport
// parameter name, from its default_ (or transport_) counterpart.
func TransportKind(name string) (Kind, byte, bool) {
	for _, suf := range transportSuffixes {
		if !strings.HasSuffix(name, "_"+suf) {
			continue
		}
		for _, base := range []string{"default_" + suf, "transport_" + suf} {
			if p, ok := Lookup(base); ok {
				return p.Kind, p.Unit, true
			}
		}
	}
	return String, 0, false
}

// Check validates the parameters set in main.cf and by Set. Values that
// do not expand (loops, malformed "${...}") or do not parse as their
// kind (boolean, number, time, size) are errors. An unknown name is a
// warning "unknown parameter NAME", unless extraNames accepts it (the
// caller's per-service and per-transport names, see TransportParam) or
// another value refers to it as $NAME. A registered name Postern does not
// implement is a warning "parameter NAME is not supported by Postern and
// is ignored". Problems come sorted by file and line.
func (c *Config) Check(extraNames func(string) bool) []Problem {
	var probs []Problem
	referenced := c.referencedNames()
	check := func(name, file string, line int) {
		add := func(sev, msg string) {
			probs = append(probs, Problem{File: file, Line: line, Severity: sev, Msg: msg})
		}
		p, known := Lookup(name)
		kind, unit := p.Kind, p.Unit
		switch {
		case known && !p.Supported:
			add(SeverityWarning, fmt.Sprintf("parameter %s is not supported by Postern and is ignored", name))
		case known:
		case extraNames != nil && extraNames(name):
			kind, unit, _ = TransportKind(name)
		case referenced[name]:
			kind = String
		default:
			add(SeverityWarning, fmt.Sprintf("unknown parameter %s", name))
			return
		}
		if known && p.NoExpand {
			return
		}
		v, err := c.GetErr(name)
		if err != nil {
			add(SeverityError, fmt.Sprintf("parameter %s: %v", name, err))
			return
		}
		if msg := validate(kind, unit, v); msg != "" {
			add(SeverityError, fmt.Sprintf("bad %s value for parameter %s: %q", msg, name, truncate(v, 60)))
		}
	}
	for name, s := range c.main {
		if _, over := c.override[name]; over {
			continue
		}
		check(name, c.file, s.line)
	}
	for name := range c.override {
		file, line := c.Line(name)
		if file == "" {
			file = "override"
		}
		check(name, file, line)
	}
	// A mailbox limit below the message size limit bounces mail that
	// smtpd accepted. Postfix's local(8) and virtual(8) refuse to start
	// then; Postern warns (its tests use tiny mailbox limits on purpose).
	msgLimit := c.Size("message_size_limit")
	for _, name := range []string{"mailbox_size_limit", "virtual_mailbox_limit"} {
		if v := c.Size(name); v > 0 && msgLimit > 0 && v < msgLimit {
			file, line := c.Line(name)
			if file == "" {
				file, line = c.Line("message_size_limit")
			}
			probs = append(probs, Problem{File: file, Line: line, Severity: SeverityWarning,
				Msg: fmt.Sprintf("%s (%d) is smaller than message_size_limit (%d): larger mail is accepted, then bounced", name, v, msgLimit)})
		}
	}
	sort.SliceStable(probs, func(i, j int) bool {
		if probs[i].File != probs[j].File {
			return probs[i].File < probs[j].File
		}
		if probs[i].Line != probs[j].Line {
			return probs[i].Line < probs[j].Line
		}
		return probs[i].Msg < probs[j].Msg
	})
	return probs
}

// validate returns "" when v is a valid value of kind, else the name of
// the kind for the error message.
func validate(kind Kind, unit byte, v string) string {
	switch kind {
	case Bool:
		if _, ok := parseBool(v); !ok {
			return "boolean"
		}
	case Int:
		if _, err := strconv.Atoi(strings.TrimSpace(v)); err != nil {
			return "numerical"
		}
	case Time:
		if unit == 0 {
			unit = 's'
		}
		if _, err := ParseDuration(v, unit); err != nil {
			return "time"
		}
	case Size:
		if _, err := ParseSize(v); err != nil {
			return "size"
		}
	}
	return ""
}

// Referenced reports whether a main.cf value or an override refers to
// name with $name, ${name...} or $(name...); postconf and Check accept such
// user-defined helper parameters.
func (c *Config) Referenced(name string) bool {
	return c.referencedNames()[name]
}

// referencedNames collects every name that a main.cf value or override
// refers to with $name, ${name...} or $(name...), so user-defined helper
// parameters are not reported as unknown.
func (c *Config) referencedNames() map[string]bool {
	refs := map[string]bool{}
	scan := func(s string) {
		for i := 0; i < len(s); i++ {
			if s[i] != '$' || i+1 >= len(s) {
				continue
			}
			j := i + 1
			if s[j] == '$' {
				i++
				continue
			}
			if s[j] == '{' || s[j] == '(' {
				j++
			}
			k := j
			for k < len(s) && isNameByte(s[k]) {
				k++
			}
			if k > j {
				refs[s[j:k]] = true
			}
		}
	}
	for _, s := range c.main {
		scan(s.value)
	}
	for _, v := range c.override {
		scan(v)
	}
	return refs
}

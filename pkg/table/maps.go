package table

import (
	"errors"
	"fmt"
)

// SplitSpecs splits a main.cf list of tables ("hash:/etc/aliases,
// inline:{ a=b, c=d } regexp:/etc/x") into its specs: separated by commas
// and/or white space, except inside braces.
func SplitSpecs(value string) ([]string, error) {
	elems, err := bracedList("{" + value + "}")
	if err != nil {
		return nil, fmt.Errorf("table list %q: %v", value, err)
	}
	return elems, nil
}

// Maps is a list of tables searched the way Postfix searches a parameter
// such as "virtual_alias_maps = hash:/a, regexp:/b": each key goes to the
// tables in order and the first that has it answers; an error stops the
// search. Passed to LookupAddress, each query form (user@domain, user,
// @domain, ...) is tried on every table before the next form, and the
// partial forms go only to the fixed-key members.
type Maps struct {
	tables []Table
}

// OpenMaps opens every table of a main.cf list (see SplitSpecs). An empty
// list gives a Maps that finds nothing.
func OpenMaps(value string, o Options) (*Maps, error) {
	specs, err := SplitSpecs(value)
	if err != nil {
		return nil, err
	}
	m := &Maps{}
	for _, s := range specs {
		t, err := Open(s, o)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.tables = append(m.tables, t)
	}
	return m, nil
}

// NewMaps makes a Maps of tables already open; Close closes them.
func NewMaps(tables ...Table) *Maps {
	return &Maps{tables: tables}
}

// Tables returns the member tables in search order.
func (m *Maps) Tables() []Table { return append([]Table(nil), m.tables...) }

func (m *Maps) Lookup(key string) (string, bool, error) {
	for _, t := range m.tables {
		v, ok, err := t.Lookup(key)
		if err != nil || ok {
			return v, ok, err
		}
	}
	return "", false, nil
}

func (m *Maps) Close() error {
	var errs []error
	for _, t := range m.tables {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}

// fixedPart returns the members that take partial keys, or nil.
func (m *Maps) fixedPart() Table {
	var fixed []Table
	for _, t := range m.tables {
		if f := fixedPart(t); f != nil {
			fixed = append(fixed, f)
		}
	}
	switch len(fixed) {
	case 0:
		return nil
	case len(m.tables):
		return m
	}
	return &Maps{tables: fixed}
}

// partialSplitter is implemented by tables made of others (Maps).
type partialSplitter interface {
	fixedPart() Table
}

// fixedPart returns the table (or the part of it) that LookupAddress may
// send partial keys such as user@domain or @domain: nil for pattern tables,
// which Postfix searches with the full key only.
func fixedPart(t Table) Table {
	if p, ok := t.(partialSplitter); ok {
		return p.fixedPart()
	}
	if isPattern(t) {
		return nil
	}
	return t
}

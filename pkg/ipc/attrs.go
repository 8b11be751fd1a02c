package ipc

import (
	"fmt"
	"strconv"
	"strings"
)

// Attr is one name/value pair of a frame. Both are binary-safe.
type Attr struct{ Name, Value string }

// Attrs is the content of one frame, in wire order. Names may repeat
// (a list of recipients is several "rcpt" attributes); Get and the typed
// accessors return the first match.
type Attrs []Attr

// Add appends a string attribute.
func (a *Attrs) Add(name, value string) { *a = append(*a, Attr{name, value}) }

// AddInt appends an integer attribute in decimal.
func (a *Attrs) AddInt(name string, v int64) { a.Add(name, strconv.FormatInt(v, 10)) }

// AddBool appends a boolean attribute as "1" or "0".
func (a *Attrs) AddBool(name string, v bool) {
	if v {
		a.Add(name, "1")
	} else {
		a.Add(name, "0")
	}
}

// Get returns the value of the first attribute called name.
func (a Attrs) Get(name string) (string, bool) {
	for _, x := range a {
		if x.Name == name {
			return x.Value, true
		}
	}
	return "", false
}

// All returns the values of every attribute called name, in order.
func (a Attrs) All(name string) []string {
	var out []string
	for _, x := range a {
		if x.Name == name {
			out = append(out, x.Value)
		}
	}
	return out
}

// Str returns the value of the first attribute called name, or "" if absent.
func (a Attrs) Str(name string) string {
	v, _ := a.Get(name)
	return v
}

// Int parses the first attribute called name as a decimal int64. A missing
// or malformed attribute is an error that names it.
func (a Attrs) Int(name string) (int64, error) {
	v, ok := a.Get(name)
	if !ok {
		return 0, fmt.Errorf("ipc: missing attribute %q", name)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ipc: attribute %q: bad integer %q", name, v)
	}
	return n, nil
}

// Bool reports whether the first attribute called name is true: "1", "t",
// "true" (any case), as strconv.ParseBool accepts. Absent or anything else
// is false.
func (a Attrs) Bool(name string) bool {
	v, ok := a.Get(name)
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

// Require returns an error listing every name that has no attribute, or nil.
func (a Attrs) Require(names ...string) error {
	var missing []string
	for _, n := range names {
		if _, ok := a.Get(n); !ok {
			missing = append(missing, strconv.Quote(n))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("ipc: missing attribute(s) %s", strings.Join(missing, ", "))
}

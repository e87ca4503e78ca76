package scenarios

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// lineError is a mistake located at a line of a scenario file.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// nodeDecoder is implemented by field types that read their own YAML node (a count
// given as a number or as min/max, a raw policy subtree, an ordered key list).
type nodeDecoder interface {
	decodeYAML(n *yaml.Node, path string) error
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	nodeDecoderType = reflect.TypeFor[nodeDecoder]()
)

// decoder walks a yaml.Node tree into Go values field by field, so that every
// mistake names its field and line, unknown keys are refused, and each field's
// line is remembered for later checks (lines, by dotted path).
type decoder struct {
	lines map[string]int
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		d.lines[path] = n.Line
	}
	name := path
	if name == "" {
		name = "the scenario"
	}
	if v.Kind() == reflect.Pointer {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := d.decode(n, p.Elem(), path); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		return v.Addr().Interface().(nodeDecoder).decodeYAML(n, name)
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			return &lineError{n.Line, fmt.Sprintf("%s: expected a single value, got a %s", name, kindName(n))}
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			return &lineError{n.Line, fmt.Sprintf("%s: %v", name, err)}
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return &lineError{n.Line, fmt.Sprintf("%s: expected a mapping of keys, got a %s", name, kindName(n))}
		}
		fields := map[string]int{}
		var known []string
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			fields[tag] = i
			known = append(known, tag)
		}
		sort.Strings(known)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			idx, ok := fields[k.Value]
			if !ok {
				return &lineError{k.Line, fmt.Sprintf("unknown key %q in %s; known keys: %s", k.Value, name, strings.Join(known, ", "))}
			}
			if seen[k.Value] {
				return &lineError{k.Line, fmt.Sprintf("key %q given twice in %s", k.Value, name)}
			}
			seen[k.Value] = true
			if err := d.decode(val, v.Field(idx), join(path, k.Value)); err != nil {
				return err
			}
		}
		if f := v.FieldByName("Line"); f.IsValid() && f.Kind() == reflect.Int && f.CanSet() {
			f.SetInt(int64(n.Line))
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if n.Kind == yaml.ScalarNode && n.Value != "" {
				// A single value where a list is expected: a list of one.
				s := reflect.MakeSlice(v.Type(), 1, 1)
				if err := d.decode(n, s.Index(0), path); err != nil {
					return err
				}
				v.Set(s)
				return nil
			}
			return &lineError{n.Line, fmt.Sprintf("%s: expected a list, got a %s", name, kindName(n))}
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode || v.Type().Key().Kind() != reflect.String {
			return &lineError{n.Line, fmt.Sprintf("%s: expected a mapping of keys, got a %s", name, kindName(n))}
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Value == "" {
				return &lineError{k.Line, fmt.Sprintf("%s: keys must be plain names", name)}
			}
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				return &lineError{k.Line, fmt.Sprintf("key %q given twice in %s", k.Value, name)}
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, e, join(path, k.Value)); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		v.Set(m)
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return &lineError{n.Line, fmt.Sprintf("%s: expected a single value, got a %s", name, kindName(n))}
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool, reflect.Int, reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			return &lineError{n.Line, fmt.Sprintf("%s: expected a single value, got a %s", name, kindName(n))}
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			want := "a whole number"
			switch v.Kind() {
			case reflect.Bool:
				want = "true or false"
			case reflect.Float64:
				want = "a number"
			}
			return &lineError{n.Line, fmt.Sprintf("%s: %q is not %s", name, n.Value, want)}
		}
		return nil
	}
	return &lineError{n.Line, fmt.Sprintf("%s: cannot be set from YAML", name)}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty value"
		}
		return fmt.Sprintf("value %q", n.Value)
	}
	return "node"
}

// Duration is a time.Duration written "3s", "500ms" or "1m" in scenario files.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q; write one like 3s, 500ms or 1m", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d Duration) String() string { return time.Duration(d).String() }

// Count is an expected number: "count: 3", or "min"/"max" beside it in an
// expectation. Exact, when set, wins.
type Count struct {
	Exact    *int `json:"exactly,omitempty"`
	Min, Max *int `json:",omitempty"`
}

func (c Count) isZero() bool { return c.Exact == nil && c.Min == nil && c.Max == nil }

// ok reports whether n satisfies c.
func (c Count) ok(n int) bool {
	if c.Exact != nil && n != *c.Exact {
		return false
	}
	if c.Min != nil && n < *c.Min {
		return false
	}
	if c.Max != nil && n > *c.Max {
		return false
	}
	return true
}

func (c Count) String() string {
	switch {
	case c.Exact != nil:
		return fmt.Sprintf("= %d", *c.Exact)
	case c.Min != nil && c.Max != nil:
		return fmt.Sprintf("in %d..%d", *c.Min, *c.Max)
	case c.Min != nil:
		return fmt.Sprintf(">= %d", *c.Min)
	case c.Max != nil:
		return fmt.Sprintf("<= %d", *c.Max)
	}
	return "any"
}

// Settings is an ordered list of policy keys and values ("timeouts.tcp.established: 10s").
type Settings []Setting

// Setting is one dotted policy key and its YAML value.
type Setting struct {
	Key, Value string
	Line       int
}

func (s *Settings) decodeYAML(n *yaml.Node, path string) error {
	if n.Kind != yaml.MappingNode {
		return &lineError{n.Line, fmt.Sprintf("%s: expected a mapping of policy keys to values, like orphan: pickup", path)}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return &lineError{v.Line, fmt.Sprintf("%s.%s: expected a single value; write nested keys dotted, like timeouts.tcp.established: 10s", path, k.Value)}
		}
		*s = append(*s, Setting{Key: k.Value, Value: v.Value, Line: k.Line})
	}
	return nil
}

// rawNode keeps a YAML subtree as it is, for a later parser (the policy block).
type rawNode struct{ node *yaml.Node }

func (r *rawNode) decodeYAML(n *yaml.Node, path string) error {
	r.node = n
	return nil
}

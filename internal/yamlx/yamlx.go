// Package yamlx decodes a parsed YAML document (a yaml.v3 Node tree) into Go
// values strictly and with line numbers, for the module's hand-written files
// (policies, scenarios).
//
// The contract of Decoder.Decode:
//
//   - A struct is read from a mapping by its fields' yaml tags (the part before
//     any comma); untagged, "-" and unexported fields are not keys. A key that
//     is not a field is an error naming the key, the enclosing path and the
//     known keys. A struct with an int field named Line gets the line of its
//     mapping.
//   - A type whose pointer implements NodeDecoder reads its own node; one whose
//     pointer implements encoding.TextUnmarshaler is read from a single value's
//     text, so durations, enums and addresses never fall back to bare numbers.
//   - A slice is read from a list, or from a single non-empty value as a list
//     of one; a map with string keys from a mapping; a pointer is allocated
//     unless the value is empty (null); string, bool, int and float64 from a
//     single value.
//   - Every error is an *Error: the line, then the dotted path of the value
//     ("timeouts.tcp.established", "steps[3].wait") or the decoder's Name for
//     the top level, then what is wrong.
//   - The line of every value decoded is recorded in Lines by its path, so that
//     later checks of the decoded value can point at the line too.
//
// Following aliases and refusing repeated keys are options; without them an
// alias is a value of the wrong kind and a repeated key overrides the earlier.
package yamlx

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a mistake located at a line of the YAML input.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Errorf returns an *Error at line with a message formatted as by fmt.Sprintf.
func Errorf(line int, format string, a ...any) error {
	return &Error{Line: line, Msg: fmt.Sprintf(format, a...)}
}

// NodeDecoder is implemented by (pointers to) types that read their own YAML
// node, e.g. a value written either as a number or as a mapping. name is the
// path of the value for messages; errors should be *Error.
type NodeDecoder interface {
	DecodeYAML(n *yaml.Node, name string) error
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	nodeDecoderType     = reflect.TypeFor[NodeDecoder]()
)

// Decoder holds the options of a decoding. The zero value works: it calls the
// top level "the document" and records no lines.
type Decoder struct {
	// Name is what messages call the top-level value, e.g. "the policy".
	Name string
	// Lines, when not nil, receives the line of each decoded value by its path.
	Lines map[string]int
	// RootKeys are top-level keys the caller handles itself (and removes from
	// the node) before decoding; they are listed among the known keys.
	RootKeys []string
	// FollowAliases decodes an alias (*name) as the node it refers to.
	FollowAliases bool
	// UniqueKeys refuses a key given twice in one mapping.
	UniqueKeys bool
}

// Decode decodes n into the value v points to, as the package comment says.
func (d *Decoder) Decode(n *yaml.Node, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("yamlx: Decode needs a non-nil pointer, got %T", v)
	}
	return d.decode(n, rv.Elem(), "")
}

func (d *Decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	if d.FollowAliases && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" && d.Lines != nil {
		d.Lines[path] = n.Line
	}
	name := path
	if name == "" {
		name = d.Name
		if name == "" {
			name = "the document"
		}
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
		return v.Addr().Interface().(NodeDecoder).DecodeYAML(n, name)
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		if n.Kind != yaml.ScalarNode {
			return Errorf(n.Line, "%s: expected a single value, got %s", name, KindName(n))
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			return Errorf(n.Line, "%s: %v", name, err)
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		return d.decodeStruct(n, v, path, name)
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
			return Errorf(n.Line, "%s: expected a list, got %s", name, KindName(n))
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
			return Errorf(n.Line, "%s: expected a mapping of keys, got %s", name, KindName(n))
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Value == "" {
				return Errorf(k.Line, "%s: keys must be plain names", name)
			}
			key := reflect.ValueOf(k.Value).Convert(v.Type().Key())
			if d.UniqueKeys && m.MapIndex(key).IsValid() {
				return Errorf(k.Line, "key %q given twice in %s", k.Value, name)
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, e, Join(path, k.Value)); err != nil {
				return err
			}
			m.SetMapIndex(key, e)
		}
		v.Set(m)
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return Errorf(n.Line, "%s: expected a single value, got %s", name, KindName(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool, reflect.Int, reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			return Errorf(n.Line, "%s: expected a single value, got %s", name, KindName(n))
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			want := "a whole number"
			switch v.Kind() {
			case reflect.Bool:
				want = "true or false"
			case reflect.Float64:
				want = "a number"
			}
			return Errorf(n.Line, "%s: %q is not %s", name, n.Value, want)
		}
		return nil
	}
	return Errorf(n.Line, "%s: cannot be set from YAML", name)
}

func (d *Decoder) decodeStruct(n *yaml.Node, v reflect.Value, path, name string) error {
	if n.Kind != yaml.MappingNode {
		return Errorf(n.Line, "%s: expected a mapping of keys, got %s", name, KindName(n))
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
	if path == "" {
		known = append(known, d.RootKeys...)
	}
	sort.Strings(known)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		idx, ok := fields[k.Value]
		if !ok {
			return Errorf(k.Line, "unknown key %q in %s; known keys: %s", k.Value, name, strings.Join(known, ", "))
		}
		if d.UniqueKeys && seen[k.Value] {
			return Errorf(k.Line, "key %q given twice in %s", k.Value, name)
		}
		seen[k.Value] = true
		if err := d.decode(val, v.Field(idx), Join(path, k.Value)); err != nil {
			return err
		}
	}
	if f := v.FieldByName("Line"); f.IsValid() && f.Kind() == reflect.Int && f.CanSet() {
		f.SetInt(int64(n.Line))
	}
	return nil
}

// Join appends key to a dotted path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// KindName describes n, with its article, for "expected ..., got KIND" messages:
// a mapping, a list, an alias, an empty value, or the value "text".
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "an empty value"
		}
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "a node"
}

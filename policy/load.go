package policy

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/idlegate/idlegate/internal/yamlx"
)

// Load reads a policy from YAML over Default. An unknown key, a value of the wrong
// kind or an unusable value is an error naming the key and its line.
//
// A document may name a built-in profile with a top-level `from: NAME` (by convention
// its first line): the policy then starts from that profile instead of Default, and
// the document's other keys override it. An unknown profile is an error naming it, its
// line and the known profiles.
func Load(r io.Reader) (Policy, error) {
	return LoadOver(Default(), r)
}

// LoadOver is Load starting from base instead of Default (a `from:` key still
// replaces base with its profile).
func LoadOver(base Policy, r io.Reader) (Policy, error) {
	p := base.clone()
	if err := p.apply(r); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Set changes one key, written as a dotted path ("timeouts.tcp.established") with a
// YAML value ("10s"), and validates the result; on error p is unchanged.
func (p *Policy) Set(key, value string) error {
	parts := strings.Split(key, ".")
	var b strings.Builder
	for i, part := range parts {
		if part == "" {
			return fmt.Errorf("bad key %q; write one like timeouts.tcp.established", key)
		}
		b.WriteString(strings.Repeat("  ", i))
		b.WriteString(part)
		b.WriteString(":")
		if i < len(parts)-1 {
			b.WriteString("\n")
		}
	}
	b.WriteString(" ")
	b.WriteString(value)
	b.WriteString("\n")
	q := p.clone()
	if err := q.apply(strings.NewReader(b.String())); err != nil {
		// The one-line document makes line numbers meaningless; name the key instead.
		var le *yamlx.Error
		if errors.As(err, &le) {
			return fmt.Errorf("%s", le.Msg)
		}
		return err
	}
	*p = q
	return nil
}

func (p *Policy) apply(r io.Reader) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(r)
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil // an empty file is the default policy
		}
		return fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if err := p.applyFrom(root); err != nil {
		return err
	}
	lines := map[string]int{}
	d := yamlx.Decoder{Name: "the policy", Lines: lines, RootKeys: []string{fromKey}}
	if err := d.Decode(root, p); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			if line, ok := lines[fe.path]; ok {
				return &yamlx.Error{Line: line, Msg: fe.Error()}
			}
		}
		return err
	}
	return nil
}

// fromKey is the top-level key that starts a policy from a built-in profile.
const fromKey = "from"

// applyFrom handles a top-level `from: NAME`: p becomes the profile's policy and the
// key is removed from root, so that the rest of the document overrides the profile.
func (p *Policy) applyFrom(root *yaml.Node) error {
	if root.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != fromKey {
			continue
		}
		if v.Kind != yaml.ScalarNode || v.Value == "" {
			return yamlx.Errorf(v.Line, "from: expected a profile name, e.g. from: aws-nat-gateway; known profiles: %s", strings.Join(ProfileNames(), ", "))
		}
		pr, err := LookupProfile(v.Value)
		if err != nil {
			return yamlx.Errorf(v.Line, "from: unknown profile %q; known profiles: %s", v.Value, strings.Join(ProfileNames(), ", "))
		}
		*p = pr.Policy()
		root.Content = append(root.Content[:i:i], root.Content[i+2:]...)
		return nil
	}
	return nil
}

// YAML renders the policy as a complete YAML document with every key.
func (p Policy) YAML() string {
	b, err := yaml.Marshal(p)
	if err != nil {
		return fmt.Sprintf("# cannot render policy: %v\n", err)
	}
	return string(b)
}

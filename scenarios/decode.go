package scenarios

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/idlegate/idlegate/internal/yamlx"
)

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

// DecodeYAML reads the settings in file order (yamlx.NodeDecoder).
func (s *Settings) DecodeYAML(n *yaml.Node, path string) error {
	if n.Kind != yaml.MappingNode {
		return yamlx.Errorf(n.Line, "%s: expected a mapping of policy keys to values, like orphan: pickup", path)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return yamlx.Errorf(v.Line, "%s.%s: expected a single value; write nested keys dotted, like timeouts.tcp.established: 10s", path, k.Value)
		}
		*s = append(*s, Setting{Key: k.Value, Value: v.Value, Line: k.Line})
	}
	return nil
}

// rawNode keeps a YAML subtree as it is, for a later parser (the policy block).
type rawNode struct{ node *yaml.Node }

// DecodeYAML keeps n as it is (yamlx.NodeDecoder).
func (r *rawNode) DecodeYAML(n *yaml.Node, path string) error {
	r.node = n
	return nil
}

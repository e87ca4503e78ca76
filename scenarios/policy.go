package scenarios

import (
	"bytes"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/idlegate/idlegate/internal/yamlx"
	"github.com/idlegate/idlegate/policy"
)

// loadPolicy builds the scenario's starting policy: the built-in profile named by
// `profile:` (else Linux's defaults), then the `policy:` block over it, then `scale:`
// on every timeout. The block goes through policy.LoadOver as a document of its own,
// so everything a policy file accepts works here, `from: PROFILE` included; its errors
// are moved back to the scenario file's lines.
func (s *Scenario) loadPolicy() (policy.Policy, error) {
	n := s.PolicyYAML.node
	if n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		n = nil
	}
	if n != nil && n.Kind != yaml.MappingNode {
		return policy.Policy{}, yamlx.Errorf(n.Line, "policy: expected a mapping of policy keys, got %s", yamlx.KindName(n))
	}
	base := policy.Default()
	if s.Profile != "" {
		var err error
		if base, err = policy.ProfilePolicy(s.Profile); err != nil {
			return policy.Policy{}, s.at("profile", "%v", err)
		}
	}
	p := base
	if n != nil {
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(n); err != nil {
			return policy.Policy{}, yamlx.Errorf(n.Line, "policy: %v", err)
		}
		enc.Close()
		var err error
		if p, err = policy.LoadOver(base, bytes.NewReader(buf.Bytes())); err != nil {
			return policy.Policy{}, relocate(err, buf.Bytes(), n)
		}
	}
	if s.Scale != 0 {
		var err error
		if p, err = p.Scale(s.Scale); err != nil {
			return policy.Policy{}, s.at("scale", "%v", err)
		}
	}
	return p, nil
}

var loadLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// relocate turns "line N: msg" of the re-encoded policy block into an error at the
// matching line of the scenario file.
func relocate(err error, encoded []byte, orig *yaml.Node) error {
	m := loadLine.FindStringSubmatch(err.Error())
	if m == nil {
		return &yamlx.Error{Line: orig.Line, Msg: "policy: " + err.Error()}
	}
	n, _ := strconv.Atoi(m[1])
	var re yaml.Node
	if yaml.Unmarshal(encoded, &re) != nil || len(re.Content) == 0 {
		return &yamlx.Error{Line: orig.Line, Msg: "policy: " + m[2]}
	}
	lines := map[int]int{}
	mapLines(re.Content[0], orig, lines)
	line, ok := lines[n]
	if !ok {
		line = orig.Line
	}
	return &yamlx.Error{Line: line, Msg: "policy: " + m[2]}
}

// mapLines records, for each node of a (re-encoded) tree, the line of the same node
// in the original tree; the first node on a line wins.
func mapLines(a, b *yaml.Node, out map[int]int) {
	if _, ok := out[a.Line]; !ok {
		out[a.Line] = b.Line
	}
	for i := 0; i < len(a.Content) && i < len(b.Content); i++ {
		mapLines(a.Content[i], b.Content[i], out)
	}
}

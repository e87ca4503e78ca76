package yamlx

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type inner struct {
	Ratio float64 `yaml:"ratio"`
	Line  int     `yaml:"-"`
}

type doc struct {
	Name  string            `yaml:"name"`
	Count int               `yaml:"count"`
	Tags  []string          `yaml:"tags"`
	Env   map[string]string `yaml:"env"`
	In    *inner            `yaml:"in"`
	Other inner             `yaml:"other"`
}

func parse(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return n.Content[0]
}

func TestDecode(t *testing.T) {
	var v doc
	d := Decoder{Name: "the doc", Lines: map[string]int{}}
	src := "name: x\ncount: 3\ntags: one\nenv: {A: b}\nin:\n  ratio: 0.5\n"
	if err := d.Decode(parse(t, src), &v); err != nil {
		t.Fatal(err)
	}
	if v.Name != "x" || v.Count != 3 || len(v.Tags) != 1 || v.Env["A"] != "b" || v.In == nil || v.In.Ratio != 0.5 || v.In.Line != 6 {
		t.Errorf("decoded %+v (in %+v)", v, v.In)
	}
	if d.Lines["in.ratio"] != 6 || d.Lines["tags"] != 3 {
		t.Errorf("lines %v", d.Lines)
	}
}

func TestErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		d    Decoder
		src  string
		want string
	}{
		{"unknown", Decoder{Name: "the doc", RootKeys: []string{"from"}}, "nam: x", `line 1: unknown key "nam" in the doc; known keys: count, env, from, in, name, other, tags`},
		{"kind", Decoder{}, "other: 5", `line 1: other: expected a mapping of keys, got the value "5"`},
		{"empty", Decoder{}, "other:", `line 1: other: expected a mapping of keys, got an empty value`},
		{"float", Decoder{}, "other: {ratio: half}", `line 1: other.ratio: "half" is not a number`},
		{"alias refused", Decoder{}, "in: &a {ratio: 1}\nother: *a", `line 2: other: expected a mapping of keys, got an alias`},
		{"twice", Decoder{UniqueKeys: true}, "name: a\nname: b", `line 2: key "name" given twice in the document`},
	} {
		var v doc
		err := c.d.Decode(parse(t, c.src), &v)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %s", c.name, err, c.want)
		}
	}
}

func TestOptions(t *testing.T) {
	var v doc
	d := Decoder{FollowAliases: true}
	if err := d.Decode(parse(t, "in: &a {ratio: 1}\nother: *a"), &v); err != nil || v.Other.Ratio != 1 {
		t.Errorf("alias: %v, %+v", err, v)
	}
	v = doc{}
	if err := (&Decoder{}).Decode(parse(t, "name: a\nname: b"), &v); err != nil || v.Name != "b" {
		t.Errorf("repeated key without UniqueKeys: %v, %q", err, v.Name)
	}
	if err := (&Decoder{}).Decode(parse(t, "x: 1"), v); err == nil || !strings.Contains(err.Error(), "pointer") {
		t.Errorf("non-pointer: %v", err)
	}
}

package control

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// jsonFields are the JSON member names of struct type t, embedded structs flattened.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

type schema struct {
	Properties map[string]json.RawMessage `json:"properties"`
	AllOf      []struct {
		Ref        string                     `json:"$ref"`
		Properties map[string]json.RawMessage `json:"properties"`
	} `json:"allOf"`
}

// TestOpenAPISchemas: the checked-in document's schemas have exactly the JSON
// members of the types the gateway writes.
func TestOpenAPISchemas(t *testing.T) {
	var doc struct {
		OpenAPI    string `json:"openapi"`
		Components struct {
			Schemas map[string]schema `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json is OpenAPI %q, want 3.x", doc.OpenAPI)
	}
	props := func(name string) []string {
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Fatalf("openapi.json has no schema %s", name)
		}
		var out []string
		for k := range s.Properties {
			out = append(out, k)
		}
		for _, part := range s.AllOf {
			for k := range part.Properties {
				out = append(out, k)
			}
			if ref, ok := strings.CutPrefix(part.Ref, "#/components/schemas/"); ok {
				for k := range doc.Components.Schemas[ref].Properties {
					out = append(out, k)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	for name, v := range map[string]any{
		"Conn": Conn{}, "Tuple": Tuple{}, "ICMP": ICMP{}, "PerDir": PerDir{}, "Event": Event{}, "Stats": Stats{},
		"TableStats": TableStats{}, "SideStats": SideStats{}, "PcapRequest": PcapRequest{}, "PcapAnswer": PcapAnswer{},
		"PcapStatus": PcapStatus{}, "PcapInfo": PcapInfo{}, "Lab": Lab{}, "Side": Side{}, "PolicyView": PolicyView{},
		"Version": Version{}, "TimeoutRequest": TimeoutRequest{}, "Wedge": Wedge{}, "WedgeSide": WedgeSide{}, "Networks": Networks{},
	} {
		if got, want := props(name), jsonFields(reflect.TypeOf(v)); !slices.Equal(got, want) {
			t.Errorf("schema %s has properties %v; the Go type writes %v", name, got, want)
		}
	}
}

package scenarios

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/policy"
)

const ciDoc = "../docs/ci.md"

// resultsFields pins the JSON of `scenario run -o json` (ResultsSchema v1): the
// fields of each object, every one present when set. A change here is a change of
// the schema: it needs a new ResultsSchema, and docs/ci.md says what changed.
var resultsFields = map[string][]string{
	"Results":       {"schema", "pass", "passed", "failed", "not_run", "started", "duration_s", "reports"},
	"Report":        {"name", "title", "file", "lab", "verdict", "pass", "error", "started", "duration_s", "profile", "scale", "policy", "timeline", "expectations", "gateway", "processes", "warnings"},
	"Check":         {"expect", "why", "line", "pass", "got"},
	"Row":           {"t", "column", "text"},
	"ProcessReport": {"name", "side", "agent", "started", "running_at_end", "exit", "signal"},
}

// TestResultsJSON marshals results with every field set and compares each object's
// field names with resultsFields and with docs/ci.md's tables, where users read them.
func TestResultsJSON(t *testing.T) {
	r := sampleResults()
	// Set what the sample leaves empty, so that every optional field appears.
	rep := r.Reports[1]
	rep.Error, rep.Profile, rep.Scale = "an error", "aws-alb", 6
	rep.Timeline = []Row{{T: 1, Column: "gateway", Text: "x"}}
	rep.Processes = []ProcessReport{{Name: "p", Side: "server", Agent: "tcp-echo-server", Started: true, Exit: new(int), Signal: "KILL"}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{"Results": keys(top)}
	reports := top["reports"].([]any)
	one := reports[1].(map[string]any)
	got["Report"] = keys(one)
	got["Check"] = keys(one["expectations"].([]any)[0].(map[string]any))
	got["Row"] = keys(one["timeline"].([]any)[0].(map[string]any))
	got["ProcessReport"] = keys(one["processes"].([]any)[0].(map[string]any))
	doc := docFields(t)
	for obj, want := range resultsFields {
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(got[obj], want) {
			t.Errorf("%s has JSON fields %v, pinned %v: a changed schema needs a new ResultsSchema", obj, got[obj], want)
		}
		if !slices.Equal(doc[obj], want) {
			t.Errorf("docs/ci.md documents %s as %v, the JSON has %v", obj, doc[obj], want)
		}
	}
	if top["schema"] != ResultsSchema || !strings.Contains(string(mustRead(t, ciDoc)), "`"+ResultsSchema+"`") {
		t.Errorf("schema %v; docs/ci.md must name %s", top["schema"], ResultsSchema)
	}
	for _, c := range GatewayCounters {
		if !strings.Contains(string(mustRead(t, ciDoc)), "`"+c+"`") {
			t.Errorf("docs/ci.md does not name the gateway counter %s", c)
		}
	}
}

// TestResultsEmpty: a report of a story that never got going has [] and {} for its
// lists and counters, never null, and the lists of a run are [] when empty.
func TestResultsEmpty(t *testing.T) {
	now := time.Now()
	r := NewResults([]*Scenario{{Name: "a"}, {Name: "b"}}, []*Report{{Name: "a", Verdict: "FAIL", Error: "lab did not start", Policy: policy.Default()}, nil}, now, now)
	if r.Pass || r.Failed != 1 || r.Passed != 0 || !slices.Equal(r.NotRun, []string{"b"}) {
		t.Errorf("results %+v", r)
	}
	b, _ := json.Marshal(r)
	var top struct {
		Reports []map[string]json.RawMessage `json:"reports"`
	}
	if err := json.Unmarshal(b, &top); err != nil || len(top.Reports) != 1 {
		t.Fatalf("%v: %s", err, b)
	}
	for _, k := range []string{"timeline", "expectations", "gateway", "processes"} {
		if v := string(top.Reports[0][k]); v != "[]" && v != "{}" {
			t.Errorf("%s of a story that never got going is %s, want empty", k, v)
		}
	}
	b, _ = json.Marshal(NewResults(nil, nil, now, now))
	for _, want := range []string{`"not_run":[]`, `"reports":[]`, `"pass":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("empty run %s lacks %s", b, want)
		}
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// docFields reads docs/ci.md's field tables: after a line "**Object** ...", the
// backquoted names in the first column.
func docFields(t *testing.T) map[string][]string {
	t.Helper()
	head := regexp.MustCompile("^\\*\\*([A-Za-z]+)\\*\\*")
	row := regexp.MustCompile("^\\| `([a-z_0-9]+)` \\|")
	out := map[string][]string{}
	obj := ""
	for _, line := range strings.Split(string(mustRead(t, ciDoc)), "\n") {
		if m := head.FindStringSubmatch(line); m != nil {
			obj = m[1]
			continue
		}
		if m := row.FindStringSubmatch(line); m != nil && obj != "" {
			out[obj] = append(out[obj], m[1])
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/idlegate/idlegate/internal/junitcheck"
	"github.com/idlegate/idlegate/scenarios"
)

// TestScenarioCI plays real stories with --junit and -o json: the JUnit file meets
// the schema's requirements and has one testcase per expectation of each story, and
// the JSON of one scenario and of two has the same shape (scenarios.Results).
func TestScenarioCI(t *testing.T) {
	needRoot(t)
	t.Parallel()
	dir := t.TempDir()
	junit := filepath.Join(dir, "two.xml")
	two := idlegate(t, "scenario", "run", "idle-reset", "idle-drop", "--parallel", "2", "--junit", junit, "-o", "json")
	one := idlegate(t, "scenario", "run", "idle-reset", "-o", "json")
	for _, r := range []result{two, one} {
		if r.code != 0 {
			t.Fatalf("scenario run: %v", r)
		}
	}

	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	suites, err := junitcheck.Check(b)
	if err != nil {
		t.Fatalf("the JUnit file: %v\n%s", err, b)
	}
	if len(suites) != 2 {
		t.Fatalf("%d testsuites, want 2", len(suites))
	}
	for i, name := range []string{"idle-reset", "idle-drop"} {
		sc, err := scenarios.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		s := suites[i]
		if s.Name != name || len(s.Cases) != len(sc.Expect) {
			t.Errorf("testsuite %d: %s with %d testcases, want %s with %d (one per expectation)", i, s.Name, len(s.Cases), name, len(sc.Expect))
			continue
		}
		for j, e := range sc.Expect {
			if s.Cases[j].Name != e.String() || s.Cases[j].Failure != "" || s.Cases[j].Error != "" {
				t.Errorf("%s testcase %d: %+v, want %q passed", name, j, s.Cases[j], e.String())
			}
		}
		if !strings.Contains(s.SystemOut, "PASS "+name) || !strings.Contains(s.SystemOut, "| gateway") {
			t.Errorf("%s: system-out lacks the timeline and verdict:\n%s", name, s.SystemOut)
		}
	}

	shape := func(out string) (map[string]any, []string, []string) {
		t.Helper()
		var top map[string]any
		if err := json.Unmarshal([]byte(out), &top); err != nil {
			t.Fatalf("-o json: %v\n%s", err, out)
		}
		var rep map[string]any
		if reps, _ := top["reports"].([]any); len(reps) > 0 {
			rep, _ = reps[0].(map[string]any)
		}
		return top, keysOf(top), keysOf(rep)
	}
	topOne, keysOne, repOne := shape(one.stdout)
	topTwo, keysTwo, repTwo := shape(two.stdout)
	if !slices.Equal(keysOne, keysTwo) || !slices.Equal(repOne, repTwo) {
		t.Errorf("one scenario's JSON has %v (report %v), two have %v (report %v): want one shape", keysOne, repOne, keysTwo, repTwo)
	}
	if topOne["schema"] != scenarios.ResultsSchema || topOne["pass"] != true || topOne["passed"] != 1.0 ||
		topTwo["passed"] != 2.0 || len(topTwo["reports"].([]any)) != 2 {
		t.Errorf("one: %v %v %v; two: %v %v", topOne["schema"], topOne["pass"], topOne["passed"], topTwo["passed"], len(topTwo["reports"].([]any)))
	}
}

// TestScenarioJUnitRefused: a --junit path that cannot be written is refused before
// any story plays, in one sentence, exit 2.
func TestScenarioJUnitRefused(t *testing.T) {
	needRoot(t)
	path := filepath.Join(t.TempDir(), "no-such-dir", "x.xml")
	r := want(t, 2, "scenario", "run", "idle-reset", "--junit", path)
	if !strings.Contains(r.stderr, "--junit "+path+": no such file or directory") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.stdout != "" {
		t.Errorf("%v", r)
	}
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

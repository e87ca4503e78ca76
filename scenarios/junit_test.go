package scenarios

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/internal/junitcheck"
	"github.com/idlegate/idlegate/policy"
)

// sampleResults is a run of four scenarios: one passed, one failed an expectation,
// one could not be played to its end, one was never played.
func sampleResults() *Results {
	start := time.Date(2026, 12, 3, 13, 12, 12, 0, time.FixedZone("CET", 3600))
	exit0 := 0
	pass := &Report{
		Name: "idle-reset", Title: "A RST after idling", Lab: "sc1-1", Verdict: "PASS", Pass: true, Started: start, Duration: 5.7,
		Profile: "aws-nat-gateway", Scale: 0.01, Policy: policy.Default(),
		Timeline: []Row{{T: 0.352, Column: "client", Text: "client/c1 idle 5s"}, {T: 5.353, Column: "client", Text: "client/c1 => RESET (ECONNRESET) \x1b[0m"}},
		Checks: []Check{
			{Expect: "client/c1 outcome reset", Line: 30, Pass: true, Got: "reset (ECONNRESET) at 5.4s"},
			{Expect: "gateway expired >= 1", Line: 33, Pass: true, Got: "1"},
			{Expect: `client prints "<reset> & done"`, Line: 35, Pass: true, Got: "as expected"},
		},
		Gateway:   map[string]uint64{"new": 1, "expired": 1},
		Processes: []ProcessReport{{Name: "client", Side: "client", Agent: "tcp-client", Started: true, Exit: &exit0}},
	}
	fail := &Report{
		Name: "tcp-keepalive-saves:scale", Title: "Keepalive saves it", File: "story.yaml", Lab: "sc1-2", Verdict: "FAIL", Started: start.Add(time.Second), Duration: 31,
		Policy: policy.Default(),
		Checks: []Check{
			{Expect: "kept/c1 outcome ok", Why: "the probes keep the entry", Line: 41, Pass: false, Got: "reset (ECONNRESET) at 30.1s"},
			{Expect: "gateway keepalive_probes >= 2", Line: 44, Pass: true, Got: "5"},
		},
		Warnings: []string{"2 gateway events were lost"},
	}
	broken := &Report{Name: "ssh-idle-session", Title: "ssh", Verdict: "FAIL", Error: "setup: ssh-keygen: not found", Started: start, Policy: policy.Default()}
	list := []*Scenario{{Name: pass.Name}, {Name: fail.Name}, {Name: broken.Name}, {Name: "nat-remap"}}
	return NewResults(list, []*Report{pass, fail, broken, nil}, start, start.Add(40*time.Second))
}

// TestJUnit: the document meets the schema's requirements (junitcheck), has one
// testsuite per scenario and one testcase per expectation, carries each failed
// expectation's message, and the timeline in system-out.
func TestJUnit(t *testing.T) {
	r := sampleResults()
	var b bytes.Buffer
	if err := r.WriteJUnit(&b, "ci-runner-7"); err != nil {
		t.Fatal(err)
	}
	suites, err := junitcheck.Check(b.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(suites) != 4 {
		t.Fatalf("%d testsuites, want 4 (three played, one not)", len(suites))
	}
	root, _ := junitcheck.Parse(b.Bytes())
	for i, s := range root.Children {
		if s.Attrs["hostname"] != "ci-runner-7" || s.Attrs["package"] != JUnitPackage {
			t.Errorf("testsuite %d: hostname %q package %q", i, s.Attrs["hostname"], s.Attrs["package"])
		}
	}
	if ts := root.Children[0].Attrs["timestamp"]; ts != "2026-12-03T12:12:12" {
		t.Errorf("timestamp %q, want the start in UTC without a zone", ts)
	}
	for i, rep := range r.Reports {
		s := suites[i]
		if s.Name != rep.Name {
			t.Errorf("testsuite %d is %q, want %q", i, s.Name, rep.Name)
		}
		want := len(rep.Checks)
		if rep.Error != "" {
			want++
		}
		if len(s.Cases) != want {
			t.Errorf("%s: %d testcases, want %d (one per expectation, one more for a story that did not end)", rep.Name, len(s.Cases), want)
			continue
		}
		for j, c := range rep.Checks {
			tc := s.Cases[j]
			if tc.Name != c.Expect || tc.Classname != JUnitPackage+"."+rep.Name {
				t.Errorf("%s testcase %d: %q in %q, want %q in %q", rep.Name, j, tc.Name, tc.Classname, c.Expect, JUnitPackage+"."+rep.Name)
			}
			if c.Pass != (tc.Failure == "" && tc.Error == "") {
				t.Errorf("%s testcase %q: failure %q, want one only if the expectation failed", rep.Name, tc.Name, tc.Failure)
			}
			if !c.Pass && (tc.Failure != c.Expect+", got "+c.Got || tc.Type != "expectation" || !strings.Contains(tc.Text, c.Why)) {
				t.Errorf("%s failure: message %q type %q text %q", rep.Name, tc.Failure, tc.Type, tc.Text)
			}
		}
		if !strings.Contains(s.SystemOut, rep.VerdictLine()) || !strings.Contains(s.SystemOut, "=== "+rep.Name) {
			t.Errorf("%s: system-out lacks the printed run:\n%s", rep.Name, s.SystemOut)
		}
		if strings.Join(rep.Warnings, "\n") != s.SystemErr {
			t.Errorf("%s: system-err %q, want the warnings", rep.Name, s.SystemErr)
		}
	}
	if !strings.Contains(suites[0].SystemOut, "client/c1 => RESET (ECONNRESET)") {
		t.Errorf("system-out lacks the timeline:\n%s", suites[0].SystemOut)
	}
	if c := suites[2].Cases[0]; c.Error != "setup: ssh-keygen: not found" || c.Type != "story" {
		t.Errorf("the story that did not end: %+v", c)
	}
	if c := suites[3]; c.Name != "nat-remap" || len(c.Cases) != 1 || !strings.Contains(c.Cases[0].Error, "not played") {
		t.Errorf("the scenario not played: %+v", c)
	}
}

// TestJUnitEmpty: a run that played nothing is still a valid document.
func TestJUnitEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := NewResults(nil, nil, time.Now(), time.Now()).WriteJUnit(&b, ""); err != nil {
		t.Fatal(err)
	}
	if suites, err := junitcheck.Check(b.Bytes()); err != nil || len(suites) != 0 {
		t.Fatalf("%v, %d suites\n%s", err, len(suites), b.String())
	}
}

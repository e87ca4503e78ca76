package report

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/idlegate/idlegate/scenarios"
	"github.com/idlegate/idlegate/scenarios/agent"
)

// FromScenario makes the report of a scenario run: the story's texts, expectations
// and verdict, and the pictures of what crossed the gateway (rep.Capture, which the
// run keeps when scenarios.Options.Capture asks for it), replayed with the story's
// policy and its flush and set steps. What the processes printed (the timeline's
// client and server columns) is drawn as notes on their lifelines.
func FromScenario(sc *scenarios.Scenario, rep *scenarios.Report) (*Report, error) {
	if rep.Capture == nil {
		return nil, errors.New("the run kept no capture for its report; run it with scenarios.Options.Capture (scenario run --html)")
	}
	end := rep.Origin.Add(time.Duration(rep.Duration * float64(time.Second)))
	summary := scenarios.PolicySummary(rep.Profile, rep.Scale, rep.Policy)
	r, err := FromCapture(rep.Name, bytes.NewReader(rep.Capture), CaptureOptions{
		Policy: rep.Policy, PolicyName: summary, Actions: rep.Actions, Start: rep.Origin, End: end,
		Title: rep.Name + ": " + rep.Title, Subtitle: subtitle(sc, rep),
	})
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", rep.Name, err)
	}
	r.Kind = FromScenarioRun
	st := &Story{
		Name: rep.Name, Title: rep.Title, Pass: rep.Pass, Verdict: rep.Verdict, VerdictLine: rep.VerdictLine(),
		Error: rep.Error, Warnings: rep.Warnings, PolicySummary: summary,
	}
	if sc != nil {
		st.Concept, st.Tale, st.Fix = reflow(sc.Concept), reflow(sc.Story), reflow(sc.Fix)
	}
	for _, c := range rep.Checks {
		st.Checks = append(st.Checks, Check{Expect: c.Expect, Got: c.Got, Why: c.Why, Pass: c.Pass})
	}
	if g := rep.Gateway; g != nil {
		st.GatewayCounts = fmt.Sprintf("%d new, %d expired, %d evicted, %d closed, %d flushed, %d keepalive probes, %d orphans, %d RST/ICMP sent",
			g["new"], g["expired"], g["evicted"], g["closed"], g["flushed"], g["keepalive_probes"], g["orphans"], g["resets"])
	}
	r.Story = st
	// What the processes said, on their lifelines.
	v := &r.Views[0]
	for _, row := range rep.Timeline {
		on := Client
		switch row.Column {
		case "client":
		case "server":
			on = Server
		default:
			continue // the gateway's column: the pictures draw it from the capture
		}
		v.Sequence.Notes = append(v.Sequence.Notes, Note{At: time.Duration(row.T * float64(time.Second)), On: on, Text: row.Text, Alarm: alarming(row.Text)})
	}
	sortNotes(v.Sequence.Notes)
	return r, nil
}

// reflow joins the lines of a scenario's text block into paragraphs: the file breaks
// lines for its own width, the page for its own. A blank line ends a paragraph.
func reflow(s string) string {
	var paras []string
	for _, p := range strings.Split(strings.TrimSpace(s), "\n\n") {
		paras = append(paras, strings.Join(strings.Fields(p), " "))
	}
	return strings.Join(paras, "\n\n")
}

func subtitle(sc *scenarios.Scenario, rep *scenarios.Report) string {
	s := "scenario " + rep.Name
	if sc != nil && sc.File != "" {
		s += " (" + sc.File + ")"
	}
	return s + ", lab " + rep.Lab + ", " + rep.Started.Format("2006-01-02 15:04:05 MST")
}

// alarming says whether a process's timeline line reports trouble: an error, a
// missed heartbeat, a death, or a result other than survived and closed.
func alarming(text string) bool {
	for _, w := range []string{" ERROR", " MISSED", " died: ", "BLACKHOLE"} {
		if strings.Contains(text, w) {
			return true
		}
	}
	if _, res, ok := strings.Cut(text, " => "); ok {
		return !strings.HasPrefix(res, strings.ToUpper(agent.Survived)) && !strings.HasPrefix(res, strings.ToUpper(agent.Closed))
	}
	return false
}

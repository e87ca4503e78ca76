package scenarios

import (
	"time"
)

// ResultsSchema names the shape of Results, the JSON of `idlegate scenario run -o
// json`. Its fields keep their names and meaning while it says v1; a field may be
// added. docs/ci.md describes every field.
const ResultsSchema = "idlegate.scenario-run/v1"

// Results is the outcome of one `idlegate scenario run`, of one scenario or many
// (--all): the same shape either way, so that a program reads both alike.
type Results struct {
	Schema string `json:"schema"` // ResultsSchema
	// Pass: every scenario given was played, and passed.
	Pass   bool `json:"pass"`
	Passed int  `json:"passed"`
	Failed int  `json:"failed"`
	// NotRun names the scenarios that were never played (the run was interrupted),
	// in the order given; empty, never null.
	NotRun   []string  `json:"not_run"`
	Started  time.Time `json:"started"`
	Duration float64   `json:"duration_s"` // wall time of the whole run
	// Reports holds one Report per scenario played, in the order given.
	Reports []*Report `json:"reports"`
}

// NewResults gathers the reports of a run of list, which started at started and
// ended at end; reports[i] is list[i]'s, nil if it was not played.
func NewResults(list []*Scenario, reports []*Report, started, end time.Time) *Results {
	r := &Results{Schema: ResultsSchema, NotRun: []string{}, Reports: []*Report{}, Started: started, Duration: end.Sub(started).Seconds()}
	for i, s := range list {
		var rep *Report
		if i < len(reports) {
			rep = reports[i]
		}
		switch {
		case rep == nil:
			r.NotRun = append(r.NotRun, s.Name)
			continue
		case rep.Pass:
			r.Passed++
		default:
			r.Failed++
		}
		rep.fillEmpty()
		r.Reports = append(r.Reports, rep)
	}
	r.Pass = r.Failed == 0 && len(r.NotRun) == 0
	return r
}

// fillEmpty gives the report's lists and counters empty values instead of nil, so
// that its JSON has [] and {} where a story could not be played, never null.
func (r *Report) fillEmpty() {
	if r.Timeline == nil {
		r.Timeline = []Row{}
	}
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	if r.Gateway == nil {
		r.Gateway = map[string]uint64{}
	}
	if r.Processes == nil {
		r.Processes = []ProcessReport{}
	}
}

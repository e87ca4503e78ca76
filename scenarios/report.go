package scenarios

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/idlegate/idlegate/internal/yamlx"
	"github.com/idlegate/idlegate/policy"
)

// Report is what one run found: the timeline, each expectation with what was seen,
// the gateway's counters, the processes' ends, and the verdict. Its JSON is one of
// the reports of `idlegate scenario run -o json` (Results, docs/ci.md).
type Report struct {
	Name      string            `json:"name"`
	Title     string            `json:"title"`
	File      string            `json:"file,omitempty"`
	Lab       string            `json:"lab"`
	Verdict   string            `json:"verdict"` // PASS or FAIL
	Pass      bool              `json:"pass"`
	Error     string            `json:"error,omitempty"` // the story could not be played to its end
	Started   time.Time         `json:"started"`
	Duration  float64           `json:"duration_s"`
	Profile   string            `json:"profile,omitempty"`
	Scale     float64           `json:"scale,omitempty"`
	Policy    policy.Policy     `json:"policy"`
	Timeline  []Row             `json:"timeline"`
	Checks    []Check           `json:"expectations"`
	Gateway   map[string]uint64 `json:"gateway"`
	Processes []ProcessReport   `json:"processes"`
	Warnings  []string          `json:"warnings,omitempty"`

	// For a picture of the run (package report); not in the JSON.

	// Origin is the instant the timeline's T counts from: the start of the steps.
	Origin time.Time `json:"-"`
	// Capture is what crossed the gateway, an idlegate pcapng, when Options.Capture
	// asked for it; nil otherwise.
	Capture []byte `json:"-"`
	// Actions are the steps that changed the gateway while the story ran, in order.
	Actions []Action `json:"-"`
}

// Action is a step that changed the running gateway: a flush (a reboot that forgets
// every entry) or a policy change. Replaying the run's capture needs them.
type Action struct {
	At     time.Time
	Flush  bool
	Policy *policy.Policy // a set step: the policy in force from At
	Set    []string       // its KEY=VALUE pairs, as the story wrote them
}

// ProcessReport is how a process ended. Exit is nil while it was still running when
// the steps were done.
type ProcessReport struct {
	Name    string `json:"name"`
	Side    string `json:"side"`
	Agent   string `json:"agent,omitempty"`
	Started bool   `json:"started"`
	Running bool   `json:"running_at_end"`
	Exit    *int   `json:"exit,omitempty"`
	Signal  string `json:"signal,omitempty"`
}

func (r *Report) failed() int {
	n := 0
	for _, c := range r.Checks {
		if !c.Pass {
			n++
		}
	}
	return n
}

// VerdictLine is the one-line outcome: "PASS idle-reset (8.4s): 5 of 5 expectations met".
func (r *Report) VerdictLine() string {
	n := len(r.Checks)
	switch {
	case r.Error != "":
		return fmt.Sprintf("FAIL %s (%.1fs): %s", r.Name, r.Duration, r.Error)
	case r.Pass:
		return fmt.Sprintf("PASS %s (%.1fs): %d of %d expectations met", r.Name, r.Duration, n, n)
	}
	var first string
	for _, c := range r.Checks {
		if !c.Pass {
			first = c.Expect + ", got " + c.Got
			break
		}
	}
	return fmt.Sprintf("FAIL %s (%.1fs): %d of %d expectations failed; first: %s", r.Name, r.Duration, r.failed(), n, first)
}

// WriteText prints the report as people read it: title, policy, timeline,
// expectations, verdict line; the timeline DefaultWidth columns wide.
func (r *Report) WriteText(w io.Writer) { r.WriteTextWidth(w, DefaultWidth) }

// WriteTextWidth is WriteText with a timeline that fits a terminal width columns
// wide (its three text columns are never narrower than 12).
func (r *Report) WriteTextWidth(w io.Writer, width int) {
	fmt.Fprintf(w, "=== %s: %s\n", r.Name, r.Title)
	fmt.Fprintf(w, "policy: %s   (lab %s)\n\n", PolicySummary(r.Profile, r.Scale, r.Policy), r.Lab)
	printRows(w, r.Timeline, width)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "gateway: %d new, %d expired, %d evicted, %d closed, %d flushed, %d keepalive probes, %d TIME_WAIT, %d orphans, %d RST/ICMP sent\n",
		r.Gateway["new"], r.Gateway["expired"], r.Gateway["evicted"], r.Gateway["closed"], r.Gateway["flushed"],
		r.Gateway["keepalive_probes"], r.Gateway["time_wait"], r.Gateway["orphans"], r.Gateway["resets"])
	fmt.Fprintln(w, "expectations:")
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %s: got %s\n", mark, c.Expect, c.Got)
		if !c.Pass && c.Why != "" {
			fmt.Fprintf(w, "       (line %d) the story says: %s\n", c.Line, c.Why)
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	fmt.Fprintln(w, r.VerdictLine())
}

// PolicySummary lists the keys that differ from Linux's defaults (scaled like the
// policy), dotted, after the profile and scale the policy came from.
func PolicySummary(profile string, scale float64, p policy.Policy) string {
	flat := func(p policy.Policy) map[string]string {
		p.VerdictEvents = false
		b, _ := json.Marshal(p)
		var m map[string]any
		json.Unmarshal(b, &m)
		out := map[string]string{}
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, vv := range x {
					walk(yamlx.Join(prefix, k), vv)
				}
			default:
				out[prefix] = fmt.Sprint(x)
			}
		}
		walk("", m)
		return out
	}
	def := policy.Default()
	var prefix []string
	if profile != "" {
		prefix = append(prefix, "profile "+profile)
	}
	if scale != 0 && scale != 1 {
		if d, err := def.Scale(scale); err == nil {
			def = d
		}
		prefix = append(prefix, fmt.Sprintf("timeouts x%g", scale))
	}
	head := ""
	if len(prefix) > 0 {
		head = strings.Join(prefix, ", ") + ": "
	}
	have, defs := flat(p), flat(def)
	if !p.NAT.Enabled {
		for k := range have {
			if strings.HasPrefix(k, "nat.") {
				delete(have, k)
			}
		}
	}
	var diff []string
	for k, v := range have {
		if defs[k] != v || k == "nat.enabled" && v == "true" {
			diff = append(diff, k+"="+v)
		}
	}
	sort.Strings(diff)
	if len(diff) == 0 {
		if head != "" {
			return strings.TrimSuffix(head, ": ")
		}
		return "the defaults (a Linux stateful firewall)"
	}
	return head + strings.Join(diff, " ")
}

package scenarios

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/scenarios/agent"
)

// Check is one expectation and what the run found.
type Check struct {
	Expect string `json:"expect"`
	Why    string `json:"why,omitempty"`
	Line   int    `json:"line"`
	Pass   bool   `json:"pass"`
	Got    string `json:"got"`
}

// evaluate checks every expectation against what the run recorded up to end.
func (r *runner) evaluate(rep *Report, stats policy.Stats, running map[string]bool, end time.Time) {
	for _, e := range r.sc.Expect {
		c := Check{Expect: e.String(), Why: e.Why, Line: e.Line}
		c.Pass, c.Got = r.check(e, stats, running, end)
		rep.Checks = append(rep.Checks, c)
	}
	rep.Gateway = map[string]uint64{}
	for _, name := range GatewayCounters {
		if n, ok := counterFromStats(stats, name); ok {
			rep.Gateway[name] = n
		} else {
			rep.Gateway[name] = uint64(r.gw.countAll(name, end))
		}
	}
	for _, p := range r.sc.Processes {
		pr := r.procs[p.Name]
		st := ProcessReport{Name: p.Name, Side: p.Side, Agent: p.Agent, Started: pr.cmd != nil, Running: running[p.Name]}
		if pr.cmd != nil && !running[p.Name] {
			pr.mu.Lock()
			code := pr.exitCode
			st.Exit = &code
			st.Signal = pr.signaled
			pr.mu.Unlock()
		}
		rep.Processes = append(rep.Processes, st)
	}
}

func (g *gwRecorder) countAll(counter string, end time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, e := range g.events {
		if e.counter == counter && !e.at.After(end) {
			n++
		}
	}
	return n
}

func (r *runner) check(e *Expect, stats policy.Stats, running map[string]bool, end time.Time) (bool, string) {
	if e.Gateway != "" {
		var n int
		if len(e.Port) > 0 {
			n = r.gw.countPorts(e.Gateway, e.Port, end)
		} else if v, ok := counterFromStats(stats, e.Gateway); ok {
			n = int(v)
		} else {
			n = r.gw.countAll(e.Gateway, end)
		}
		return e.count().ok(n), fmt.Sprint(n)
	}
	name, conn, _ := strings.Cut(e.Of, "/")
	p := r.procs[name]
	if p.cmd == nil {
		return false, "never started"
	}
	p.mu.Lock()
	events := slices.Clone(p.events)
	output := p.output.String()
	code, signaled := p.exitCode, p.signaled
	p.mu.Unlock()
	switch {
	case len(e.Outcome) > 0:
		return r.checkOutcome(e, conn, events, end)
	case e.Event != "":
		n := 0
		for _, ev := range events {
			if ev.Event == e.Event && (conn == "" || ev.Conn == conn) && (e.Err == "" || ev.Err == e.Err) && !ev.T.After(end) {
				n++
			}
		}
		c := e.count()
		if c.isZero() {
			one := 1
			c.Min = &one
		}
		return c.ok(n), fmt.Sprint(n)
	case e.Exit != nil:
		if running[name] {
			return false, "still running"
		}
		if signaled != "" {
			return false, "killed by " + signaled
		}
		return code == *e.Exit, fmt.Sprintf("exit %d", code)
	case e.Output != "" || e.OutputLacks != "":
		if e.Output != "" && !strings.Contains(output, e.Output) {
			return false, "not in its output: " + lastLines(output, 3)
		}
		if e.OutputLacks != "" && strings.Contains(output, e.OutputLacks) {
			return false, fmt.Sprintf("its output has %q", e.OutputLacks)
		}
		return true, "as expected"
	case e.Running != nil:
		state := "exited"
		if running[name] {
			state = "running"
		}
		return running[name] == *e.Running, state
	}
	return false, "nothing to check"
}

func (r *runner) checkOutcome(e *Expect, conn string, events []agent.Event, end time.Time) (bool, string) {
	type res struct {
		conn, outcome, err string
		at                 time.Duration
	}
	var results []res
	for _, ev := range events {
		if ev.Event != agent.EvResult || (conn != "" && ev.Conn != conn) || ev.T.After(end) {
			continue
		}
		results = append(results, res{ev.Conn, ev.Outcome, ev.Err, ev.T.Sub(r.tl.start)})
	}
	if len(results) == 0 {
		return false, "no result reported (the agent did not finish its job)"
	}
	sort.SliceStable(results, func(i, j int) bool { return results[i].at < results[j].at })
	var got []string
	matching, inTime := 0, true
	for _, x := range results {
		s := x.outcome
		if x.err != "" {
			s += " (" + x.err + ")"
		}
		s += fmt.Sprintf(" at %.1fs", x.at.Seconds())
		if x.conn != "" && conn == "" {
			s = x.conn + " " + s
		}
		got = append(got, s)
		if slices.Contains(e.Outcome, x.outcome) {
			matching++
			if e.At != nil && ((e.At.Min != nil && x.at < time.Duration(*e.At.Min)) || (e.At.Max != nil && x.at > time.Duration(*e.At.Max))) {
				inTime = false
			}
		}
	}
	summary := strings.Join(got, ", ")
	c := e.count()
	if c.isZero() {
		return matching == len(results) && inTime, summary
	}
	return c.ok(matching) && inTime, fmt.Sprintf("%d: %s", matching, summary)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, " / ")
	if out == "" {
		return "(no output)"
	}
	return out
}

// String says the expectation in words.
func (e *Expect) String() string {
	c := e.count()
	var b strings.Builder
	switch {
	case e.Gateway != "":
		fmt.Fprintf(&b, "gateway %s", e.Gateway)
		if len(e.Port) > 0 {
			var ps []string
			for _, p := range e.Port {
				ps = append(ps, fmt.Sprint(p))
			}
			fmt.Fprintf(&b, " (port %s)", strings.Join(ps, ","))
		}
		fmt.Fprintf(&b, " %s", c)
	case len(e.Outcome) > 0:
		fmt.Fprintf(&b, "%s outcome %s", e.Of, strings.Join(e.Outcome, " or "))
		if !c.isZero() {
			fmt.Fprintf(&b, " for %s connections", c)
		}
		if e.At != nil {
			b.WriteString(" at")
			if e.At.Min != nil {
				fmt.Fprintf(&b, " >= %s", *e.At.Min)
			}
			if e.At.Max != nil {
				fmt.Fprintf(&b, " <= %s", *e.At.Max)
			}
		}
	case e.Event != "":
		fmt.Fprintf(&b, "%s events %q", e.Of, e.Event)
		if e.Err != "" {
			fmt.Fprintf(&b, " err %s", e.Err)
		}
		if c.isZero() {
			b.WriteString(" >= 1")
		} else {
			fmt.Fprintf(&b, " %s", c)
		}
	case e.Exit != nil:
		fmt.Fprintf(&b, "%s exits %d", e.Of, *e.Exit)
	case e.Output != "" && e.OutputLacks != "":
		fmt.Fprintf(&b, "%s prints %q, not %q", e.Of, e.Output, e.OutputLacks)
	case e.Output != "":
		fmt.Fprintf(&b, "%s prints %q", e.Of, e.Output)
	case e.OutputLacks != "":
		fmt.Fprintf(&b, "%s never prints %q", e.Of, e.OutputLacks)
	case e.Running != nil:
		if *e.Running {
			fmt.Fprintf(&b, "%s still running at the end (hung)", e.Of)
		} else {
			fmt.Fprintf(&b, "%s has exited by the end", e.Of)
		}
	}
	return b.String()
}

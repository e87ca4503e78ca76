package agent

import (
	"fmt"
	"strings"
	"time"
)

// Step is one step of a client's --pattern.
type Step struct {
	Op   string        // "send", "write", "call", "idle", "hold", "slow", ...
	Text string        // for the ops of textOps
	D    time.Duration // for the others
}

// ParsePattern parses a comma list of OP:ARG, allowing only the given ops: ARG is text for
// the ops of textOps (send:TEXT, write:TEXT, call:TEXT), else a duration (idle:D, hold:D,
// slow:D).
func ParsePattern(s string, allowed ...string) ([]Step, error) {
	var steps []Step
	for _, item := range strings.Split(s, ",") {
		op, arg, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok {
			return nil, fmt.Errorf("pattern step %q is not OP:ARG", item)
		}
		known := false
		for _, a := range allowed {
			known = known || a == op
		}
		if !known {
			return nil, fmt.Errorf("pattern step %q: unknown op %q; known ops: %s", item, op, strings.Join(allowed, ", "))
		}
		st := Step{Op: op}
		switch {
		case textOps[op]:
			if arg == "" || strings.ContainsAny(arg, "\n") {
				return nil, fmt.Errorf("pattern step %q: TEXT must be non-empty, on one line", item)
			}
			st.Text = arg
		default:
			d, err := time.ParseDuration(arg)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("pattern step %q: %q is not a duration like 5s", item, arg)
			}
			st.D = d
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// Package report draws what idlegate saw as one self-contained HTML page: the picture
// people would draw on a whiteboard to explain why an idle connection died. It is made
// from data idlegate already has, by one of four doors:
//
//   - FromScenario: a scenario run (`scenario run NAME --html F`), with the story's
//     texts, expectations and verdict;
//   - FromCapture: a pcapng the gateway recorded (`idlegate report capture.pcapng`);
//   - FromReplay: a capture replayed through profiles (`replay CAP --profile A,B --html F`);
//   - FromLive: a snapshot of a running lab (`idlegate report --name LAB`).
//
// Each makes a Report, plain data that tests read; WriteHTML lays it out:
//
//  1. a sequence diagram with three lifelines, client | idlegate | server: every
//     packet an arrow with its flags, keepalive probes marked, packets the gateway did
//     not forward ending at its lifeline with their verdict and reason, the RSTs and
//     ICMP errors it sent starting there, NAT rewrites written on the arrow;
//  2. per connection, its idle timer against the timeout in force: a bar that fills
//     while the connection idles and empties when a packet refreshes it, the deadline
//     line, the moment the entry died, its states as coloured segments;
//  3. for a replay, one row per flow and one column per profile with the outcome,
//     and the flow's idle gaps against each profile's timeout;
//  4. the table's occupancy over time against its capacity, and evictions;
//  5. a scenario's concept, story and fix, its expectations and its verdict.
//
// The page is inline SVG and CSS with no script and no fetch. Long captures stay
// readable: the time axis breaks idle gaps out (a 350 s idle and a 1 ms handshake are
// both visible), and past MaxArrows packets are folded (xN), occupancy sampled and
// connections chosen; the report's notes say so.
package report

import (
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
)

// MaxTimers is the most connection timers a view draws; past it, the connections
// whose entry died other than by their own close come first, then the longest idle.
const MaxTimers = 40

// sortNotes orders notes by time, keeping the order of notes at the same time.
func sortNotes(n []Note) {
	sort.SliceStable(n, func(i, j int) bool { return n[i].At < n[j].At })
}

// Shown returns the indexes in v.Conns of the connections whose timers are drawn, in
// the order they were born: all of them, or MaxTimers chosen as MaxTimers says.
func (v *View) Shown() []int {
	idx := make([]int, len(v.Conns))
	for i := range idx {
		idx[i] = i
	}
	if len(idx) <= MaxTimers {
		return idx
	}
	rank := func(i int) (int, float64) {
		c := &v.Conns[i]
		peak := 0.0
		for _, r := range c.Timer.Ramps {
			peak = max(peak, r.Fill())
		}
		if c.End != nil && c.End.Reason != conntrack.ReasonClosed {
			return 0, -float64(c.End.At)
		}
		return 1, peak
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ga, pa := rank(idx[a])
		gb, pb := rank(idx[b])
		if ga != gb {
			return ga < gb
		}
		return pa > pb
	})
	idx = idx[:MaxTimers]
	sort.Ints(idx)
	return idx
}

// thousands prints n with thin separators: "1,000,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// noteLimits says, for every view, what was folded, sampled or left out; a note that
// holds for every view alike is said once.
func (r *Report) noteLimits() {
	var per [][]string
	for i := range r.Views {
		v := &r.Views[i]
		var ns []string
		s := &v.Sequence
		if s.Folded > 0 {
			ns = append(ns, fmt.Sprintf("%s packets are drawn as %s arrows: %s of them are folded into arrows marked ×N (packets of one connection, direction and verdict within %s of the first)",
				thousands(s.Packets+s.Injected), thousands(len(s.Arrows)), thousands(s.Folded), fmtDur(s.FoldWindow)))
		}
		if s.Hidden > 0 {
			ns = append(ns, fmt.Sprintf("%d packets that never cross a router (verdict reason %s: multicast, link-local) are not drawn", s.Hidden, policy.ReasonNotForwarded))
		}
		if s.NotesLeft > 0 {
			ns = append(ns, fmt.Sprintf("%d notes of the table (DESTROY ...) are not written on the lifelines, past the first %d", s.NotesLeft, maxNotes))
		}
		if w := v.Occupancy.SampleWindow; w > 0 {
			ns = append(ns, fmt.Sprintf("the occupancy curve is sampled: it shows the highest level of every %s", fmtDur(w)))
		}
		if n := len(v.Conns); n > MaxTimers {
			ns = append(ns, fmt.Sprintf("%d connections: the timers of %d are drawn (those the box ended first, then the longest idle)", n, MaxTimers))
		}
		per = append(per, ns)
	}
	common := func(n string) bool {
		for _, ns := range per {
			if !slices.Contains(ns, n) {
				return false
			}
		}
		return true
	}
	if len(per) > 0 {
		for _, n := range per[0] {
			if common(n) {
				if len(per) > 1 {
					n = "in every profile: " + n
				}
				r.Notes = append(r.Notes, n)
			}
		}
	}
	for i, ns := range per {
		for _, n := range ns {
			if !common(n) {
				r.Notes = append(r.Notes, r.Views[i].Name+": "+n)
			}
		}
	}
}

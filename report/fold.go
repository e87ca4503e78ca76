package report

import (
	"strings"
	"time"
)

// arrowList collects a sequence diagram's arrows in time order and keeps them under
// max by folding: first ordinary forwarded packets of one connection and direction
// within a time window (level 1), then every packet of one connection, direction,
// kind and reason (level 2), then the same across connections (level 3). The window
// grows until the list fits. A folded arrow sits at its first packet's time.
type arrowList struct {
	list   []Arrow
	max    int
	level  int
	window time.Duration
	last   map[foldKey]int // per key, the index of the arrow the next one may fold into
	folded int
}

type foldKey struct {
	conn            int
	from, to        Lifeline
	kind            ArrowKind
	verdict, reason string
	keepalive       bool
	plain           bool
}

func (l *arrowList) foldable(a *Arrow) bool {
	return l.level >= 2 || l.level == 1 && a.plain
}

func (l *arrowList) key(a *Arrow) foldKey {
	k := foldKey{conn: a.Conn, from: a.From, to: a.To, kind: a.Kind, verdict: a.Verdict, reason: a.Reason, keepalive: a.Keepalive}
	if l.level < 2 {
		k.plain = a.plain
	}
	if l.level >= 3 {
		k.conn = -2
	}
	return k
}

// add appends a and returns its index, or the index of the arrow it was folded
// into; -1 if the list was compacted on the way and the arrow's place is unknown.
func (l *arrowList) add(a Arrow) int {
	if i := l.merge(&a); i >= 0 {
		return i
	}
	l.push(a)
	if len(l.list) > l.max {
		l.compact()
		return -1
	}
	return len(l.list) - 1
}

func (l *arrowList) push(a Arrow) {
	l.list = append(l.list, a)
	if l.level > 0 && l.foldable(&a) {
		l.last[l.key(&a)] = len(l.list) - 1
	}
}

// merge folds a into the last arrow of its key if that began within the window.
func (l *arrowList) merge(a *Arrow) int {
	if l.level == 0 || !l.foldable(a) {
		return -1
	}
	i, ok := l.last[l.key(a)]
	if !ok || a.At-l.list[i].At > l.window {
		return -1
	}
	d := &l.list[i]
	d.Count += a.Count
	d.Until = max(d.Until, a.Until)
	d.Bytes += a.Bytes
	d.Label = unionLabel(d.Label, a.Label)
	if d.NAT != a.NAT {
		d.NAT = "several rewrites"
	}
	if a.Conn != d.Conn {
		d.Conn = -1
	}
	return i
}

// unionLabel adds the labels of b (", "-separated) to those of a, up to three, then "…".
func unionLabel(a, b string) string {
	if a == b {
		return a
	}
	have := strings.Split(a, ", ")
	for _, x := range strings.Split(b, ", ") {
		found := false
		for _, h := range have {
			found = found || h == x
		}
		if found {
			continue
		}
		if len(have) >= 3 {
			if have[len(have)-1] != "…" {
				have = append(have, "…")
			}
			break
		}
		have = append(have, x)
	}
	return strings.Join(have, ", ")
}

// compact refolds the list with a wider window (and, when the widest window is not
// enough, at the next level) until it holds at most 3/4 of max.
func (l *arrowList) compact() {
	if l.last == nil {
		l.last = map[foldKey]int{}
	}
	span := l.list[len(l.list)-1].At - l.list[0].At
	step := max(span/time.Duration(max(l.max/4, 1)), time.Microsecond)
	for len(l.list) > l.max*3/4 {
		switch {
		case l.level == 0:
			l.level, l.window = 1, step
		case l.window >= span && l.level < 3:
			l.level, l.window = l.level+1, step
		case l.window >= span:
			return // nothing left to fold: every arrow differs in kind or reason
		default:
			l.window *= 4
		}
		old := l.list
		l.list = make([]Arrow, 0, l.max+1)
		clear(l.last)
		for _, a := range old {
			if l.merge(&a) < 0 {
				l.push(a)
			}
		}
	}
}

// finish returns the arrows and counts the packets folded.
func (l *arrowList) finish() []Arrow {
	l.folded = 0
	for _, a := range l.list {
		if a.Count > 1 {
			l.folded += a.Count
		}
	}
	return l.list
}

// levels is an occupancy curve that stays under maxLevels points by keeping the
// highest level per interval (window) once it would not.
type levels struct {
	list   []Level
	window time.Duration
	peak   int
}

func (l *levels) add(at time.Duration, n int) {
	l.peak = max(l.peak, n)
	if k := len(l.list); k > 0 {
		last := &l.list[k-1]
		switch {
		case last.Entries == n:
			return // the step holds
		case at == last.At && l.window == 0:
			last.Entries = n
			return
		case l.window > 0 && at-last.At < l.window:
			last.Entries = max(last.Entries, n)
			return
		}
	}
	l.list = append(l.list, Level{At: at, Entries: n})
	if len(l.list) > maxLevels {
		l.compact()
	}
}

func (l *levels) compact() {
	first := l.list[0].At
	span := l.list[len(l.list)-1].At - first
	l.window = max(2*l.window, span/time.Duration(maxLevels/2), time.Microsecond)
	out := l.list[:0:0]
	for _, p := range l.list {
		b := first + (p.At-first)/l.window*l.window
		if k := len(out); k > 0 && out[k-1].At == b {
			out[k-1].Entries = max(out[k-1].Entries, p.Entries)
			continue
		}
		out = append(out, Level{At: b, Entries: p.Entries})
	}
	l.list = out
}

// add appends a ramp, folding it into the previous one when both are short next
// to their timeout (a busy stretch), and halving the list past maxRamps.
func (t *Timer) add(r Ramp) {
	if r.To <= r.From {
		return
	}
	if n := len(t.Ramps); n > 0 && tiny(r) {
		p := &t.Ramps[n-1]
		if (p.Busy || tiny(*p)) && p.To == r.From && p.State == r.State && p.Timeout == r.Timeout {
			peak := p.Fill()
			p.Busy, p.Peak = true, max(peak, r.Fill())
			p.To = r.To
			t.Merged++
			return
		}
	}
	t.Ramps = append(t.Ramps, r)
	if len(t.Ramps) > maxRamps {
		t.compact()
	}
}

func tiny(r Ramp) bool { return r.Timeout > 0 && (r.To-r.From)*busyShare < r.Timeout }

// compact folds neighbouring ramps pairwise into busy ramps.
func (t *Timer) compact() {
	out := t.Ramps[:0]
	for i := 0; i < len(t.Ramps); i += 2 {
		a := t.Ramps[i]
		if i+1 == len(t.Ramps) {
			out = append(out, a)
			break
		}
		b := t.Ramps[i+1]
		out = append(out, Ramp{From: a.From, To: b.To, Timeout: b.Timeout, State: b.State, Busy: true, Peak: max(a.Fill(), b.Fill())})
		t.Merged++
	}
	t.Ramps = out
}

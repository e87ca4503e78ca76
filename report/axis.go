package report

import (
	"math"
	"sort"
	"time"
)

// Axis is a horizontal time axis that breaks long idle gaps out: the stretches with
// something in them (clusters) are drawn to scale, each at least minCluster wide, and
// every gap longer than the break threshold is drawn as a fixed-width break. A 350 s
// idle and the 1 ms handshake before it are then both visible.
type Axis struct {
	Spans     []Span
	X0, Width float64
}

// Span is one piece of an axis: a cluster drawn to scale, or a broken-out gap.
type Span struct {
	From, To time.Duration
	X0, X1   float64
	Gap      bool
}

// Axis geometry, in pixels.
const (
	gapWidth   = 54
	minCluster = 40
	// breakAfter and breakShare: a gap is broken out when it is at least breakAfter
	// long and at least 1/breakShare of the whole axis.
	breakAfter = 30 * time.Second
	breakShare = 20
)

// NewAxis lays out the times points (any order, repeats allowed) over [from, to]
// between pixels x0 and x0+width.
func NewAxis(points []time.Duration, from, to time.Duration, x0, width float64) *Axis {
	a := &Axis{X0: x0, Width: width}
	if to <= from {
		to = from + time.Millisecond
	}
	ps := make([]time.Duration, 0, len(points)+2)
	ps = append(ps, from, to)
	for _, p := range points {
		if p >= from && p <= to {
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	total := to - from
	// Spans: clusters between the gaps worth breaking.
	var spans []Span
	cur := Span{From: ps[0], To: ps[0]}
	for _, p := range ps[1:] {
		g := p - cur.To
		if g >= breakAfter && g*breakShare >= total {
			spans = append(spans, cur, Span{From: cur.To, To: p, Gap: true})
			cur = Span{From: p, To: p}
			continue
		}
		cur.To = p
	}
	spans = append(spans, cur)
	if len(spans) == 1 {
		spans[0].X0, spans[0].X1 = x0, x0+width
		a.Spans = spans
		return a
	}
	// Widths: gaps fixed, clusters to one scale k with a floor.
	var clusters []int
	gaps := 0
	for i, s := range spans {
		if s.Gap {
			gaps++
		} else {
			clusters = append(clusters, i)
		}
	}
	avail := width - float64(gaps)*gapWidth
	floor := math.Min(minCluster, avail/float64(len(clusters)))
	w := make([]float64, len(spans))
	atFloor := make([]bool, len(spans))
	for iter := 0; iter <= len(clusters); iter++ {
		rest, dur := avail, 0.0
		for _, i := range clusters {
			if atFloor[i] {
				rest -= floor
			} else {
				dur += float64(spans[i].To - spans[i].From)
			}
		}
		changed := false
		for _, i := range clusters {
			if atFloor[i] {
				w[i] = floor
				continue
			}
			d := float64(spans[i].To - spans[i].From)
			if dur == 0 {
				w[i] = rest / float64(len(clusters))
			} else {
				w[i] = d * rest / dur
			}
			if w[i] < floor {
				atFloor[i], changed = true, true
			}
		}
		if !changed {
			break
		}
	}
	x := x0
	for i := range spans {
		if spans[i].Gap {
			w[i] = gapWidth
		}
		spans[i].X0, spans[i].X1 = x, x+w[i]
		x += w[i]
	}
	a.Spans = spans
	return a
}

// X is the pixel of time t (clamped to the axis).
func (a *Axis) X(t time.Duration) float64 {
	s := a.span(t)
	if s.To == s.From {
		return (s.X0 + s.X1) / 2
	}
	f := float64(t-s.From) / float64(s.To-s.From)
	return s.X0 + math.Max(0, math.Min(1, f))*(s.X1-s.X0)
}

func (a *Axis) span(t time.Duration) *Span {
	i := sort.Search(len(a.Spans), func(i int) bool { return a.Spans[i].To >= t })
	if i == len(a.Spans) {
		i--
	}
	return &a.Spans[i]
}

// Cuts are the span boundaries strictly between from and to, where a line drawn in
// time bends on the page.
func (a *Axis) Cuts(from, to time.Duration) []time.Duration {
	var out []time.Duration
	for _, s := range a.Spans {
		if s.From > from && s.From < to {
			out = append(out, s.From)
		}
	}
	return out
}

// Broken reports whether the axis breaks any gap out.
func (a *Axis) Broken() bool { return len(a.Spans) > 1 }

// Tick is a labelled time on an axis.
type Tick struct {
	X     float64
	Label string
}

// Ticks are labelled times at least minTick pixels apart, chosen per cluster from
// steps of 1, 2 and 5.
func (a *Axis) Ticks() []Tick {
	const minTick = 90
	var out []Tick
	last := math.Inf(-1)
	add := func(x float64, t time.Duration) {
		if x-last >= minTick*0.6 {
			out = append(out, Tick{X: x, Label: fmtOff(t)})
			last = x
		}
	}
	for _, s := range a.Spans {
		if s.Gap {
			continue
		}
		add(s.X0, s.From)
		d := s.To - s.From
		px := s.X1 - s.X0
		if d <= 0 || px < minTick {
			continue
		}
		step := niceStep(time.Duration(float64(d) * minTick / px))
		for t := (s.From/step + 1) * step; t < s.To; t += step {
			if x := a.X(t); s.X1-x >= minTick*0.5 {
				add(x, t)
			}
		}
	}
	return out
}

// niceStep is the smallest of 1, 2, 5 x 10^n ns that is at least d.
func niceStep(d time.Duration) time.Duration {
	step := time.Duration(1)
	for {
		for _, m := range []time.Duration{1, 2, 5} {
			if step*m >= d {
				return step * m
			}
		}
		if step > time.Duration(math.MaxInt64/100) {
			return step
		}
		step *= 10
	}
}

package report

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/replay"
)

// maxRows is the most flows a replay's matrix lists; past it, the flows some profile
// broke come first, then the longest idle.
const maxRows = 200

// maxGaps is the most idle gaps a matrix row keeps per flow (the longest).
const maxGaps = 8

// FromReplay replays the capture read from r (named name) as replay.Run does, with
// opt, and makes its report: one view per profile (the sequence diagram, timers and
// occupancy of what that box would have done) and the matrix of flows x profiles. It
// returns replay's own report too. opt's Trace, Events and Swept, if set, are called
// as well.
func FromReplay(name string, r io.Reader, opt replay.Options) (*Report, *replay.Report, error) {
	rep := &Report{Kind: FromReplayRun, Title: "replay of " + name, Subtitle: "capture " + name}
	rep.Views = make([]View, len(opt.Profiles))
	bs := make([]*viewBuilder, len(opt.Profiles))
	var (
		start   time.Time
		started bool
		flows   []flowTrack
	)
	lane := func(i int, t time.Time) *viewBuilder {
		if !started {
			start, started = t, true
		}
		if bs[i] == nil {
			bs[i] = newViewBuilder(&rep.Views[i], start, opt.Profiles[i].Policy.Capacity)
		}
		return bs[i]
	}
	for i, p := range opt.Profiles {
		rep.Views[i].Name = p.Name
		rep.Views[i].Policy = profileSummary(p, opt.Scale)
	}
	trace, events, swept := opt.Trace, opt.Events, opt.Swept
	opt.Trace = func(t replay.PacketTrace) {
		b := lane(t.Lane, t.Time)
		p := &packetSeen{at: t.Time, dir: t.Dir, info: t.Packet, verdict: t.Verdict, reason: t.Reason,
			keepalive: t.Out.Conn.Keepalive, conn: t.Out.Conn, table: true, entries: t.Entries}
		if t.Verdict == policy.Forward && t.Packet != nil {
			p.nat = natText(t.Packet, &t.Out.Info)
		}
		b.packet(p)
		for _, inj := range t.Out.Inject {
			b.inject(t.Time, inj.To, inj.Packet, Injected, t.Verdict, t.Reason)
		}
		if t.Lane == 0 && t.Flow >= 0 {
			for len(flows) <= t.Flow {
				flows = append(flows, flowTrack{})
			}
			flows[t.Flow].packet(t.Time.Sub(start))
		}
		if trace != nil {
			trace(t)
		}
	}
	opt.Events = func(l, flow int, ev policy.Event) {
		lane(l, ev.Time).event(&ev, flow)
		if events != nil {
			events(l, flow, ev)
		}
	}
	opt.Swept = func(l int, at time.Time, inj policy.Injected) {
		lane(l, at).inject(at, inj.To, inj.Packet, ExpiryReset, policy.Reset, 0)
		if swept != nil {
			swept(l, at, inj)
		}
	}
	rr, err := replay.Run(name, r, opt)
	if err != nil {
		return nil, nil, err
	}
	if !started {
		start = rr.Start
	}
	rep.Start = start
	rep.Duration = time.Duration(rr.Duration * float64(time.Second))
	end := start.Add(rep.Duration)
	for i, b := range bs {
		if b == nil {
			b = lane(i, start)
		}
		b.finish(end)
	}
	rep.Matrix = matrixOf(rr, rep.Views, bs, flows)
	if rr.Scale != 1 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("time scale %g: the timeouts are scaled; the columns give the real ESTABLISHED timeout too", rr.Scale))
	}
	for _, p := range rr.Profiles {
		if p.EventsLost > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s lost %d table events; some timers may end early", p.Name, p.EventsLost))
		}
	}
	rep.noteLimits()
	return rep, rr, nil
}

// profileSummary is one line on a replayed profile: its ESTABLISHED timeout and what
// it does after expiry.
func profileSummary(p replay.Profile, scale float64) string {
	if scale == 0 {
		scale = 1
	}
	pol := p.Policy
	s := "tcp established " + policy.FormatScaled(time.Duration(pol.Timeouts.TCP.Established), scale)
	s += ", refresh " + pol.Refresh.String() + ", orphan " + pol.Orphan.String()
	if pol.ResetOnExpire {
		s += ", reset_on_expire"
	}
	if pol.NAT.Enabled {
		s += ", NAT"
	}
	return s + fmt.Sprintf(", capacity %d", pol.Capacity)
}

// flowTrack follows one flow's packets: its longest idle gaps.
type flowTrack struct {
	n           int
	first, last time.Duration
	gaps        []Gap // longest first
}

func (f *flowTrack) packet(at time.Duration) {
	if f.n > 0 {
		g := Gap{From: f.last, To: at}
		d := g.To - g.From
		if len(f.gaps) < maxGaps || d > f.gaps[len(f.gaps)-1].To-f.gaps[len(f.gaps)-1].From {
			i := sort.Search(len(f.gaps), func(i int) bool { return f.gaps[i].To-f.gaps[i].From < d })
			f.gaps = append(f.gaps, Gap{})
			copy(f.gaps[i+1:], f.gaps[i:])
			f.gaps[i] = g
			if len(f.gaps) > maxGaps {
				f.gaps = f.gaps[:maxGaps]
			}
		}
	} else {
		f.first = at
	}
	f.n++
	f.last = at
}

// peakWithin is the highest fill the timer reached between from and to (a flow's
// first and last packet: its idle gaps, not the entry's life after it), and the
// timeout in force there. A ramp cut by to counts up to to.
func peakWithin(t Timer, from, to time.Duration) (peak float64, timeout time.Duration) {
	peak = -1
	for _, r := range t.Ramps {
		if r.To <= from || r.From >= to {
			continue
		}
		f := r.Fill()
		if !r.Busy && r.To > to && r.Timeout > 0 {
			f = float64(to-r.From) / float64(r.Timeout)
		}
		if f > peak {
			peak, timeout = f, r.Timeout
		}
	}
	return max(peak, 0), timeout
}

// matrixOf builds the flows x profiles matrix from replay's report and each lane's
// timers.
func matrixOf(rr *replay.Report, views []View, bs []*viewBuilder, flows []flowTrack) *Matrix {
	m := &Matrix{Summary: rr.Summary}
	for _, p := range rr.Profiles {
		m.Profiles = append(m.Profiles, Column{Name: p.Name, Established: p.Established, Survived: p.Survived, Broken: p.Broken})
	}
	// Each lane's timers per flow: its entries, one after the other.
	timers := make([][]Timer, len(bs))
	for l, b := range bs {
		timers[l] = make([]Timer, len(rr.Flows))
		for i, cs := range b.cs {
			if cs.flow < 0 || cs.flow >= len(rr.Flows) {
				continue
			}
			t := &timers[l][cs.flow]
			c := &views[l].Conns[i]
			t.Ramps = append(t.Ramps, c.Timer.Ramps...)
			t.Probes = append(t.Probes, c.Timer.Probes...)
			t.Merged += c.Timer.Merged
		}
	}
	broken := func(i int) bool {
		for _, p := range rr.Profiles {
			if p.Flows[i].Broken() {
				return true
			}
		}
		return false
	}
	list := make([]int, len(rr.Flows))
	for i := range list {
		list[i] = i
	}
	if len(list) > maxRows {
		longest := func(i int) time.Duration {
			if i < len(flows) && len(flows[i].gaps) > 0 {
				return flows[i].gaps[0].To - flows[i].gaps[0].From
			}
			return 0
		}
		sort.SliceStable(list, func(a, b int) bool {
			ba, bb := broken(list[a]), broken(list[b])
			if ba != bb {
				return ba
			}
			return longest(list[a]) > longest(list[b])
		})
		m.Hidden = len(list) - maxRows
		list = list[:maxRows]
		sort.Ints(list)
	}
	sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	for _, i := range list {
		f := rr.Flows[i]
		row := Row{Flow: f.String(), Packets: f.Packets, First: sec(f.First), Last: sec(f.Last)}
		if i < len(flows) {
			row.Gaps = flows[i].gaps
			if len(row.Gaps) > 0 {
				row.LongestIdle = row.Gaps[0].To - row.Gaps[0].From
			}
		}
		for l, p := range rr.Profiles {
			fr := p.Flows[i]
			c := Cell{Outcome: fr.Outcome, At: sec(fr.Time), Idle: sec(fr.Idle), Timeout: sec(fr.Timeout), Timer: timers[l][i]}
			switch {
			case !fr.Broken():
				c.Text = "ok"
				c.Detail = fr.Note
			case fr.Outcome == replay.ResetAtExpiry:
				c.Text = fr.Outcome.String() + " +" + fmtDur(c.At)
				c.Detail = "the box reset both ends at the deadline"
			default:
				c.Text = fmt.Sprintf("%s @%d", fr.Outcome, fr.Packet)
				c.Detail = fmt.Sprintf("packet %d at +%s after %s idle", fr.Packet, fmtDur(c.At), fmtDur(c.Idle))
				if fr.Timeout > 0 {
					c.Detail += ", timeout " + fmtDur(c.Timeout)
				}
				c.Detail += ": " + fr.Verdict + " " + fr.Reason
				if fr.Note != "" {
					c.Detail += "; " + fr.Note
				}
			}
			c.Peak, c.InForce = peakWithin(c.Timer, row.First, row.Last)
			row.Cells = append(row.Cells, c)
		}
		m.Rows = append(m.Rows, row)
	}
	return m
}

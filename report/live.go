package report

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/policy"
)

// LiveSnapshot is what a running lab's control API told: its table and counters at
// Taken, and the events it streamed from Since to Taken.
type LiveSnapshot struct {
	Lab    string
	Since  time.Time // when the events began to be collected
	Taken  time.Time // when the table and counters were read
	Policy policy.Policy
	Conns  []control.Conn
	Stats  control.Stats
	Events []control.Event
}

// FromLive makes the report of a running lab: every entry's idle timer now against
// its timeout, the table's occupancy against its capacity, the counters, and the
// events collected: verdicts as arrows (when the lab's policy has verdict_events on),
// table events as notes on the idlegate lifeline.
func FromLive(s LiveSnapshot) *Report {
	rep := &Report{Kind: FromLiveLab, Title: "lab " + s.Lab,
		Subtitle: fmt.Sprintf("snapshot at %s, events from the %s before", s.Taken.Format("2006-01-02 15:04:05 MST"), fmtDur(s.Taken.Sub(s.Since)))}
	start := s.Since
	for _, c := range s.Conns {
		if lr := s.Taken.Add(time.Duration((c.TimeLeft - c.Timeout) * float64(time.Second))); lr.Before(start) {
			start = lr
		}
	}
	rep.Start, rep.Duration = start, s.Taken.Sub(start)
	rep.Views = []View{{Name: "idlegate", Policy: liveSummary(s.Policy)}}
	v := &rep.Views[0]
	off := func(t time.Time) time.Duration { return t.Sub(start) }
	verdicts := 0
	for _, ev := range s.Events {
		switch ev.Type {
		case "VERDICT":
			if ev.Reason == policy.ReasonNotForwarded.String() {
				v.Sequence.Hidden++ // multicast, link-local: never crosses a router
				continue
			}
			verdicts++
			a := Arrow{At: off(ev.Time), Until: off(ev.Time), Conn: -1, Label: ev.Proto, Keepalive: ev.Keepalive,
				Verdict: ev.Verdict, Reason: ev.Reason, Count: 1, From: Client, To: Server}
			if ev.Dir == policy.Inbound.String() {
				a.From, a.To = Server, Client
			}
			a.Kind = Crossed
			if ev.Verdict != policy.Forward.String() {
				a.Kind, a.To = Dropped, Gateway
			}
			v.Sequence.Arrows = append(v.Sequence.Arrows, a)
		case "NEW":
			v.Sequence.Notes = append(v.Sequence.Notes, Note{At: off(ev.Time), On: Gateway, Text: "NEW " + ev.Proto + " " + tupleText(ev.Orig)})
		case "DESTROY":
			text := "DESTROY " + ev.Proto + " " + tupleText(ev.Orig) + " " + ev.Reason
			if ev.Timeout > 0 {
				text += fmt.Sprintf(": idle %s, timeout %s", fmtDur(secs(ev.Idle)), fmtDur(secs(ev.Timeout)))
			}
			v.Sequence.Notes = append(v.Sequence.Notes, Note{At: off(ev.Time), On: Gateway, Text: text, Alarm: ev.Reason != conntrack.ReasonClosed.String()})
		}
	}
	v.Sequence.Packets = verdicts
	if len(v.Sequence.Arrows) > MaxArrows {
		v.Sequence.Arrows = v.Sequence.Arrows[len(v.Sequence.Arrows)-MaxArrows:]
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d verdicts were streamed; the last %d are drawn", verdicts, MaxArrows))
	}
	if len(v.Sequence.Notes) > maxNotes {
		v.Sequence.NotesLeft = len(v.Sequence.Notes) - maxNotes
		v.Sequence.Notes = v.Sequence.Notes[len(v.Sequence.Notes)-maxNotes:]
	}
	if !s.Policy.VerdictEvents {
		rep.Notes = append(rep.Notes, "the lab's policy has verdict_events off, so no packet is drawn; `idlegate policy set verdict_events=true` before `idlegate report --name "+s.Lab+"` draws them")
	}
	for _, c := range s.Conns {
		idle := secs(c.Timeout - c.TimeLeft)
		name, short := liveNames(c)
		if c.NAT != "" {
			name += " (nat " + c.NAT + ")"
		}
		now := off(s.Taken)
		cn := Conn{Name: name, Short: short, Proto: c.Proto, Born: now - idle, Packets: int(c.Packets.Original + c.Packets.Reply),
			States: []StateSpan{{From: now - idle, To: now, State: c.State, Timeout: secs(c.Timeout)}}}
		cn.Timer.Ramps = []Ramp{{From: now - idle, To: now, Timeout: secs(c.Timeout), State: c.State}}
		v.Conns = append(v.Conns, cn)
	}
	o := &v.Occupancy
	o.Capacity, o.Peak = s.Policy.Capacity, s.Stats.Entries
	o.Points = []Level{{At: off(s.Taken), Entries: s.Stats.Entries}}
	o.Evicted = int(s.Stats.Table.Destroyed[conntrack.ReasonEvicted.String()])
	o.Refused = int(s.Stats.Reasons[policy.ReasonTableFull.String()])
	l := &Live{Lab: s.Lab, Verdicts: s.Stats.Verdicts, Reasons: s.Stats.Reasons, Window: s.Taken.Sub(s.Since), Events: len(s.Events)}
	for _, c := range s.Conns {
		name, _ := liveNames(c)
		l.Entries = append(l.Entries, LiveEntry{Name: name,
			State: c.State, Idle: secs(c.Timeout - c.TimeLeft), Timeout: secs(c.Timeout), Left: secs(c.TimeLeft), NAT: c.NAT, Packets: [2]uint64{c.Packets.Original, c.Packets.Reply}})
	}
	sort.Slice(l.Entries, func(i, j int) bool { return l.Entries[i].Left < l.Entries[j].Left })
	l.Counters = []Counter{
		{"entries", uint64(s.Stats.Entries)}, {"created", s.Stats.Table.Created}, {"keepalive probes", s.Stats.Table.KeepaliveProbes},
		{"injected RST/ICMP", s.Stats.Injected}, {"NAT mappings", uint64(s.Stats.NATMaps)}, {"events lost", s.Stats.EventsDropped},
	}
	rep.Live = l
	rep.noteLimits()
	return rep
}

// liveNames names a table row as connName names an entry.
func liveNames(c control.Conn) (name, short string) {
	if c.Orig.ICMP != nil {
		return fmt.Sprintf("%s %s → %s id %d", c.Proto, c.Orig.Src, c.Orig.Dst, c.Orig.ICMP.ID), fmt.Sprintf("%s id %d", c.Proto, c.Orig.ICMP.ID)
	}
	return fmt.Sprintf("%s %s → %s", c.Proto, hostPort(c.Orig.Src, c.Orig.SrcPort), hostPort(c.Orig.Dst, c.Orig.DstPort)),
		fmt.Sprintf("%s :%d → :%d", c.Proto, c.Orig.SrcPort, c.Orig.DstPort)
}

// tupleText is an event's tuple as the table's rows name it: "src:sport -> dst:dport".
func tupleText(t *control.Tuple) string {
	if t == nil {
		return ""
	}
	if t.ICMP != nil {
		return fmt.Sprintf("%s -> %s id %d", t.Src, t.Dst, t.ICMP.ID)
	}
	return hostPort(t.Src, t.SrcPort) + " -> " + hostPort(t.Dst, t.DstPort)
}

func hostPort(a string, p uint16) string { return net.JoinHostPort(a, strconv.Itoa(int(p))) }

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func liveSummary(p policy.Policy) string {
	return fmt.Sprintf("tcp established %s, refresh %s, orphan %s, capacity %d", fmtDur(time.Duration(p.Timeouts.TCP.Established)), p.Refresh, p.Orphan, p.Capacity)
}

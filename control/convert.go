package control

import (
	"fmt"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
)

// The gateway renders its typed values with these, once, where JSON is written.

// TupleOf renders one direction of a connection. reply says whether k is the reply
// direction (for ICMP, whose reply tuple is the echo reply's).
func TupleOf(k conntrack.Key, reply bool) Tuple {
	t := Tuple{Src: k.SrcAddr().String(), Dst: k.DstAddr().String()}
	switch k.Proto {
	case conntrack.ProtoICMP, conntrack.ProtoICMPv6:
		// The table tracks echo only: the original direction is the request
		// (ICMP type 8, ICMPv6 128), the reply direction the reply (0, 129).
		var typ uint8
		switch {
		case k.Proto == conntrack.ProtoICMP && !reply:
			typ = 8
		case k.Proto == conntrack.ProtoICMPv6 && !reply:
			typ = 128
		case k.Proto == conntrack.ProtoICMPv6:
			typ = 129
		}
		t.ICMP = &ICMP{Type: typ, ID: k.SrcPort}
	default:
		t.SrcPort, t.DstPort = k.SrcPort, k.DstPort
	}
	return t
}

// natOf is "inside -> outside" for a connection whose reply tuple is source-NATed,
// else "".
func natOf(orig, reply conntrack.Key) string {
	if !isNAT(orig, reply) {
		return ""
	}
	return hostPort(orig.SrcAddr().String(), orig.SrcPort) + " -> " + hostPort(reply.DstAddr().String(), reply.DstPort)
}

// isNAT reports whether the reply tuple of a connection is source-NATed: its
// destination is not the original source.
func isNAT(orig, reply conntrack.Key) bool {
	return reply.Dst != orig.Src || reply.DstPort != orig.SrcPort
}

func perDir(c [2]uint64) PerDir {
	return PerDir{Original: c[conntrack.Original], Reply: c[conntrack.Reply]}
}

// ConnOf renders a table entry at now, on the gateway's clock.
func ConnOf(e *conntrack.EntryInfo, now time.Time) Conn {
	c := Conn{
		ID:        e.ID,
		Proto:     conntrack.ProtoName(e.Orig.Proto),
		Assured:   e.Assured,
		Unreplied: !e.Replied,
		TimeLeft:  e.TimeLeft.Seconds(),
		Timeout:   e.Timeout.Seconds(),
		Idle:      max(now.Sub(e.LastSeen), 0).Seconds(),
		Orig:      TupleOf(e.Orig, false),
		Reply:     TupleOf(e.Reply, true),
		NAT:       natOf(e.Orig, e.Reply),
		Packets:   perDir(e.Packets),
		Bytes:     perDir(e.Bytes),
		Created:   e.Created,
		Refreshed: e.LastRefresh,
	}
	if e.Orig.Proto == conntrack.ProtoTCP {
		c.State = e.State.String()
	}
	return c
}

// EventOf renders an engine event; start is when the gateway started.
func EventOf(ev *policy.Event, start time.Time) Event {
	j := Event{
		Time: ev.Time,
		T:    ev.Time.Sub(start).Seconds(),
		Type: ev.Type.String(),
		ID:   ev.ID,
	}
	if ev.Orig != (conntrack.Key{}) {
		orig, reply := TupleOf(ev.Orig, false), TupleOf(ev.Reply, true)
		j.Proto, j.Orig, j.Reply = conntrack.ProtoName(ev.Orig.Proto), &orig, &reply
		j.NAT = natOf(ev.Orig, ev.Reply)
	}
	if ev.Type == conntrack.EventVerdict {
		j.Verdict, j.Reason, j.Dir, j.Keepalive = ev.Verdict.String(), ev.Cause.String(), ev.Dir.String(), ev.Keepalive
		return j
	}
	if ev.Orig.Proto == conntrack.ProtoTCP {
		j.State = ev.State.String()
		if ev.Type == conntrack.EventUpdate && ev.OldState != ev.State {
			j.OldState = ev.OldState.String()
		}
	}
	j.Assured, j.Unreplied = ev.Assured, !ev.Replied
	p, b := perDir(ev.Packets), perDir(ev.Bytes)
	j.Packets, j.Bytes = &p, &b
	if ev.Type == conntrack.EventDestroy {
		j.Reason = ev.Reason.String()
		j.Idle, j.Timeout = ev.Idle.Seconds(), ev.Timeout.Seconds()
	}
	return j
}

// StatsOf renders the engine's counters (the gateway adds its own).
func StatsOf(s *policy.Stats, capacity int) Stats {
	st := Stats{
		Entries:  s.Table.Entries,
		Capacity: capacity,
		Verdicts: s.VerdictCounts(),
		Reasons:  s.ReasonCounts(),
		Bytes:    map[string]map[string]uint64{},
		Table: TableStats{
			Created:         s.Table.Created,
			Destroyed:       map[string]uint64{},
			Full:            s.Table.Full,
			Invalid:         s.Table.Invalid,
			Clash:           s.Table.Clash,
			KeepaliveProbes: s.Table.KeepaliveProbes,
		},
		Injected:      s.Injected,
		NATMaps:       s.NATMaps,
		EventsDropped: s.EventsDropped,
	}
	for r, n := range s.Table.Destroyed {
		st.Table.Destroyed[conntrack.Reason(r).String()] = n
	}
	for _, side := range []policy.Side{policy.Inside, policy.Outside} {
		m := map[string]uint64{}
		for v, n := range s.Bytes[side] {
			m[policy.Verdict(v).String()] = n
		}
		st.Bytes[side.String()] = m
	}
	return st
}

// NetworksOf renders the networks an engine routes by.
func NetworksOf(n policy.Networks) Networks {
	return Networks{Inside: strs(n.Inside), Outside: strs(n.Outside), Gateway: strs(n.Gateway)}
}

func strs[T fmt.Stringer](l []T) []string {
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = x.String()
	}
	return out
}

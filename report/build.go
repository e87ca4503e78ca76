package report

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
)

// Limits that keep a report of a million packets readable and small. Past them the
// builder folds, samples or leaves out, and the report says so (Report.Notes).
const (
	// MaxArrows is the most arrows a sequence diagram draws; past it, packets of one
	// connection and direction close in time are folded into one arrow (xN).
	MaxArrows = 1500
	// maxNotes is the most notes on a sequence diagram's lifelines.
	maxNotes = 600
	// maxRamps is the most ramps one connection's timer keeps; past it, neighbours
	// are folded into busy ramps.
	maxRamps = 400
	// maxProbes is the most keepalive probes one timer lists.
	maxProbes = 400
	// maxLevels is the most points of an occupancy curve; past it, the curve keeps
	// the highest level per interval.
	maxLevels = 2000
	// maxMarks is the most eviction times listed.
	maxMarks = 1000
	// busyShare: a refresh less than timeout/busyShare after the previous one
	// continues a busy ramp instead of starting a ramp of its own.
	busyShare = 200
)

// packetSeen is one packet the gateway (or a replay lane) read, with its word on it
// and the table's outcome.
type packetSeen struct {
	at      time.Time
	dir     policy.Dir
	info    *packet.Info // as read, before any NAT
	verdict policy.Verdict
	reason  policy.Reason
	// keepalive: a TCP keepalive probe.
	keepalive bool
	// conn is the table's outcome for the packet; table says it is known.
	conn    conntrack.Result
	table   bool
	nat     string
	entries int
}

// viewBuilder turns packets, injections and table events, in the order they
// happened, into a View. Not safe for concurrent use.
type viewBuilder struct {
	v     *View
	start time.Time

	arrows arrowList
	notes  []Note

	// live maps each tuple of a live entry (original, reply and their reverses) to
	// its index in v.Conns; last does the same for every entry ever seen, so that
	// an orphan is drawn as a packet of the connection the box forgot.
	live, last map[conntrack.Key]int
	cs         []connState // per v.Conns
	alive      int

	occ        levels
	evictions  []time.Duration
	evicted    int
	refused    int
	lastArrive int // index in arrows of the last packet read, for its NAT rewrite
	injected   int
	packets    int
}

// connState is what the builder tracks of a live entry beyond its Conn.
type connState struct {
	orig, reply conntrack.Key
	refreshed   time.Time // when its timer last restarted
	state       string
	timeout     time.Duration
	dead        bool
	flow        int // a replay's flow index, -1 otherwise
}

func newViewBuilder(v *View, start time.Time, capacity int) *viewBuilder {
	b := &viewBuilder{v: v, start: start, live: map[conntrack.Key]int{}, last: map[conntrack.Key]int{}, lastArrive: -1}
	b.arrows.max = MaxArrows
	b.v.Occupancy.Capacity = capacity
	return b
}

func (b *viewBuilder) off(t time.Time) time.Duration { return t.Sub(b.start) }

// stateName names an entry's state as ct list does: the TCP state, or for other
// protocols ASSURED, UNREPLIED, or REPLIED (answered, not yet a stream).
func stateName(ev *policy.Event) string {
	switch {
	case ev.Proto == conntrack.ProtoTCP:
		return ev.State.String()
	case ev.Assured:
		return "ASSURED"
	case ev.Replied:
		return "REPLIED"
	}
	return "UNREPLIED"
}

// event takes one table event: NEW opens a connection, UPDATE changes its state and
// timeout, DESTROY ends it. flow is a replay's flow index (-1 otherwise).
func (b *viewBuilder) event(ev *policy.Event, flow int) {
	switch ev.Type {
	case conntrack.EventNew:
		b.newConn(ev, flow)
	case conntrack.EventUpdate:
		i, ok := b.live[ev.Orig]
		if !ok {
			return
		}
		st := stateName(ev)
		cs := &b.cs[i]
		if st == cs.state && ev.Timeout == cs.timeout {
			return
		}
		// A change of state restarts the timer under the new state's timeout.
		b.refresh(i, ev.Time)
		b.setState(i, ev.Time, st, ev.Timeout)
	case conntrack.EventDestroy:
		i, ok := b.live[ev.Orig]
		if !ok {
			return
		}
		b.destroy(i, ev)
	}
}

func (b *viewBuilder) newConn(ev *policy.Event, flow int) {
	c := Conn{Name: connName(ev.Orig, ev.Reply, false), Short: connName(ev.Orig, ev.Reply, true),
		Proto: conntrack.ProtoName(ev.Proto), Born: b.off(ev.Time)}
	i := len(b.v.Conns)
	b.v.Conns = append(b.v.Conns, c)
	b.cs = append(b.cs, connState{orig: ev.Orig, reply: ev.Reply, refreshed: ev.Time, flow: flow})
	for _, k := range [...]conntrack.Key{ev.Orig, ev.Orig.Reply(), ev.Reply, ev.Reply.Reply()} {
		b.live[k] = i
		b.last[k] = i
	}
	b.alive++
	b.setState(i, ev.Time, stateName(ev), ev.Timeout)
}

// setState closes the connection's current state span at t and opens one in st.
func (b *viewBuilder) setState(i int, t time.Time, st string, timeout time.Duration) {
	c, cs := &b.v.Conns[i], &b.cs[i]
	at := b.off(t)
	if n := len(c.States); n > 0 {
		c.States[n-1].To = at
		if c.States[n-1].From == at { // replaced at once: keep one span
			c.States = c.States[:n-1]
		}
	}
	c.States = append(c.States, StateSpan{From: at, To: at, State: st, Timeout: timeout})
	cs.state, cs.timeout = st, timeout
}

// refresh restarts connection i's idle timer at t: the ramp since the last restart
// ends there.
func (b *viewBuilder) refresh(i int, t time.Time) {
	cs := &b.cs[i]
	if !t.After(cs.refreshed) {
		return
	}
	b.ramp(i, cs.refreshed, t)
	cs.refreshed = t
}

// ramp adds the timer ramp [from, to) of connection i under its current state.
func (b *viewBuilder) ramp(i int, from, to time.Time) {
	cs := &b.cs[i]
	b.v.Conns[i].Timer.add(Ramp{From: b.off(from), To: b.off(to), Timeout: cs.timeout, State: cs.state})
}

func (b *viewBuilder) destroy(i int, ev *policy.Event) {
	c, cs := &b.v.Conns[i], &b.cs[i]
	refreshed := ev.Time.Add(-ev.Idle) // exact: the table's own last refresh
	died := ev.Time
	if ev.Reason == conntrack.ReasonExpired || ev.Reason == conntrack.ReasonClosed {
		died = refreshed.Add(ev.Timeout) // the deadline, not when the sweep saw it
	}
	if refreshed.After(cs.refreshed) {
		b.ramp(i, cs.refreshed, refreshed)
		cs.refreshed = refreshed
	}
	b.ramp(i, cs.refreshed, died)
	if n := len(c.States); n > 0 {
		c.States[n-1].To = b.off(died)
	}
	// Idle is the timer at the moment of death: the timeout, for an expiry.
	c.End = &End{At: b.off(died), Seen: b.off(ev.Time), Reason: ev.Reason, Idle: died.Sub(refreshed), Timeout: ev.Timeout}
	cs.dead = true
	b.alive--
	for _, k := range [...]conntrack.Key{cs.orig, cs.orig.Reply(), cs.reply, cs.reply.Reply()} {
		if b.live[k] == i {
			delete(b.live, k)
		}
	}
	text := "DESTROY " + c.Short + " " + ev.Reason.String()
	switch ev.Reason {
	case conntrack.ReasonExpired:
		text += " after " + fmtDur(died.Sub(refreshed)) + " idle (timeout " + fmtDur(ev.Timeout) + ")"
	case conntrack.ReasonEvicted:
		text += " to make room (idle " + fmtDur(ev.Idle) + ")"
		b.evicted++
		if len(b.evictions) < maxMarks {
			b.evictions = append(b.evictions, b.off(ev.Time))
		}
	case conntrack.ReasonClosed:
		text += " (" + ev.State.String() + " over)"
	}
	b.note(died, Gateway, text, ev.Reason != conntrack.ReasonClosed)
}

// note adds a note on a lifeline.
func (b *viewBuilder) note(t time.Time, on Lifeline, text string, alarm bool) {
	if len(b.notes) >= maxNotes {
		b.v.Sequence.NotesLeft++
		return
	}
	b.notes = append(b.notes, Note{At: b.off(t), On: on, Text: text, Alarm: alarm})
}

// connOf finds the connection of a packet: its live entry, or the last entry of its
// tuple; -1 for none.
func (b *viewBuilder) connOf(p *packetSeen) int {
	if p.table && p.conn.Status != conntrack.Miss && p.conn.Orig != (conntrack.Key{}) {
		if i, ok := b.live[p.conn.Orig]; ok {
			return i
		}
	}
	if p.info == nil {
		return -1
	}
	k, ok := policy.FlowKey(p.info)
	if !ok {
		return -1
	}
	if i, ok := b.last[k]; ok {
		return i
	}
	return -1
}

// packet takes one packet the gateway read, after the table events it caused.
// Packets that never cross a router (multicast, link-local: reason not-forwarded, the
// namespaces' own IPv6 chatter) are counted, not drawn.
func (b *viewBuilder) packet(p *packetSeen) {
	if p.reason == policy.ReasonNotForwarded {
		b.v.Sequence.Hidden++
		return
	}
	b.packets++
	i := b.connOf(p)
	if i >= 0 && !b.cs[i].dead {
		b.v.Conns[i].Packets++
		if p.table && p.conn.Refreshed {
			b.refresh(i, p.at)
		}
		if p.keepalive {
			t := &b.v.Conns[i].Timer
			if len(t.Probes) < maxProbes {
				t.Probes = append(t.Probes, Probe{At: b.off(p.at), Refreshed: p.table && p.conn.Refreshed})
			}
		}
	}
	if p.reason == policy.ReasonTableFull {
		b.refused++
	}
	a := Arrow{At: b.off(p.at), Conn: i, Keepalive: p.keepalive, Refreshed: p.table && p.conn.Refreshed, Verdict: p.verdict.String(), Reason: p.reason.String(), NAT: p.nat, Count: 1}
	a.Until = a.At
	a.From = sideLifeline(p.dir.From())
	if p.verdict == policy.Forward {
		a.Kind, a.To = Crossed, sideLifeline(p.dir.To())
	} else {
		a.Kind, a.To = Dropped, Gateway
	}
	if p.info != nil {
		a.Label, a.Bytes, a.plain = describe(p.info)
	} else {
		a.Label, a.plain = "packet", true
	}
	a.plain = a.plain && a.Kind == Crossed && !a.Keepalive
	b.lastArrive = b.arrows.add(a)
	if p.table {
		b.level(p.at, p.entries)
	}
}

// translated sets the NAT rewrite of the last packet read.
func (b *viewBuilder) translated(nat string) {
	if i := b.lastArrive; i >= 0 && i < len(b.arrows.list) && b.arrows.list[i].Count == 1 {
		b.arrows.list[i].NAT = nat
	}
}

// inject takes a packet the gateway sent itself, toward side to: in answer to a
// packet (Injected, with that packet's verdict and reason) or at a deadline
// (ExpiryReset).
func (b *viewBuilder) inject(t time.Time, to policy.Side, pkt []byte, kind ArrowKind, v policy.Verdict, r policy.Reason) {
	b.injected++
	a := Arrow{At: b.off(t), Until: b.off(t), From: Gateway, To: sideLifeline(to), Kind: kind, Conn: -1, Verdict: v.String(), Count: 1}
	if kind == Injected {
		a.Reason = r.String()
	} else {
		a.Reason = "reset_on_expire"
	}
	var info packet.Info
	if packet.Decode(pkt, &info) == nil {
		a.Label, a.Bytes, _ = describe(&info)
		if k, ok := policy.FlowKey(&info); ok {
			if i, ok := b.last[k]; ok {
				a.Conn = i
			}
		} else if info.ICMPError && info.Inner.Valid && info.Inner.HasPorts {
			k := conntrack.MakeKey(info.Inner.Proto, netipAP(info.Inner.Src, info.Inner.SrcPort), netipAP(info.Inner.Dst, info.Inner.DstPort))
			if i, ok := b.last[k]; ok {
				a.Conn = i
			}
		}
	} else {
		a.Label = "packet"
	}
	b.arrows.add(a)
}

// level records the table's occupancy at t.
func (b *viewBuilder) level(t time.Time, entries int) { b.occ.add(b.off(t), entries) }

// finish closes what is still open at end and fills the view.
func (b *viewBuilder) finish(end time.Time) {
	for i := range b.cs {
		cs := &b.cs[i]
		if cs.dead {
			continue
		}
		if end.After(cs.refreshed) {
			b.ramp(i, cs.refreshed, end)
		}
		c := &b.v.Conns[i]
		if n := len(c.States); n > 0 {
			c.States[n-1].To = b.off(end)
		}
	}
	s := &b.v.Sequence
	s.Arrows = b.arrows.finish()
	// A reset_on_expire RST stands at its deadline, which a replay's sweep finds a
	// little later.
	sort.SliceStable(s.Arrows, func(i, j int) bool { return s.Arrows[i].At < s.Arrows[j].At })
	sortNotes(b.notes)
	s.Notes = b.notes
	s.Packets, s.Injected = b.packets, b.injected
	s.Folded, s.FoldWindow = b.arrows.folded, b.arrows.window
	o := &b.v.Occupancy
	o.Points, o.SampleWindow, o.Peak = b.occ.list, b.occ.window, b.occ.peak
	o.Evictions, o.Evicted, o.Refused = b.evictions, b.evicted, b.refused
}

// describe names a packet for its arrow: TCP flags ("SYN|ACK"), "UDP", "echo
// request", "ICMP unreachable"; the payload bytes; and whether it is an ordinary
// packet that may be folded with its neighbours (no SYN, FIN or RST).
func describe(p *packet.Info) (label string, bytes int, plain bool) {
	switch {
	case p.Proto == packet.ProtoTCP && p.HasL4:
		return tcpFlags(p.TCPFlags), p.PayloadLen, p.TCPFlags&(packet.TCPSyn|packet.TCPFin|packet.TCPRst) == 0
	case p.Proto == packet.ProtoUDP && p.HasL4:
		return "UDP", p.PayloadLen, true
	case p.ICMPEcho && p.ICMPEchoReply:
		return "echo reply", 0, true
	case p.ICMPEcho:
		return "echo request", 0, true
	case p.ICMPError:
		name := "ICMP"
		if p.Proto == packet.ProtoICMPv6 {
			name = "ICMPv6"
		}
		if p.ICMPType == packet.ICMPv4Unreachable && p.Proto == packet.ProtoICMP || p.ICMPType == packet.ICMPv6Unreachable && p.Proto == packet.ProtoICMPv6 {
			return name + " unreachable code " + strconv.Itoa(int(p.ICMPCode)), 0, false
		}
		return name + " type " + strconv.Itoa(int(p.ICMPType)), 0, false
	}
	return conntrack.ProtoName(p.Proto), 0, true
}

var flagNames = [...]struct {
	bit  uint8
	name string
}{{packet.TCPSyn, "SYN"}, {packet.TCPFin, "FIN"}, {packet.TCPRst, "RST"}, {packet.TCPPsh, "PSH"},
	{packet.TCPAck, "ACK"}, {packet.TCPUrg, "URG"}, {packet.TCPEce, "ECE"}, {packet.TCPCwr, "CWR"}}

// tcpFlags names the flags of a segment in tcpdump's order of importance: "SYN|ACK".
func tcpFlags(f uint8) string {
	var parts []string
	for _, n := range flagNames {
		if f&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		return "no flags"
	}
	return strings.Join(parts, "|")
}

// connName names an entry: "tcp 198.18.0.2:44336 → 198.19.0.2:7000 (nat :1024)",
// short: "tcp :44336 → :7000 (nat :1024)".
func connName(orig, reply conntrack.Key, short bool) string {
	var s string
	switch {
	case orig.Proto == conntrack.ProtoICMP || orig.Proto == conntrack.ProtoICMPv6:
		s = fmt.Sprintf("%s %s → %s id %d", conntrack.ProtoName(orig.Proto), orig.SrcAddr(), orig.DstAddr(), orig.SrcPort)
		if short {
			s = fmt.Sprintf("%s id %d", conntrack.ProtoName(orig.Proto), orig.SrcPort)
		}
	case short:
		s = fmt.Sprintf("%s :%d → :%d", conntrack.ProtoName(orig.Proto), orig.SrcPort, orig.DstPort)
	default:
		s = conntrack.ProtoName(orig.Proto) + " " + orig.SrcAddrPort().String() + " → " + orig.DstAddrPort().String()
	}
	if reply != (conntrack.Key{}) && reply != orig.Reply() {
		out := reply.DstAddrPort()
		if short {
			s += fmt.Sprintf(" (nat :%d)", out.Port())
		} else {
			s += " (nat " + out.String() + ")"
		}
	}
	return s
}

// fmtDur prints a duration for people: "3s", "350s", "1.5s", "12ms", "400µs".
func fmtDur(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d >= time.Second:
		s = strconv.FormatFloat(d.Round(time.Millisecond).Seconds(), 'f', 3, 64)
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".") + "s"
	case d >= time.Millisecond:
		s = strconv.FormatFloat(float64(d.Round(time.Microsecond))/float64(time.Millisecond), 'f', 3, 64)
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".") + "ms"
	case d == 0:
		s = "0s"
	default:
		s = strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64)
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".") + "µs"
	}
	if neg {
		return "-" + s
	}
	return s
}

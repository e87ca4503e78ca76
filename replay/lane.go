package replay

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
)

// Outcome is what a profile did to a flow of the capture.
type Outcome uint8

const (
	// Survived: every packet of the flow crossed (or only its teardown was lost).
	Survived Outcome = iota
	// Dropped: the first hurt packet was dropped silently.
	Dropped
	// Reset: the first hurt packet was answered with a TCP RST.
	Reset
	// Rejected: the first hurt packet was answered with ICMP administratively prohibited.
	Rejected
	// Evicted: the flow's entry was evicted to make room (a full table), and its next
	// packet was dropped or reset.
	Evicted
	// NATRemap: the flow's mapping expired, and its next outbound packet left with a
	// new outside port: the server sees a stranger and answers a TCP segment with a RST.
	NATRemap
	// ResetAtExpiry: the box sent a RST to both ends when the flow's idle timeout fired
	// (reset_on_expire).
	ResetAtExpiry
)

var outcomeNames = [...]string{"survived", "dropped", "reset", "rejected", "evicted", "nat-remap", "reset-at-expiry"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", o)
}

func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

func (o *Outcome) UnmarshalText(b []byte) error {
	for i, n := range outcomeNames {
		if n == string(b) {
			*o = Outcome(i)
			return nil
		}
	}
	return fmt.Errorf("unknown outcome %q", b)
}

// A lane's event subscription holds at least twice as many events as the capture has
// flows (every entry belongs to a flow), so that a sweep that expires the whole table at
// once fits: it starts at minEventBuffer and grows with the flows, up to maxEventBuffer.
// An event lost to a full buffer is counted (Report EventsLost).
const (
	minEventBuffer = 1024
	maxEventBuffer = 1 << 18
)

// laneFlow is one flow as one lane saw it.
type laneFlow struct {
	set     bool // the outcome is settled
	outcome Outcome
	pkt     int // record number of the first hurt packet (0 for ResetAtExpiry)
	at      time.Time
	idle    time.Duration // the flow's silence before that packet
	timeout time.Duration // the (scaled) timeout that fired, 0 if none did
	verdict policy.Verdict
	reason  policy.Reason // the verdict's; none for ResetAtExpiry
	dir     policy.Dir
	note    string

	hadEntry    bool
	gone        bool // the entry was destroyed and no new one made since
	goneReason  conntrack.Reason
	goneAt      time.Time // the deadline (expired) or the moment (evicted)
	goneIdle    time.Duration
	goneTimeout time.Duration
	mapping     netip.AddrPort // NAT: the outside end of the flow's last outbound packet
}

// lane replays the capture through one profile.
type lane struct {
	idx    int
	name   string
	real   policy.Policy
	pol    policy.Policy // scaled
	eng    *policy.Engine
	sub    *policy.Subscription
	res    policy.Result
	inj    []policy.Injected
	flows  []laneFlow
	nat    bool
	natOut [2]netip.Addr // outside address for IPv4, IPv6
	out    output        // errors are sticky and reported by Run's Flush

	ticked   bool
	lastTick time.Time
	deadline time.Time // of the last reset_on_expire seen, for writing its RSTs

	lost     uint64 // events lost by replaced subscriptions
	verdicts [policy.NumVerdicts]int
	reasons  [policy.NumReasons]int // for packets not forwarded
	injected int

	buf  [65536]byte
	info packet.Info
}

func newLane(i int, p Profile, scale float64, nets policy.Networks) (*lane, error) {
	pol, err := p.Policy.Scale(scale)
	if err != nil {
		return nil, err
	}
	pol.VerdictEvents = false
	eng, err := policy.NewEngine(pol)
	if err != nil {
		return nil, err
	}
	if err := eng.SetNetworks(nets); err != nil {
		return nil, err
	}
	l := &lane{idx: i, name: p.Name, real: p.Policy, pol: pol, eng: eng, nat: pol.NAT.Enabled,
		inj: make([]policy.Injected, 0, 8)}
	l.sub = eng.Subscribe(minEventBuffer)
	for _, a := range pol.NAT.Outside {
		if a.Is4() || a.Is4In6() {
			l.natOut[0] = a.Unmap()
		} else {
			l.natOut[1] = a
		}
	}
	return l, nil
}

// grow makes room in the event buffer for a capture of flows flows. Call it between
// packets, when the buffer has been drained.
func (l *lane) grow(rp *replayer, flows int) {
	want := 2*flows + 256
	if want <= cap(l.sub.C) || cap(l.sub.C) >= maxEventBuffer {
		return
	}
	next := l.eng.Subscribe(min(max(want, 2*cap(l.sub.C)), maxEventBuffer))
	l.drain(rp)
	l.lost += l.sub.Dropped()
	l.sub.Close()
	l.sub = next
}

func (l *lane) flow(fi int32) *laneFlow {
	for int(fi) >= len(l.flows) {
		l.flows = append(l.flows, laneFlow{})
	}
	return &l.flows[fi]
}

// tickEvery is the least virtual time between two sweeps. The table's expiry is exact
// at lookup whenever the sweep runs, and a DESTROY event carries the exact deadline,
// so sweeping at most once per millisecond of capture time changes no verdict and no
// reported time; it saves a sweep per packet on dense captures.
const tickEvery = time.Millisecond

// tick sweeps expiries due at ts, in virtual time: Engine.Tick before a packet, so that
// expiries and reset_on_expire happen when the capture's clock passes them.
func (l *lane) tick(rp *replayer, ts time.Time) {
	if l.ticked && ts.Sub(l.lastTick) < tickEvery {
		return
	}
	l.ticked, l.lastTick = true, ts
	l.inj = l.eng.Tick(ts, l.inj[:0])
	l.drain(rp)
	for _, inj := range l.inj {
		l.injected++
		if l.out == nil && rp.opt.Swept == nil {
			continue
		}
		at := ts
		if fi := rp.flowOfPacket(inj.Packet); fi >= 0 && int(fi) < len(l.flows) && !l.flows[fi].goneAt.IsZero() {
			at = l.flows[fi].goneAt
		} else if !l.deadline.IsZero() {
			at = l.deadline
		}
		l.deadline = at
		if l.out != nil {
			l.out.Write(inj.To, at, inj.Packet, capture.Comment{Kind: capture.ExpiryReset, Verdict: policy.Reset})
		}
		if rp.opt.Swept != nil {
			rp.opt.Swept(l.idx, at, inj)
		}
	}
}

// drain reads the table's events: DESTROY tells which flow lost its entry, why, after
// how long idle and under which timeout.
func (l *lane) drain(rp *replayer) {
	for len(l.sub.C) > 0 {
		ev := <-l.sub.C
		if ev.Type != conntrack.EventDestroy {
			if rp.opt.Events != nil {
				rp.opt.Events(l.idx, int(rp.flowOf(ev.Orig, ev.Reply)), ev)
			}
			continue
		}
		fi := rp.flowOf(ev.Orig, ev.Reply)
		if rp.opt.Events != nil {
			rp.opt.Events(l.idx, int(fi), ev)
		}
		if fi < 0 {
			continue
		}
		lf := l.flow(fi)
		lf.gone, lf.goneReason, lf.goneIdle, lf.goneTimeout = true, ev.Reason, ev.Idle, ev.Timeout
		lf.goneAt = ev.Time
		if ev.Reason == conntrack.ReasonExpired || ev.Reason == conntrack.ReasonClosed {
			lf.goneAt = ev.Time.Add(ev.Timeout - ev.Idle) // the deadline, not when the sweep saw it
		}
		if ev.Reason == conntrack.ReasonExpired && l.pol.ResetOnExpire && ev.Proto == packet.ProtoTCP &&
			ev.State == conntrack.TCPEstablished && !lf.set {
			lf.settle(ResetAtExpiry, 0, lf.goneAt, ev.Timeout, ev.Timeout, policy.Reset, 0, policy.Outbound)
			lf.note = "the box sent a RST to both ends at the deadline"
		}
	}
}

func (lf *laneFlow) settle(o Outcome, pkt int, at time.Time, idle, timeout time.Duration, v policy.Verdict, reason policy.Reason, dir policy.Dir) {
	lf.set, lf.outcome, lf.pkt, lf.at, lf.idle, lf.timeout, lf.verdict, lf.reason, lf.dir =
		true, o, pkt, at, idle, timeout, v, reason, dir
}

// packet replays one packet of the capture through the lane.
func (l *lane) packet(rp *replayer, ip []byte, p *packet.Info, dir policy.Dir, ts time.Time, num int, fi int32) {
	l.tick(rp, ts)
	buf := ip
	if l.nat {
		n := copy(l.buf[:], ip)
		buf = l.buf[:n]
		if dir == policy.Inbound && fi >= 0 {
			l.info = *p
			l.toMapping(buf, &l.info, fi, rp)
		}
	}
	res := &l.res
	l.eng.Process(buf, dir, ts, res)
	l.drain(rp)
	l.verdicts[res.Verdict]++
	if res.Verdict != policy.Forward {
		l.reasons[res.Reason]++
	}
	l.injected += len(res.Inject)
	if fi >= 0 {
		l.settleFlow(rp, fi, p, dir, ts, num)
	}
	if l.out != nil {
		if res.Verdict == policy.Forward {
			l.out.Write(dir.From(), ts, ip, capture.Comment{Kind: capture.Arrival, Verdict: res.Verdict, Reason: res.Reason, Dir: dir, Keepalive: res.Conn.Keepalive})
		}
		for _, inj := range res.Inject {
			l.out.Write(inj.To, ts, inj.Packet, capture.Comment{Kind: capture.Injected, Verdict: res.Verdict, Reason: res.Reason})
		}
	}
	if rp.opt.Trace != nil {
		rp.opt.Trace(PacketTrace{Lane: l.idx, Number: num, Time: ts, Dir: dir, Verdict: res.Verdict, Reason: res.Reason, Flow: int(fi),
			Packet: p, Out: res, Entries: l.eng.Len()})
	}
}

// toMapping rewrites an inbound packet's destination to the flow's outside mapping:
// the one its last outbound packet left by, else the outside address with the inside
// port (a flow that never went out has no mapping, and the engine will say so).
func (l *lane) toMapping(buf []byte, p *packet.Info, fi int32, rp *replayer) {
	lf := l.flow(fi)
	target := lf.mapping
	if !target.IsValid() {
		out := l.natOut[0]
		if p.Version == 6 {
			out = l.natOut[1]
		}
		if !out.IsValid() {
			return
		}
		target = netip.AddrPortFrom(out, rp.flows[fi].inside.Port())
	}
	packet.SetDestination(buf, p, target.Addr(), target.Port())
}

// settleFlow updates the flow's state in this lane after its packet and settles the
// outcome at its first hurt packet.
func (l *lane) settleFlow(rp *replayer, fi int32, p *packet.Info, dir policy.Dir, ts time.Time, num int) {
	f := &rp.flows[fi]
	lf := l.flow(fi)
	res := &l.res
	idle := ts.Sub(f.last)
	timeout := time.Duration(0)
	if lf.gone && lf.goneReason == conntrack.ReasonExpired {
		timeout = lf.goneTimeout
	}
	if !lf.set {
		switch {
		case res.Verdict != policy.Forward:
			if harmless(p, f) {
				if lf.note == "" && lf.gone {
					lf.note = fmt.Sprintf("its teardown at packet %d was %s after the box forgot it", num, verbOf(res.Verdict))
				}
				break
			}
			o := Dropped
			switch res.Verdict {
			case policy.Reset:
				o = Reset
			case policy.Reject:
				o = Rejected
			}
			if lf.gone && lf.goneReason == conntrack.ReasonEvicted {
				o = Evicted
			}
			lf.settle(o, num, ts, idle, timeout, res.Verdict, res.Reason, dir)
		case lf.gone && lf.hadEntry && (res.Reason == policy.ReasonPickup || res.Reason == policy.ReasonNew) &&
			lf.goneReason != conntrack.ReasonClosed && !isSYN(p):
			// A forgotten flow carries on; a SYN would be a new connection on the
			// same tuple, entitled to a new port.
			if l.nat && dir == policy.Outbound && lf.mapping.IsValid() && res.Conn.Reply.DstAddrPort() != lf.mapping {
				lf.settle(NATRemap, num, ts, idle, timeout, res.Verdict, res.Reason, dir)
				lf.note = fmt.Sprintf("left by %s instead of %s", res.Conn.Reply.DstAddrPort(), lf.mapping)
			} else if res.Reason == policy.ReasonPickup && lf.note == "" {
				lf.note = fmt.Sprintf("picked up mid-stream at packet %d after %s idle (entry %s)", num, fmtDur(idle), lf.goneReason)
			}
		}
	}
	if res.Verdict == policy.Forward && res.Conn.Status != conntrack.Miss {
		if res.Conn.Status == conntrack.Created {
			lf.gone = false
		}
		lf.hadEntry = true
		if l.nat && dir == policy.Outbound && res.Conn.Reply != (conntrack.Key{}) {
			lf.mapping = res.Conn.Reply.DstAddrPort()
		}
	}
}

func isSYN(p *packet.Info) bool {
	return p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn
}

// harmless reports a packet whose loss breaks nothing: the flow had already closed in
// the capture, or the packet is a bare FIN or RST (the application is done with it).
func harmless(p *packet.Info, f *flow) bool {
	if f.closed() {
		return true
	}
	return p.Proto == packet.ProtoTCP && p.PayloadLen == 0 && p.TCPFlags&(packet.TCPFin|packet.TCPRst) != 0
}

func verbOf(v policy.Verdict) string {
	switch v {
	case policy.Reset:
		return "reset"
	case policy.Reject:
		return "rejected"
	}
	return "dropped"
}

// finish notes flows the box forgot after their last packet.
func (l *lane) finish(rp *replayer) {
	l.tick(rp, rp.end)
	for i := range rp.flows {
		lf := l.flow(int32(i))
		if lf.set || !lf.gone || lf.note != "" || lf.goneReason == conntrack.ReasonClosed {
			continue
		}
		lf.note = fmt.Sprintf("forgotten after its last packet (%s at %s)", lf.goneReason, fmtOffset(lf.goneAt.Sub(rp.start)))
	}
}

// flowOf finds the flow of an entry by its original or reply tuple.
func (rp *replayer) flowOf(orig, reply conntrack.Key) int32 {
	if i, ok := rp.flowIdx[orig]; ok {
		return i
	}
	if i, ok := rp.flowIdx[reply]; ok {
		return i
	}
	return -1
}

// flowOfPacket finds the flow of an injected packet.
func (rp *replayer) flowOfPacket(b []byte) int32 {
	var p packet.Info
	if packet.Decode(b, &p) != nil {
		return -1
	}
	k, ok := policy.FlowKey(&p)
	if !ok {
		return -1
	}
	if i, ok := rp.flowIdx[k]; ok {
		return i
	}
	return -1
}

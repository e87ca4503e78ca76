package policy

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
)

// Dir is the way a packet crosses the gateway.
type Dir uint8

const (
	// Outbound packets come from the inside (the client side) and go out.
	Outbound Dir = iota
	// Inbound packets come from the outside (the server side) toward the inside.
	Inbound
)

func (d Dir) String() string {
	if d == Outbound {
		return "outbound"
	}
	return "inbound"
}

// From is the side a packet of this direction arrives on.
func (d Dir) From() Side { return Side(d) }

// To is the side a packet of this direction leaves by.
func (d Dir) To() Side { return Side(1 - d) }

// Side names one of the gateway's two interfaces.
type Side uint8

const (
	Inside  Side = iota // toward the client namespace
	Outside             // toward the server namespace
)

func (s Side) String() string {
	if s == Inside {
		return "inside"
	}
	return "outside"
}

// Verdict is what happens to one packet.
type Verdict uint8

const (
	// Forward sends the (possibly rewritten) packet on.
	Forward Verdict = iota
	// Drop discards it silently.
	Drop
	// Reset discards it and sends a TCP RST back to its sender.
	Reset
	// Reject discards it and sends ICMP administratively prohibited back to its sender.
	Reject
	numVerdicts
)

var verdictNames = [...]string{"forward", "drop", "reset", "reject"}

func (v Verdict) String() string { return enumName(verdictNames[:], int(v)) }

// Reason says why a packet got its verdict. Every drop is counted under one.
type Reason uint8

const (
	ReasonTracked      Reason = iota // a packet of a live connection
	ReasonNew                        // it opened a new connection
	ReasonPickup                     // it opened a connection mid-stream (orphan: pickup)
	ReasonRelated                    // an ICMP error about a live connection
	ReasonInvalid                    // a live connection's packet the state machine finds invalid (forwarded, as Linux does without an INVALID rule)
	ReasonUntracked                  // a protocol the table does not track, forwarded as is
	ReasonOrphan                     // no live connection, and it may not open one
	ReasonTableFull                  // the table is full and on_full refused the new connection
	ReasonSourceLimit                // max_conns_per_source reached
	ReasonNATNoMapping               // toward the outside address, but no mapping
	ReasonNATFiltered                // a mapping exists but NAT filtering refuses this sender
	ReasonNATNoAddress               // NAT has no outside address of this IP family
	ReasonNATNoPorts                 // every outside port is in use
	ReasonMalformed                  // not a valid IP packet
	ReasonFragment                   // a later fragment of a datagram whose first fragment was not forwarded
	ReasonNotForwarded               // multicast, link-local or unspecified: never crosses a router
	numReasons
)

var reasonNames = [...]string{
	"tracked", "new", "pickup", "related", "invalid", "untracked", "orphan", "table-full",
	"source-limit", "nat-no-mapping", "nat-filtered", "nat-no-address", "nat-no-ports",
	"malformed", "fragment", "not-forwarded",
}

func (r Reason) String() string { return enumName(reasonNames[:], int(r)) }

// maxInject is the most packets one Process call injects: a RST or ICMP answer to the
// packet plus the two RSTs of a reset_on_expire connection found expired by it.
const maxInject = 4

// injectSize fits an ICMPv6 error (RFC 4443: at most the minimum IPv6 MTU).
const injectSize = 1280

// Injected is a packet the gateway originates.
type Injected struct {
	To     Side
	Packet []byte
}

// Result is the outcome of one Process call. It owns the buffers of the injected
// packets; allocate one per goroutine and reuse it: its contents are valid until the
// next call that uses it.
type Result struct {
	Verdict Verdict
	Reason  Reason
	// Packet is the packet to forward when Verdict is Forward: the input slice,
	// rewritten in place under NAT.
	Packet []byte
	// Inject are packets to write, in order.
	Inject []Injected
	// Conn is the connection table's outcome (zero for untracked packets).
	Conn conntrack.Result
	// Info is the decoded packet (after any rewrite).
	Info packet.Info

	injects [maxInject]Injected
	bufs    [maxInject][injectSize]byte
}

func (r *Result) reset() {
	r.Verdict, r.Reason, r.Packet = Drop, ReasonMalformed, nil
	r.Inject = r.injects[:0]
	r.Conn = conntrack.Result{}
}

// add copies p into the next injection buffer.
func (r *Result) add(to Side, p []byte) {
	i := len(r.Inject)
	if i == maxInject || len(p) > injectSize {
		return
	}
	n := copy(r.bufs[i][:], p)
	r.Inject = append(r.Inject, Injected{To: to, Packet: r.bufs[i][:n]})
}

// Stats counts verdicts and reasons since the engine started.
type Stats struct {
	Verdicts [numVerdicts]uint64
	Reasons  [numReasons]uint64
	Injected uint64
	Table    conntrack.Stats
	NATMaps  int
}

// VerdictCounts gives each verdict's name with its count, for printing and metrics.
func (s *Stats) VerdictCounts() map[string]uint64 {
	m := make(map[string]uint64, len(s.Verdicts))
	for i, n := range s.Verdicts {
		m[Verdict(i).String()] = n
	}
	return m
}

// ReasonCounts gives each reason's name with its count.
func (s *Stats) ReasonCounts() map[string]uint64 {
	m := make(map[string]uint64, len(s.Reasons))
	for i, n := range s.Reasons {
		m[Reason(i).String()] = n
	}
	return m
}

// Engine decides the fate of every packet. All methods are safe for concurrent use;
// one mutex (mu) guards the engine's state and serialises its calls into the table,
// so the table's OnDestroy hook runs with mu held.
type Engine struct {
	mu    sync.Mutex
	pol   Policy
	table *conntrack.Table
	nat   natTable
	stats Stats

	// perSource counts live connections opened by each inside address, and counted
	// remembers which connections were counted (by original tuple), while
	// MaxConnsPerSource > 0.
	perSource map[netip.Addr]int
	counted   map[conntrack.Key]netip.Addr

	frags fragTable

	// pending holds packets built by the OnDestroy hook (reset_on_expire) until the
	// caller that triggered the destruction collects them.
	pending []Injected
	cp      conntrack.Packet
	scratch [injectSize]byte
}

// NewEngine builds an engine and its connection table from a valid policy.
func NewEngine(p Policy) (*Engine, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	e := &Engine{
		pol:       p,
		perSource: map[netip.Addr]int{},
		counted:   map[conntrack.Key]netip.Addr{},
		frags:     newFragTable(),
	}
	e.nat.init(&e.pol.NAT)
	t, err := conntrack.New(conntrack.Config{
		Capacity:  p.Capacity,
		OnFull:    conntrack.OnFull(p.OnFull),
		Refresh:   conntrack.Refresh(p.Refresh),
		Timeouts:  p.Timeouts.ConntrackTimeouts(),
		OnDestroy: e.onDestroyLocked,
	})
	if err != nil {
		return nil, err
	}
	e.table = t
	return e, nil
}

// Table is the engine's connection table, for listing and subscribing to events.
// Changes (flush) go through the engine so NAT mappings follow.
func (e *Engine) Table() *conntrack.Table { return e.table }

// Policy returns the policy in force.
func (e *Engine) Policy() Policy {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pol.clone()
}

// SetPolicy changes the policy of a running engine. Timeouts, refresh rule, on_full,
// orphan, reset_on_expire, max_conns_per_source and verdict_events change live; NAT
// and capacity are fixed for the engine's life.
func (e *Engine) SetPolicy(p Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if p.Capacity != e.pol.Capacity {
		return fmt.Errorf("capacity cannot change while the gateway runs; restart the lab with the new value")
	}
	if !natEqual(&p.NAT, &e.pol.NAT) {
		return fmt.Errorf("nat cannot change while the gateway runs; restart the lab with the new settings")
	}
	e.table.SetTimeouts(p.Timeouts.ConntrackTimeouts())
	e.table.SetRefresh(conntrack.Refresh(p.Refresh))
	e.table.SetOnFull(conntrack.OnFull(p.OnFull))
	e.pol = p.clone()
	return nil
}

// Stats returns a copy of the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	s := e.stats
	s.NATMaps = len(e.nat.byOutside)
	e.mu.Unlock()
	s.Table = e.table.Stats()
	return s
}

// Flush forgets every connection and NAT mapping, as a middlebox reboot does.
func (e *Engine) Flush(now time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.table.Flush(now)
	e.pending = e.pending[:0]
	e.frags.clear()
	return n
}

// Tick reports expiries due at now (the table's bounded sweep) and returns, appended
// to out, the RSTs reset_on_expire sends for them. Call it every few tens of
// milliseconds on a live clock; offline, call it before each packet.
//
// Everything due is swept before Tick returns, in chunks of sweepChunk entries with
// the engine lock released between them, so that a mass expiry (a timeout shrunk
// live, a million flows idle at once) never stalls the packet path for long.
func (e *Engine) Tick(now time.Time, out []Injected) []Injected {
	for {
		e.mu.Lock()
		n := e.table.Sweep(now, sweepChunk)
		// Collect this chunk's RSTs under the same lock: a Process call in between
		// would otherwise take them into its Result, which holds only maxInject.
		for _, p := range e.pending {
			out = append(out, Injected{To: p.To, Packet: append([]byte(nil), p.Packet...)})
		}
		e.stats.Injected += uint64(len(e.pending))
		e.pending = e.pending[:0]
		if n < sweepChunk {
			e.frags.expire(now)
			e.mu.Unlock()
			return out
		}
		e.mu.Unlock()
	}
}

// sweepChunk bounds the expiries one lock hold handles (about 1.5 ms of work).
const sweepChunk = 4096

// Process decides the fate of pkt, which arrived in direction dir at time now, and
// writes the outcome to res. pkt may be rewritten in place (NAT). The forward path of
// a live connection does not allocate.
func (e *Engine) Process(pkt []byte, dir Dir, now time.Time, res *Result) {
	res.reset()
	e.mu.Lock()
	e.processLocked(pkt, dir, now, res)
	for _, p := range e.pending {
		res.add(p.To, p.Packet)
	}
	e.pending = e.pending[:0]
	e.stats.Verdicts[res.Verdict]++
	e.stats.Reasons[res.Reason]++
	e.stats.Injected += uint64(len(res.Inject))
	verdictEvents := e.pol.VerdictEvents
	e.mu.Unlock()
	if res.Verdict == Forward {
		res.Packet = pkt
	}
	if verdictEvents {
		e.emitVerdict(res, dir, now)
	}
}

func (e *Engine) emitVerdict(res *Result, dir Dir, now time.Time) {
	ev := conntrack.Event{
		Type:    conntrack.EventVerdict,
		Time:    now,
		Proto:   res.Info.Proto,
		Verdict: res.Verdict.String(),
	}
	ev.Orig, ev.Reply = res.Conn.Orig, res.Conn.Reply
	if ev.Orig == (conntrack.Key{}) && res.Info.Version != 0 {
		// No connection: name the packet by its own tuple.
		ev.Orig = wireKey(&res.Info)
		ev.Reply = ev.Orig.Reply()
	}
	ka := 0
	if res.Conn.Keepalive {
		ka = 1
	}
	ev.Detail = verdictDetails[dir][res.Reason][ka]
	e.table.Emit(ev)
}

// verdictDetails are a VERDICT event's Detail strings, "<direction> <reason>" plus
// " keepalive" for a probe, built once so that emitting one allocates nothing.
var verdictDetails = func() (d [2][numReasons][2]string) {
	for dir := range d {
		for r := range d[dir] {
			d[dir][r][0] = Dir(dir).String() + " " + Reason(r).String()
			d[dir][r][1] = d[dir][r][0] + " keepalive"
		}
	}
	return d
}()

func (e *Engine) processLocked(pkt []byte, dir Dir, now time.Time, res *Result) {
	p := &res.Info
	if err := packet.Decode(pkt, p); err != nil {
		res.Verdict, res.Reason = Drop, ReasonMalformed
		return
	}
	if notForwarded(p) {
		res.Verdict, res.Reason = Drop, ReasonNotForwarded
		return
	}
	if p.Fragment && !p.HasL4 {
		e.laterFragmentLocked(pkt, p, now, res)
		return
	}
	wireSrc, wireDst := p.Src, p.Dst
	switch {
	case p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP:
		if !p.HasL4 {
			res.Verdict, res.Reason = Drop, ReasonMalformed
			return
		}
		e.trackLocked(pkt, p, dir, now, res)
	case (p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6) && p.ICMPEcho:
		e.trackLocked(pkt, p, dir, now, res)
	case (p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6) && p.ICMPError:
		e.relatedLocked(pkt, p, dir, now, res)
	default:
		if e.pol.NAT.Enabled {
			// Without ports there is nothing to translate: a NAT drops it.
			res.Verdict, res.Reason = Drop, ReasonOrphan
			return
		}
		res.Verdict, res.Reason = Forward, ReasonUntracked
	}
	if p.Fragment && p.MoreFrags && p.FragOffset == 0 {
		e.frags.record(wireSrc, wireDst, p, res.Verdict == Forward, now)
	}
}

// notForwarded reports packets a router never forwards between these two links.
func notForwarded(p *packet.Info) bool {
	return p.Dst.IsMulticast() || p.Dst.IsLinkLocalUnicast() || p.Src.IsLinkLocalUnicast() ||
		p.Dst.IsUnspecified() || p.Src.IsMulticast() || p.Dst.IsLoopback() || p.Src.IsLoopback()
}

// FlowKey is the connection-table tuple of a decoded packet as it is on the wire,
// and whether it has one: TCP or UDP with its ports, or an ICMP echo (whose id
// Decode puts in both port fields).
func FlowKey(p *packet.Info) (conntrack.Key, bool) {
	switch {
	case (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP) && p.HasL4, p.ICMPEcho:
		return wireKey(p), true
	}
	return conntrack.Key{}, false
}

// wireKey is FlowKey for a packet known to have a tuple.
func wireKey(p *packet.Info) conntrack.Key {
	return conntrack.MakeKey(p.Proto, netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort))
}

func (e *Engine) trackLocked(pkt []byte, p *packet.Info, dir Dir, now time.Time, res *Result) {
	cp := &e.cp
	*cp = conntrack.Packet{
		Key:        wireKey(p),
		Len:        p.TotalLen,
		Inside:     dir == Outbound,
		TCPFlags:   p.TCPFlags,
		Seq:        p.Seq,
		Ack:        p.Ack,
		Window:     p.Window,
		PayloadLen: p.PayloadLen,
	}
	r := e.table.Track(cp, now)
	switch r.Status {
	case conntrack.Hit, conntrack.Invalid:
		res.Conn = r
		if !e.translate(pkt, p, &r) {
			res.Verdict, res.Reason = Drop, ReasonNATNoAddress
			return
		}
		res.Verdict, res.Reason = Forward, ReasonTracked
		if r.Status == conntrack.Invalid {
			res.Reason = ReasonInvalid
		}
		return
	}
	e.newLocked(pkt, p, dir, now, res)
}

// mayOpen says whether a packet of no live connection may open one, and whether as a
// mid-stream pickup.
func (e *Engine) mayOpen(p *packet.Info, dir Dir) (open, pickup bool) {
	switch p.Proto {
	case packet.ProtoTCP:
		if conntrack.CanOpen(p.TCPFlags, false) {
			return true, false
		}
		pickup := e.pol.Orphan == OrphanPickup
		return pickup && conntrack.CanOpen(p.TCPFlags, true), true
	case packet.ProtoUDP:
		if dir == Outbound {
			return true, false
		}
		return e.pol.Orphan == OrphanPickup, false
	default: // ICMP echo: a request opens, a reply never does
		return !p.ICMPEchoReply, false
	}
}

func (e *Engine) newLocked(pkt []byte, p *packet.Info, dir Dir, now time.Time, res *Result) {
	natted := e.pol.NAT.Enabled
	if natted && dir == Inbound {
		e.inboundNATLocked(pkt, p, now, res)
		return
	}
	open, pickup := e.mayOpen(p, dir)
	if !open {
		e.orphanLocked(pkt, p, dir, res, ReasonOrphan)
		return
	}
	src := p.Src
	limit := e.pol.MaxConnsPerSource
	if limit > 0 && dir == Outbound && e.perSource[src] >= limit {
		e.refuseLocked(pkt, p, dir, res, ReasonSourceLimit)
		return
	}
	reply := e.cp.Key.Reply()
	if natted {
		out, ok := e.pol.NAT.outside(p.Version == 4)
		if !ok {
			res.Verdict, res.Reason = Drop, ReasonNATNoAddress
			return
		}
		port, ok := e.nat.allocate(e.cp.Key, out)
		if !ok {
			res.Verdict, res.Reason = Drop, ReasonNATNoPorts
			return
		}
		reply = natReply(e.cp.Key, out, port)
	}
	r := e.table.Create(&e.cp, now, reply, pickup)
	res.Conn = r
	if !e.created(pkt, p, dir, res, &r) {
		return
	}
	if natted {
		e.nat.bind(e.cp.Key, reply)
	}
	if limit > 0 && dir == Outbound {
		e.perSource[src]++
		e.counted[r.Orig] = src
	}
	if !e.translate(pkt, p, &r) {
		res.Verdict, res.Reason = Drop, ReasonNATNoAddress
		return
	}
	res.Verdict, res.Reason = Forward, ReasonNew
	if pickup {
		res.Reason = ReasonPickup
	}
}

// created checks the outcome of Create and, unless an entry was created, sets the
// verdict: the table was full, the reply tuple was taken (NAT), or the table found
// the packet unfit to open a connection (an orphan after all). Never forward then:
// there is no entry to translate by.
func (e *Engine) created(pkt []byte, p *packet.Info, dir Dir, res *Result, r *conntrack.Result) bool {
	switch r.Status {
	case conntrack.Created:
		return true
	case conntrack.Full:
		res.Verdict, res.Reason = Drop, ReasonTableFull
	case conntrack.Clash:
		res.Verdict, res.Reason = Drop, ReasonNATNoPorts
	default:
		// Track found no entry under e.mu, so Create cannot find one either; mayOpen
		// and Create share conntrack.CanOpen, so this is a packet that may not open.
		res.Conn = conntrack.Result{}
		e.orphanLocked(pkt, p, dir, res, ReasonOrphan)
	}
	return false
}

// inboundNATLocked handles an inbound packet of no live connection under NAT: only a
// mapping whose filtering admits the sender lets it in; it never creates a mapping.
func (e *Engine) inboundNATLocked(pkt []byte, p *packet.Info, now time.Time, res *Result) {
	m, ok := e.nat.lookup(p.Proto, p.Dst, wireKey(p).DstPort)
	if !ok {
		e.orphanLocked(pkt, p, Inbound, res, ReasonNATNoMapping)
		return
	}
	if !e.nat.admits(m, p.Src, p.SrcPort) {
		e.orphanLocked(pkt, p, Inbound, res, ReasonNATFiltered)
		return
	}
	open, pickup := e.mayOpen(p, Outbound) // the mapping was opened from inside: inbound may start a flow on it
	if !open {
		e.orphanLocked(pkt, p, Inbound, res, ReasonOrphan)
		return
	}
	remotePort := wireKey(p).SrcPort
	if p.ICMPEcho {
		remotePort = m.inside.Port() // an echo tuple carries the id in both port fields
	}
	reply := conntrack.MakeKey(p.Proto, m.inside, netip.AddrPortFrom(p.Src, remotePort))
	r := e.table.Create(&e.cp, now, reply, pickup)
	res.Conn = r
	if !e.created(pkt, p, Inbound, res, &r) {
		return
	}
	e.nat.addRef(m, p.Src)
	if !e.translate(pkt, p, &r) {
		res.Verdict, res.Reason = Drop, ReasonNATNoAddress
		return
	}
	res.Verdict, res.Reason = Forward, ReasonNew
}

// orphanLocked applies the orphan rule to a packet of no live connection.
func (e *Engine) orphanLocked(pkt []byte, p *packet.Info, dir Dir, res *Result, why Reason) {
	switch e.pol.Orphan {
	case OrphanReset, OrphanICMP:
		e.refuseLocked(pkt, p, dir, res, why)
	default:
		res.Verdict, res.Reason = Drop, why
	}
}

// refuseLocked answers the sender: a RST for TCP (under orphan: reset or a per-source
// limit), ICMP administratively prohibited otherwise. A RST is never answered, nor is
// an ICMP message.
func (e *Engine) refuseLocked(pkt []byte, p *packet.Info, dir Dir, res *Result, why Reason) {
	res.Verdict, res.Reason = Drop, why
	if p.Proto == packet.ProtoTCP && p.TCPFlags&packet.TCPRst != 0 {
		return
	}
	if p.Proto == packet.ProtoTCP && (e.pol.Orphan != OrphanICMP || why == ReasonSourceLimit) {
		if b, err := packet.BuildReset(e.scratch[:], pkt); err == nil {
			res.Verdict = Reset
			res.add(dir.From(), b)
		}
		return
	}
	if p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6 {
		return
	}
	if b, err := packet.BuildUnreachable(e.scratch[:], pkt, p.Dst); err == nil {
		res.Verdict = Reject
		res.add(dir.From(), b)
	}
}

// translate rewrites a packet of a live connection so that it leaves looking like the
// inverse of the other direction's tuple: the generic NAT rule. Without NAT both
// tuples mirror each other and nothing changes.
func (e *Engine) translate(pkt []byte, p *packet.Info, r *conntrack.Result) bool {
	var want conntrack.Key
	if r.Dir == conntrack.Original {
		want = r.Reply.Reply()
	} else {
		want = r.Orig.Reply()
	}
	have := e.cp.Key
	if want == have {
		return true
	}
	if want.Src != have.Src || want.SrcPort != have.SrcPort {
		if !packet.SetSource(pkt, p, want.SrcAddr(), want.SrcPort) {
			return false
		}
	}
	if want.Dst != have.Dst || want.DstPort != have.DstPort {
		if !packet.SetDestination(pkt, p, want.DstAddr(), want.DstPort) {
			return false
		}
	}
	return true
}

// relatedLocked forwards an ICMP error about a live connection, translating the
// quoted packet and the outer address under NAT. It does not refresh the connection
// (RFC 5508 REQ-10, RFC 7857 section 3.4).
func (e *Engine) relatedLocked(pkt []byte, p *packet.Info, dir Dir, now time.Time, res *Result) {
	if !p.Inner.Valid || !p.Inner.HasPorts {
		res.Verdict, res.Reason = Drop, ReasonOrphan
		return
	}
	in := p.Inner
	inner := conntrack.MakeKey(in.Proto, netip.AddrPortFrom(in.Src, in.SrcPort), netip.AddrPortFrom(in.Dst, in.DstPort))
	// A plain entry owns both directions of its tuple; a NAT entry owns exactly its
	// original and reply tuples, of which the quoted packet is one's inverse.
	ref, _, ok := e.table.Lookup(inner, now)
	if !ok {
		ref, _, ok = e.table.Lookup(inner.Reply(), now)
	}
	if !ok {
		res.Verdict, res.Reason = Drop, ReasonOrphan
		return
	}
	ent, ok := e.table.Get(ref)
	if !ok {
		res.Verdict, res.Reason = Drop, ReasonOrphan
		return
	}
	res.Conn = conntrack.Result{Status: conntrack.Hit, Ref: ref, Orig: ent.Orig, Reply: ent.Reply, State: ent.State, OldState: ent.State}
	if ent.Reply != ent.Orig.Reply() {
		switch inner {
		case ent.Reply.Reply():
			// The quoted packet left in the original direction, translated; the error
			// goes back to the original sender, untranslated.
			o := ent.Orig
			ok = packet.SetInnerSource(pkt, p, o.SrcAddr(), o.SrcPort) &&
				packet.SetInnerDestination(pkt, p, o.DstAddr(), o.DstPort) &&
				packet.SetDestination(pkt, p, o.SrcAddr(), 0)
		case ent.Orig.Reply():
			rp := ent.Reply
			ok = packet.SetInnerSource(pkt, p, rp.SrcAddr(), rp.SrcPort) &&
				packet.SetInnerDestination(pkt, p, rp.DstAddr(), rp.DstPort) &&
				packet.SetSource(pkt, p, rp.DstAddr(), 0)
		}
		if !ok {
			res.Verdict, res.Reason = Drop, ReasonNATNoAddress
			return
		}
	}
	res.Verdict, res.Reason = Forward, ReasonRelated
}

// laterFragmentLocked follows the verdict of the fragment's first fragment: forwarded
// (with the same address translation) if that was, dropped otherwise, including when
// the first fragment has not been seen. Fragments are not reassembled.
func (e *Engine) laterFragmentLocked(pkt []byte, p *packet.Info, now time.Time, res *Result) {
	f, ok := e.frags.lookup(p, now)
	if !ok || !f.forward {
		res.Verdict, res.Reason = Drop, ReasonFragment
		return
	}
	if f.src != p.Src && !packet.SetSource(pkt, p, f.src, 0) ||
		f.dst != p.Dst && !packet.SetDestination(pkt, p, f.dst, 0) {
		res.Verdict, res.Reason = Drop, ReasonFragment
		return
	}
	res.Verdict, res.Reason = Forward, ReasonTracked
}

// onDestroyLocked is the table's OnDestroy hook: it runs with e.mu and the table lock
// held, frees the connection's NAT mapping and per-source count, and queues the RSTs
// of reset_on_expire.
func (e *Engine) onDestroyLocked(ent *conntrack.Entry, why conntrack.Reason) {
	if src, ok := e.counted[ent.Orig]; ok {
		delete(e.counted, ent.Orig)
		if e.perSource[src]--; e.perSource[src] <= 0 {
			delete(e.perSource, src)
		}
	}
	if ent.Reply != ent.Orig.Reply() {
		e.nat.unbind(ent.Orig, ent.Reply)
	}
	if e.pol.ResetOnExpire && why == conntrack.ReasonExpired && ent.Proto == packet.ProtoTCP &&
		ent.State == conntrack.TCPEstablished {
		e.queueResets(ent)
	}
}

// queueResets builds the two RSTs that end an expired connection at both ends. Each
// carries exactly the sequence number its receiver expects next (RFC 5961) and
// acknowledges what the receiver sent last.
func (e *Engine) queueResets(ent *conntrack.Entry) {
	o, r := ent.Orig, ent.Reply
	origSide := Outside
	if ent.OrigInside {
		origSide = Inside
	}
	// To the original sender, from its peer as it sees it (orig.Dst).
	if seq, ok := ent.RcvNxt(conntrack.Original); ok {
		if b, err := packet.BuildRST(e.scratch[:], netip.AddrPortFrom(o.DstAddr(), o.DstPort),
			netip.AddrPortFrom(o.SrcAddr(), o.SrcPort), seq, ent.NextSeq[conntrack.Original], ent.SeqKnown[conntrack.Original]); err == nil {
			e.pending = append(e.pending, Injected{To: origSide, Packet: append([]byte(nil), b...)})
		}
	}
	// To the reply sender, from the original sender as it sees it (reply.Dst).
	if seq, ok := ent.RcvNxt(conntrack.Reply); ok {
		if b, err := packet.BuildRST(e.scratch[:], netip.AddrPortFrom(r.DstAddr(), r.DstPort),
			netip.AddrPortFrom(r.SrcAddr(), r.SrcPort), seq, ent.NextSeq[conntrack.Reply], ent.SeqKnown[conntrack.Reply]); err == nil {
			e.pending = append(e.pending, Injected{To: 1 - origSide, Packet: append([]byte(nil), b...)})
		}
	}
}

// natReply is the reply tuple of a connection with original tuple orig leaving from
// outside address out and port (the echo id for ICMP).
func natReply(orig conntrack.Key, out netip.Addr, port uint16) conntrack.Key {
	rport := orig.DstPort
	if orig.Proto == packet.ProtoICMP || orig.Proto == packet.ProtoICMPv6 {
		rport = port
	}
	return conntrack.MakeKey(orig.Proto, netip.AddrPortFrom(orig.DstAddr(), rport), netip.AddrPortFrom(out, port))
}

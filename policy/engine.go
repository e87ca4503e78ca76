package policy

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
)

// Engine decides the fate of every packet, and owns the connection table it keeps
// for that: callers reach the table only through the engine's queries (List, Len,
// Delete, Expire, SetTimeLeft, Flush) and its event stream (Subscribe).
//
// One call, Process, runs the packet path:
//
//  1. packet.Decode views the headers; malformed packets, bad IPv4 header checksums,
//     never-forwarded addresses and what a router would not route (route.go) stop here;
//  2. a later fragment follows its first fragment's verdict (frag.go);
//  3. a TCP, UDP or ICMP echo packet is tracked in the table (newconn.go): a live
//     connection's packet is translated (translate.go) and forwarded; any other may
//     open a connection, or is an orphan (orphan.go) or invalid (the invalid rule);
//     an ICMP error follows the connection it quotes (translate.go); a packet whose
//     TTL runs out is answered with ICMP time exceeded once the table has seen it,
//     and a forwarded one has its TTL decremented (hop.go);
//  4. what the table destroyed on the way is released and ended (destroy.go);
//  5. events go to subscribers (events.go) and the verdict is counted.
//
// All methods are safe for concurrent use. mu guards the engine's state and
// serialises every call into the table that can change it, so that the engine's
// bookkeeping per entry (NAT mappings, per-source counts) moves with the table; List
// and Len read the table under its own lock only. The subscriber list has its own
// lock, taken after mu.
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

	// nets are the networks on each side (SetNetworks), compiled into routes, which
	// also hold the gateway's router address on each side (hop.go).
	nets   Networks
	routes routes
	// ttlOut says the packet being processed may not be forwarded, its TTL having
	// run out (hop.go).
	ttlOut bool
	// adopt holds the TCP flows open before the gateway was put in their path,
	// until each is picked up (adopt.go).
	adopt map[conntrack.Key]struct{}

	// gone collects the entries the table destroyed during the current call; see
	// destroy.go. rst and rstBufs hold the RSTs of reset_on_expire for one of them.
	gone    []conntrack.Destroyed
	rst     [2]Injected
	rstBufs [2][injectSize]byte

	cp      conntrack.Packet
	scratch [injectSize]byte

	subs hub
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
	e.routes = compileRoutes(&e.nets, &e.pol.NAT)
	t, err := conntrack.New(conntrack.Config{
		Capacity:   p.Capacity,
		OnFull:     conntrack.OnFull(p.OnFull),
		Refresh:    conntrack.Refresh(p.Refresh),
		Timeouts:   p.Timeouts.ConntrackTimeouts(),
		MaxRetrans: p.TCPMaxRetrans,
	})
	if err != nil {
		return nil, err
	}
	e.table = t
	return e, nil
}

// Policy returns the policy in force.
func (e *Engine) Policy() Policy {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pol.clone()
}

// SetPolicy changes the policy of a running engine. Timeouts, tcp_max_retrans, refresh
// rule, on_full, orphan, invalid, reset_on_expire, max_conns_per_source, source_check,
// decrement_ttl and verdict_events change live; NAT and capacity are fixed for the
// engine's life.
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
	e.table.SetMaxRetrans(p.TCPMaxRetrans)
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
	s.EventsDropped = e.subs.dropped.Load()
	return s
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
		n := e.ctSweepLocked(now, sweepChunk)
		// End this chunk's entries under the same lock, so that their RSTs come
		// out of this call and no other.
		before := len(out)
		out = e.endAllLocked(out)
		e.stats.Injected += uint64(len(out) - before)
		if n < sweepChunk {
			e.frags.expire(now)
			e.mu.Unlock()
			return out
		}
		e.mu.Unlock()
	}
}

// sweepChunk bounds the entries one lock hold destroys (about 1.5 ms of work).
const sweepChunk = 4096

// Process decides the fate of pkt, which arrived in direction dir at time now, and
// writes the outcome to res. pkt may be rewritten in place (NAT). The forward path of
// a live connection does not allocate, with or without subscribers.
func (e *Engine) Process(pkt []byte, dir Dir, now time.Time, res *Result) {
	res.reset()
	e.mu.Lock()
	e.processLocked(pkt, dir, now, res)
	if res.Verdict == Forward && e.pol.DecrementTTL {
		packet.DecrementHopLimit(pkt, &res.Info) // processLocked forwards nothing at 1
	}
	if len(e.gone) > 0 {
		e.endIntoLocked(res)
	}
	if e.subs.active() {
		e.publishConnLocked(&res.Conn, now)
		if e.pol.VerdictEvents || e.subs.wantVerdicts() {
			e.publishVerdictLocked(res, dir, now)
		}
	}
	e.stats.Verdicts[res.Verdict]++
	e.stats.Reasons[res.Reason]++
	e.stats.Bytes[dir.From()][res.Verdict] += uint64(len(pkt))
	e.stats.Injected += uint64(len(res.Inject))
	e.mu.Unlock()
	if res.Verdict == Forward {
		res.Packet = pkt
	}
}

func (e *Engine) processLocked(pkt []byte, dir Dir, now time.Time, res *Result) {
	p := &res.Info
	if err := packet.Decode(pkt, p); err != nil {
		res.Verdict, res.Reason = Drop, ReasonMalformed
		return
	}
	if p.Version == 4 && !packet.IPv4HeaderChecksumValid(pkt) {
		res.Verdict, res.Reason = Drop, ReasonBadChecksum
		return
	}
	if why, ok := e.routes.check(p, dir, e.pol.SourceCheck); !ok {
		res.Verdict, res.Reason = Drop, why
		return
	}
	// ip_forward's TTL check: after conntrack (trackLocked applies it once the table
	// has seen the packet), before any verdict of the filter.
	e.ttlOut = e.pol.DecrementTTL && packet.HopLimit(pkt, p) <= 1
	if e.ttlOut && !tracked(p) {
		e.timeExceededLocked(pkt, p, dir, res)
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

// tracked reports whether the table tracks p: a TCP or UDP packet with its ports, or
// an ICMP echo.
func tracked(p *packet.Info) bool {
	return (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP) && p.HasL4 ||
		(p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6) && p.ICMPEcho
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

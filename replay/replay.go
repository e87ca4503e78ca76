// Package replay runs a packet capture (pcap or pcapng) through policy engines in
// virtual time, using the capture's own timestamps, and reports per flow whether it
// would have survived each middlebox. It reads files, so it is not part of the pure
// core; the engines it drives are.
//
// One packet's path:
//  1. read a record without allocating (pcapgo ZeroCopyReadPacketData) and strip the
//     link layer by hand (Ethernet with VLAN tags, Linux SLL and SLL2, raw IP);
//  2. packet.Decode it once, find or create its flow (the 5-tuple, either direction)
//     and tell its direction: from the interfaces of an idlegate pcapng (0 = inside,
//     1 = outside), else from --inside, else from who opened the flow (SYN sender,
//     first UDP sender, echo requester; for a TCP flow seen mid-stream, the side with
//     the higher port);
//  3. for each profile (a lane): Engine.Tick(ts) so that expiries and reset_on_expire
//     happen in virtual time, then Engine.Process(packet, direction, ts) on the lane's
//     copy of the packet;
//  4. read the table's events (DESTROY with reason expired/evicted, its idle time and
//     timeout) and the verdict, and settle the flow's outcome at its first hurt packet;
//  5. with a writer, record what crossed and what the engine injected.
//
// NAT. A capture has no NAT in it: it shows the inside addresses on both sides. For a
// NAT profile, replay rewrites an inbound packet's destination to the flow's current
// outside mapping (the one the engine gave the flow's last outbound packet) before
// Process, so the engine sees what the real box would: a server answering a mapping
// that expired meets no mapping. When a flow forgotten by the box sends again and the
// engine picks it up with a different outside port, the server would see a stranger
// and answer with a RST: that is reported as the outcome nat-remap. An idlegate pcapng
// taken with NAT on records inbound packets addressed to the outside mapping; replay
// learns the mappings from its "translated" records and maps them back first.
//
// A flow whose opening happened before the capture started (a TCP flow whose first
// packet is not a SYN, a UDP flow first seen inbound) gets a synthetic opening at its
// first packet: a handshake (or an outbound datagram) built from its sequence numbers,
// which every lane processes and nothing reports or writes. Without it, every
// long-lived connection in a capture would look like an orphan.
package replay

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
)

// Profile is one policy to replay through, with the name to report it by.
type Profile struct {
	Name   string
	Policy policy.Policy // real (unscaled) values; Options.Scale scales them
}

// Options configure Run.
type Options struct {
	Profiles []Profile
	// Inside lists the networks on the inside (client) side; empty means: use the
	// capture's idlegate interfaces if it has them, else infer per flow. The engines
	// route by them too, everything else of their IP families outside: a packet from
	// the wrong side is spoofed (unless a profile's source_check is off), one to its
	// own side has no route. Without Inside the engines know no network and drop only
	// martians and bad header checksums (see policy.Networks).
	Inside []netip.Prefix
	// Scale multiplies every timeout of every profile (0 or 1: none): for captures of a
	// lab run with --time-scale. Reports show scaled and real values.
	Scale float64
	// Write, if set, receives what would have crossed the box plus what it injected, as
	// a pcap (raw IP) or, with WritePcapng, a pcapng like the gateway's. Only with one
	// profile.
	Write       io.Writer
	WritePcapng bool
	// Trace, if set, is called for every packet and lane after Process.
	Trace func(PacketTrace)
	// Events, if set, receives every table event of every lane (NEW, UPDATE, DESTROY)
	// with the index of the flow it belongs to in Report.Flows (-1 for none), in the
	// order the lane made them: a packet's events before its Trace.
	Events func(lane, flow int, ev policy.Event)
	// Swept, if set, receives each packet a lane's sweep sent (the RSTs of
	// reset_on_expire) with the time it stands for: the connection's deadline.
	// inj.Packet is valid only during the call.
	Swept func(lane int, at time.Time, inj policy.Injected)
}

// PacketTrace is one packet's verdict in one lane.
type PacketTrace struct {
	Lane    int
	Number  int // record number in the capture, from 1
	Time    time.Time
	Dir     policy.Dir
	Verdict policy.Verdict
	Reason  policy.Reason
	Flow    int // -1 for packets of no flow (ICMP errors, other protocols)

	// Packet is the packet as the capture has it (decoded once, before any NAT of
	// the lane) and Out the lane's result: the packet as the engine left it
	// (Out.Info, rewritten under NAT), the table's outcome (Out.Conn: state, whether
	// it restarted the idle timer, keepalive probe, the entry's tuples) and what the
	// engine sent in answer (Out.Inject). Both are valid only during the call.
	Packet *packet.Info
	Out    *policy.Result
	// Entries is the lane's table occupancy after the packet.
	Entries int
}

// DirectionSource says how replay told inside from outside.
type DirectionSource string

const (
	DirInterfaces DirectionSource = "interfaces" // idlegate pcapng: interface 0 inside, 1 outside
	DirInside     DirectionSource = "inside"     // --inside networks
	DirInferred   DirectionSource = "inferred"   // per flow: who opened it
)

// Run replays the capture read from r (named name in messages) through every profile.
func Run(name string, r io.Reader, opt Options) (*Report, error) {
	if len(opt.Profiles) == 0 {
		return nil, errors.New("replay needs at least one profile")
	}
	if opt.Write != nil && len(opt.Profiles) != 1 {
		return nil, errors.New("writing what crossed needs exactly one profile")
	}
	scale := opt.Scale
	if scale == 0 {
		scale = 1
	}
	if err := policy.CheckScale(scale); err != nil {
		return nil, err
	}
	rd, err := openReader(name, r)
	if err != nil {
		return nil, err
	}
	nets := insideNetworks(opt.Inside)
	if err := nets.Validate(); err != nil {
		return nil, fmt.Errorf("inside networks: %w", err)
	}
	rp := &replayer{opt: opt, scale: scale, rd: rd, flowIdx: map[conntrack.Key]int32{}, insideAddr: map[netip.Addr]bool{}}
	for i, p := range opt.Profiles {
		l, err := newLane(i, p, scale, nets)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", p.Name, err)
		}
		rp.lanes = append(rp.lanes, l)
	}
	if opt.Write != nil {
		if rp.out, err = newOutput(opt.Write, opt.WritePcapng); err != nil {
			return nil, fmt.Errorf("write the replayed capture: %w", err)
		}
		rp.lanes[0].out = rp.out
	}
	if err := rp.run(); err != nil {
		return nil, err
	}
	if rp.out != nil {
		if err := rp.out.Flush(); err != nil {
			return nil, fmt.Errorf("write the replayed capture: %w", err)
		}
	}
	return rp.report(name), nil
}

// insideNetworks are the networks the engines route by for inside networks given:
// those inside, and the rest of each IP family they name (a default route) outside.
// None given, none known.
func insideNetworks(inside []netip.Prefix) policy.Networks {
	var n policy.Networks
	if len(inside) == 0 {
		return n
	}
	n.Inside = inside
	for _, def := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		named := false
		for _, p := range inside {
			named = named || p.Addr().Is4() == def.Addr().Is4()
		}
		if named && !slices.Contains(inside, def) {
			n.Outside = append(n.Outside, def)
		}
	}
	return n
}

// flow is one 5-tuple of the capture, both directions.
type flow struct {
	key       conntrack.Key  // inside -> outside
	inside    netip.AddrPort // the inside (client) end
	outside   netip.AddrPort
	proto     uint8
	packets   int
	first     time.Time
	last      time.Time // the flow's previous packet, while one is processed
	firstPkt  int
	how       string // how the inside end was told
	synthetic bool   // a synthetic opening was played
	finIn     bool   // FIN seen from the inside
	finOut    bool
	rst       bool
}

func (f *flow) closed() bool { return f.rst || f.finIn && f.finOut }

type replayer struct {
	opt   Options
	scale float64
	rd    *reader
	lanes []*lane
	out   output

	flows      []flow
	flowIdx    map[conntrack.Key]int32 // both directions of each flow's key
	insideAddr map[netip.Addr]bool     // inside ends of inferred flows, for packets of no flow
	dirSource  DirectionSource

	records, packets, nonIP, malformed, skipped int
	start, end                                  time.Time

	info    packet.Info
	scratch [65536]byte // truncated or un-NATed packets
	synth   [3][128]byte

	// idlegate NAT captures: outbound arrivals not yet matched with their
	// "translated" record, and the mappings learned.
	recent   [256]arrival
	recentN  int
	unNAT    map[natKey]netip.AddrPort
	unNATHit int
}

type arrival struct {
	proto      uint8
	src, dst   netip.AddrPort
	seq, ack   uint32
	payloadLen int
}

type natKey struct {
	proto         uint8
	outside, peer netip.AddrPort
}

func (rp *replayer) run() error {
	var rec record
	for {
		err := rp.rd.next(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		rp.records++
		rp.packet(&rec)
	}
	for _, l := range rp.lanes {
		l.finish(rp)
	}
	return nil
}

// packet handles one record.
func (rp *replayer) packet(rec *record) {
	idle := rp.rd.idlegate
	if idle && rec.note.Kind != capture.None && rec.note.Kind != capture.Arrival {
		// Not a packet the gateway read: its translated copy, or one it originated.
		if rec.note.Kind == capture.Translated && rec.iface == int(policy.Outside) {
			rp.learnNAT(rec)
		}
		rp.skipped++
		return
	}
	ip := ipOf(rec.data, rec.link)
	if ip == nil {
		rp.nonIP++
		return
	}
	if rec.truncated {
		ip = rp.pad(ip)
	}
	p := &rp.info
	if err := packet.Decode(ip, p); err != nil {
		rp.malformed++
		return
	}
	ts := rec.ts
	if rp.packets == 0 {
		rp.start = ts
	}
	rp.packets++
	rp.end = ts
	num := rp.records

	// Direction from the interfaces of an idlegate capture.
	dir, dirKnown := policy.Outbound, false
	if idle && rec.iface <= 1 {
		dir, dirKnown = policy.Dir(rec.iface), true
		rp.dirSource = DirInterfaces
		if dir == policy.Outbound {
			rp.remember(p)
		}
		if dir == policy.Inbound && rp.unNAT != nil {
			ip = rp.mapBack(ip, p)
		}
	}

	fi := int32(-1)
	isNew := false
	if key, ok := policy.FlowKey(p); ok {
		if i, found := rp.flowIdx[key]; found {
			fi = i
		} else {
			fi, isNew = rp.newFlow(key, p, dir, dirKnown, ts, num), true
		}
	}
	var f *flow
	if fi >= 0 {
		f = &rp.flows[fi]
		if !dirKnown {
			dir = policy.Inbound
			if netip.AddrPortFrom(p.Src, p.SrcPort) == f.inside {
				dir = policy.Outbound
			}
		}
	} else if !dirKnown {
		dir = rp.dirOfStray(p)
	}

	for _, l := range rp.lanes {
		if isNew && f.synthetic {
			l.tick(rp, ts)
			rp.playSynthetic(l, f, p, ts)
		}
		l.packet(rp, ip, p, dir, ts, num, fi)
	}
	if f != nil {
		f.packets++
		f.last = ts
		if p.Proto == packet.ProtoTCP {
			switch {
			case p.TCPFlags&packet.TCPRst != 0:
				f.rst = true
			case p.TCPFlags&packet.TCPFin != 0 && dir == policy.Outbound:
				f.finIn = true
			case p.TCPFlags&packet.TCPFin != 0:
				f.finOut = true
			}
		}
	}
}

// pad copies a packet captured shorter than it was into scratch and zero-fills it up
// to its IP length: the engine needs headers, and a short packet would be malformed.
func (rp *replayer) pad(ip []byte) []byte {
	n := copy(rp.scratch[:], ip)
	want := min(max(packet.IPLen(ip), n), len(rp.scratch))
	clear(rp.scratch[n:want])
	return rp.scratch[:want]
}

// newFlow creates the flow of a packet seen for the first time and decides which end
// is inside.
func (rp *replayer) newFlow(key conntrack.Key, p *packet.Info, dir policy.Dir, dirKnown bool, ts time.Time, num int) int32 {
	srcInside, how := true, ""
	switch {
	case dirKnown:
		srcInside, how = dir == policy.Outbound, "interface"
	case len(rp.opt.Inside) > 0 && (rp.inside(p.Src) || rp.inside(p.Dst)):
		srcInside, how = rp.inside(p.Src), "--inside"
		rp.dirSource = DirInside
	default:
		srcInside, how = inferOpener(p)
		if rp.dirSource == "" {
			rp.dirSource = DirInferred
		}
	}
	f := flow{key: key, proto: key.Proto, first: ts, last: ts, firstPkt: num, how: how}
	if !srcInside {
		f.key = key.Reply()
	}
	f.inside, f.outside = f.key.SrcAddrPort(), f.key.DstAddrPort()
	// A flow already open when the capture started gets a synthetic opening.
	switch p.Proto {
	case packet.ProtoTCP:
		f.synthetic = p.TCPFlags&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn && p.TCPFlags&packet.TCPRst == 0
	case packet.ProtoUDP:
		f.synthetic = !srcInside
	}
	i := int32(len(rp.flows))
	rp.flows = append(rp.flows, f)
	rp.flowIdx[key] = i
	rp.flowIdx[key.Reply()] = i
	rp.insideAddr[f.inside.Addr()] = true
	for _, l := range rp.lanes {
		l.grow(rp, len(rp.flows))
	}
	return i
}

func (rp *replayer) inside(a netip.Addr) bool {
	for _, p := range rp.opt.Inside {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// inferOpener decides whether a flow's first packet came from the inside: the SYN
// sender, the first UDP sender and the echo requester are inside; for TCP seen
// mid-stream, the end with the higher (ephemeral) port.
func inferOpener(p *packet.Info) (srcInside bool, how string) {
	switch {
	case p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn:
		return true, "SYN sender"
	case p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn|packet.TCPAck:
		return false, "SYN-ACK receiver"
	case p.Proto == packet.ProtoTCP:
		if p.SrcPort != p.DstPort {
			return p.SrcPort > p.DstPort, "higher port (seen mid-stream)"
		}
		return true, "first sender (seen mid-stream)"
	case p.ICMPEcho:
		return !p.ICMPEchoReply, "echo requester"
	}
	return true, "first sender"
}

// dirOfStray gives a packet of no flow (ICMP error, other protocol) a direction: an
// ICMP error goes toward the sender of the packet it quotes; anything else is
// outbound when it comes from a known inside address.
func (rp *replayer) dirOfStray(p *packet.Info) policy.Dir {
	if len(rp.opt.Inside) > 0 {
		if rp.inside(p.Src) {
			return policy.Outbound
		}
		return policy.Inbound
	}
	if p.ICMPError && p.Inner.Valid {
		if rp.insideAddr[p.Inner.Src] {
			return policy.Inbound
		}
		return policy.Outbound
	}
	if rp.insideAddr[p.Src] {
		return policy.Outbound
	}
	return policy.Inbound
}

// remember keeps an outbound arrival of an idlegate capture, to match with the
// "translated" record that follows it under NAT.
func (rp *replayer) remember(p *packet.Info) {
	if !p.HasL4 && !p.ICMPEcho {
		return
	}
	a := arrival{proto: p.Proto, src: netip.AddrPortFrom(p.Src, p.SrcPort), dst: netip.AddrPortFrom(p.Dst, p.DstPort),
		seq: p.Seq, ack: p.Ack, payloadLen: p.PayloadLen}
	rp.recent[rp.recentN%len(rp.recent)] = a
	rp.recentN++
}

// learnNAT reads a "translated" record of an idlegate capture that left by the outside
// interface: an outbound packet after source NAT. The latest outbound arrival with the
// same protocol, destination and sequence numbers is its original.
func (rp *replayer) learnNAT(rec *record) {
	ip := ipOf(rec.data, rec.link)
	var p packet.Info
	if ip == nil || packet.Decode(ip, &p) != nil || !p.HasL4 && !p.ICMPEcho {
		return
	}
	dst := netip.AddrPortFrom(p.Dst, p.DstPort)
	for i := 1; i <= min(rp.recentN, len(rp.recent)); i++ {
		a := &rp.recent[(rp.recentN-i)%len(rp.recent)]
		if a.proto != p.Proto || a.payloadLen != p.PayloadLen || a.seq != p.Seq || a.ack != p.Ack {
			continue
		}
		if a.dst != dst && !(p.ICMPEcho && a.dst.Addr() == p.Dst) {
			continue
		}
		if rp.unNAT == nil {
			rp.unNAT = map[natKey]netip.AddrPort{}
		}
		peer := dst
		if p.ICMPEcho {
			peer = netip.AddrPortFrom(p.Dst, p.SrcPort)
		}
		rp.unNAT[natKey{p.Proto, netip.AddrPortFrom(p.Src, p.SrcPort), peer}] = a.src
		return
	}
}

// mapBack rewrites an inbound packet of an idlegate NAT capture, addressed to an
// outside mapping, to the inside end it stood for, so that flows match and every lane
// sees the packet as a capture without NAT would show it.
func (rp *replayer) mapBack(ip []byte, p *packet.Info) []byte {
	peer := netip.AddrPortFrom(p.Src, p.SrcPort)
	in, ok := rp.unNAT[natKey{p.Proto, netip.AddrPortFrom(p.Dst, p.DstPort), peer}]
	if !ok {
		return ip
	}
	if &ip[0] != &rp.scratch[0] {
		n := copy(rp.scratch[:], ip)
		ip = rp.scratch[:n]
	}
	if packet.SetDestination(ip, p, in.Addr(), in.Port()) {
		rp.unNATHit++
	}
	return ip
}

package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
)

// rig drives an engine on a manual clock, in the lab's networks.
type rig struct {
	t   testing.TB
	e   *Engine
	now time.Time
	res *Result
}

func newRig(t testing.TB, mutate func(*Policy)) *rig {
	t.Helper()
	p := Default()
	p.Timeouts.TCP.Established = Duration(5 * time.Second)
	if mutate != nil {
		mutate(&p)
	}
	e, err := NewEngine(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetNetworks(labNets); err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, e: e, now: t0, res: new(Result)}
}

func (r *rig) advance(d time.Duration) { r.now = r.now.Add(d) }

// send processes pkt and checks the verdict and reason.
func (r *rig) send(pkt []byte, dir Dir, want Verdict, why Reason) *Result {
	r.t.Helper()
	r.e.Process(pkt, dir, r.now, r.res)
	if r.res.Verdict != want || r.res.Reason != why {
		r.t.Fatalf("%s packet: got %s (%s), want %s (%s)", dir, r.res.Verdict, r.res.Reason, want, why)
	}
	if want == Forward {
		decode(r.t, r.res.Packet)
	}
	for _, inj := range r.res.Inject {
		decode(r.t, inj.Packet)
	}
	return r.res
}

var (
	cli = ap(client4, 40000)
	srv = ap(server4, 80)
)

// handshake opens c->s with ISNs 1000 (client) and 5000 (server) and one data
// exchange: client sent up to 1003, server up to 5001. It returns the client's
// endpoint as the server sees it (the outside address and port under NAT).
func (r *rig) handshake(c, s netip.AddrPort) netip.AddrPort {
	r.t.Helper()
	res := r.send(tcp(r.t, c, s, "S", 1000, 0, ""), Outbound, Forward, ReasonNew)
	d := decode(r.t, res.Packet)
	seen := ap(d.src, d.sport)
	r.send(tcp(r.t, s, seen, "SA", 5000, 1001, ""), Inbound, Forward, ReasonTracked)
	r.send(tcp(r.t, c, s, "A", 1001, 5001, ""), Outbound, Forward, ReasonTracked)
	r.send(tcp(r.t, c, s, "PA", 1001, 5001, "hi"), Outbound, Forward, ReasonTracked)
	r.send(tcp(r.t, s, seen, "A", 5001, 1003, ""), Inbound, Forward, ReasonTracked)
	return seen
}

func TestIdleExpiryAndOrphanVerdicts(t *testing.T) {
	cases := []struct {
		name   string
		orphan Orphan
		want   Verdict
		why    Reason
		check  func(t *testing.T, res *Result)
	}{
		{"drop", OrphanDrop, Drop, ReasonOrphan, func(t *testing.T, res *Result) {
			if len(res.Inject) != 0 {
				t.Fatalf("silent drop injected %d packets", len(res.Inject))
			}
		}},
		{"reset", OrphanReset, Reset, ReasonOrphan, func(t *testing.T, res *Result) {
			if len(res.Inject) != 1 || res.Inject[0].To != Inside {
				t.Fatalf("want one RST to the inside, got %+v", res.Inject)
			}
			d := decode(t, res.Inject[0].Packet)
			// RFC 793: the offending segment has ACK 5001, so the RST carries seq 5001,
			// exactly the client's rcv.nxt (RFC 5961), from the server's address.
			if !d.tcp.RST || d.tcp.Seq != 5001 || d.src != server4 || d.dst != client4 || d.sport != 80 || d.dport != 40000 {
				t.Fatalf("bad RST: %+v seq %d", d, d.tcp.Seq)
			}
		}},
		{"icmp", OrphanICMP, Reject, ReasonOrphan, func(t *testing.T, res *Result) {
			if len(res.Inject) != 1 || res.Inject[0].To != Inside {
				t.Fatalf("want one ICMP to the inside, got %+v", res.Inject)
			}
			d := decode(t, res.Inject[0].Packet)
			if d.icmp4 == nil || d.icmp4.TypeCode.Type() != 3 || d.icmp4.TypeCode.Code() != 13 || d.dst != client4 {
				t.Fatalf("want ICMP 3/13 to the client, got %+v", d.icmp4)
			}
		}},
		{"pickup", OrphanPickup, Forward, ReasonPickup, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(p *Policy) { p.Orphan = tc.orphan })
			r.handshake(cli, srv)
			// One nanosecond before the deadline the flow is alive, and refreshed.
			r.advance(5*time.Second - time.Nanosecond)
			r.send(tcp(t, cli, srv, "A", 1003, 5001, ""), Outbound, Forward, ReasonTracked)
			// Exactly at the deadline it is gone.
			r.advance(5 * time.Second)
			res := r.send(tcp(t, cli, srv, "PA", 1003, 5001, "again"), Outbound, tc.want, tc.why)
			if tc.check != nil {
				tc.check(t, res)
			}
			if tc.orphan == OrphanPickup {
				r.send(tcp(t, srv, cli, "A", 5001, 1008, ""), Inbound, Forward, ReasonTracked)
			} else if r.e.Len() != 0 {
				t.Fatalf("orphan %s left %d entries", tc.orphan, r.e.Len())
			}
		})
	}
}

func TestOrphanNeverAnswersRST(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.Orphan = OrphanReset })
	res := r.send(tcp(t, cli, srv, "R", 1003, 0, ""), Outbound, Drop, ReasonOrphan)
	if len(res.Inject) != 0 {
		t.Fatal("a RST was answered")
	}
}

func TestUDP(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.Orphan = OrphanReset; p.Timeouts.UDP = Duration(30 * time.Second) })
	c, s := ap(client4, 5353), ap(server4, 7000)
	r.send(udp(t, c, s, "q"), Outbound, Forward, ReasonNew)
	r.send(udp(t, s, c, "a"), Inbound, Forward, ReasonTracked)
	// Unsolicited toward the inside: orphan reset answers with ICMP unreachable.
	res := r.send(udp(t, ap(server4, 9999), c, "x"), Inbound, Reject, ReasonOrphan)
	d := decode(t, res.Inject[0].Packet)
	if res.Inject[0].To != Outside || d.icmp4 == nil || d.icmp4.TypeCode.Code() != 13 || d.dst != server4 {
		t.Fatalf("want ICMP 3/13 to the server, got %+v to %s", d.icmp4, res.Inject[0].To)
	}
}

func TestNATRemapAfterExpiry(t *testing.T) {
	r := newRig(t, func(p *Policy) {
		p.Orphan = OrphanPickup
		p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4, out6}, Ports: PortRange{20000, 20100}}
	})
	res := r.send(tcp(t, cli, srv, "S", 1000, 0, ""), Outbound, Forward, ReasonNew)
	d := decode(t, res.Packet)
	if d.src != out4 || d.dst != server4 || d.dport != 80 {
		t.Fatalf("SYN left as %s:%d -> %s:%d, want from %s", d.src, d.sport, d.dst, d.dport, out4)
	}
	port1 := d.sport
	res = r.send(tcp(t, srv, ap(out4, port1), "SA", 5000, 1001, ""), Inbound, Forward, ReasonTracked)
	if d := decode(t, res.Packet); d.dst != client4 || d.dport != 40000 {
		t.Fatalf("SYN-ACK arrived as %s:%d, want the client", d.dst, d.dport)
	}
	r.send(tcp(t, cli, srv, "A", 1001, 5001, ""), Outbound, Forward, ReasonTracked)

	// An inbound packet after the mapping expired is dropped and does not reopen it.
	r.advance(6 * time.Second)
	r.send(tcp(t, srv, ap(out4, port1), "PA", 5001, 1001, "late"), Inbound, Drop, ReasonNATNoMapping)
	if n := r.e.Stats().NATMaps; n != 0 {
		t.Fatalf("an inbound packet reopened a mapping: %d mappings", n)
	}
	// The client's next segment is picked up with a new outside port: the server's
	// kernel will see a stranger and answer RST.
	res = r.send(tcp(t, cli, srv, "PA", 1001, 5001, "hello?"), Outbound, Forward, ReasonPickup)
	if d := decode(t, res.Packet); d.sport == port1 || d.src != out4 {
		t.Fatalf("after expiry the flow kept outside port %d", d.sport)
	}
	// The server's RST to the new port reaches the client, translated.
	d = decode(t, res.Packet)
	res = r.send(tcp(t, srv, ap(out4, d.sport), "R", 5001, 0, ""), Inbound, Forward, ReasonTracked)
	if d := decode(t, res.Packet); d.dst != client4 || d.dport != 40000 || !d.tcp.RST {
		t.Fatalf("server RST not delivered to the client: %+v", d)
	}
}

func TestNATEndpointIndependentMappingAndFiltering(t *testing.T) {
	r := newRig(t, func(p *Policy) {
		p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}, Filtering: EndpointIndependent}
	})
	c := ap(client4, 5000)
	res := r.send(udp(t, c, ap(server4, 7000), "a"), Outbound, Forward, ReasonNew)
	p1 := decode(t, res.Packet).sport
	res = r.send(udp(t, c, ap(server4, 7001), "b"), Outbound, Forward, ReasonNew)
	if p2 := decode(t, res.Packet).sport; p2 != p1 {
		t.Fatalf("endpoint-independent mapping gave ports %d and %d", p1, p2)
	}
	// Endpoint-independent filtering: another outside peer may reach the mapping.
	res = r.send(udp(t, ap(server4, 7777), ap(out4, p1), "hi"), Inbound, Forward, ReasonNew)
	if d := decode(t, res.Packet); d.dst != client4 || d.dport != 5000 {
		t.Fatalf("inbound through the mapping reached %s:%d", d.dst, d.dport)
	}
}

func TestNATICMPErrorTranslated(t *testing.T) {
	r := newRig(t, func(p *Policy) {
		p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
	})
	c := ap(client4, 5000)
	res := r.send(udp(t, c, ap(server4, 7000), "a"), Outbound, Forward, ReasonNew)
	sent := append([]byte(nil), res.Packet...)
	// The server's kernel answers port unreachable quoting the translated datagram.
	var b [1500]byte
	icmp, err := packet.BuildUnreachable(b[:], sent, server4)
	if err != nil {
		t.Fatal(err)
	}
	res = r.send(append([]byte(nil), icmp...), Inbound, Forward, ReasonRelated)
	d := decode(t, res.Packet)
	if d.dst != client4 {
		t.Fatalf("ICMP error went to %s, want the client", d.dst)
	}
	var info packet.Info
	if err := packet.Decode(res.Packet, &info); err != nil || info.Inner.Src != client4 || info.Inner.SrcPort != 5000 {
		t.Fatalf("quoted packet not translated back: %+v (%v)", info.Inner, err)
	}
}

func TestResetOnExpire(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.ResetOnExpire = true })
	r.handshake(cli, srv)
	if out := r.e.Tick(r.now.Add(5*time.Second-time.Millisecond), nil); len(out) != 0 {
		t.Fatalf("RSTs before the deadline: %d", len(out))
	}
	out := r.e.Tick(r.now.Add(5*time.Second), nil)
	if len(out) != 2 {
		t.Fatalf("want 2 RSTs at the deadline, got %d", len(out))
	}
	for _, inj := range out {
		d := decode(t, inj.Packet)
		if !d.tcp.RST {
			t.Fatal("not a RST")
		}
		switch inj.To {
		case Inside: // to the client, as from the server, at the client's rcv.nxt
			if d.dst != client4 || d.src != server4 || d.tcp.Seq != 5001 {
				t.Fatalf("RST to client: %s -> %s seq %d", d.src, d.dst, d.tcp.Seq)
			}
		case Outside:
			if d.dst != server4 || d.src != client4 || d.tcp.Seq != 1003 {
				t.Fatalf("RST to server: %s -> %s seq %d", d.src, d.dst, d.tcp.Seq)
			}
		}
	}
	if out[0].To == out[1].To {
		t.Fatal("both RSTs go to the same side")
	}
}

func TestMaxConnsPerSource(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.MaxConnsPerSource = 2 })
	for i := range 2 {
		r.send(tcp(t, ap(client4, uint16(40000+i)), srv, "S", 1000, 0, ""), Outbound, Forward, ReasonNew)
	}
	res := r.send(tcp(t, ap(client4, 40002), srv, "S", 1000, 0, ""), Outbound, Reset, ReasonSourceLimit)
	if d := decode(t, res.Inject[0].Packet); !d.tcp.RST || !d.tcp.ACK || d.tcp.Ack != 1001 {
		t.Fatalf("refusal is not RST|ACK ack 1001: %+v", d.tcp)
	}
	// Another source is not limited; when a connection ends, the source may open again.
	r.send(tcp(t, ap(client6, 40000), ap(server6, 80), "S", 1000, 0, ""), Outbound, Forward, ReasonNew)
	r.advance(121 * time.Second) // SYN_SENT times out
	r.e.Tick(r.now, nil)
	r.send(tcp(t, ap(client4, 40002), srv, "S", 1000, 0, ""), Outbound, Forward, ReasonNew)
}

func TestICMPEcho(t *testing.T) {
	r := newRig(t, nil)
	r.send(ping4(t, client4, server4, false, 7, 1), Outbound, Forward, ReasonNew)
	r.send(ping4(t, server4, client4, true, 7, 1), Inbound, Forward, ReasonTracked)
	r.send(ping4(t, server4, client4, true, 8, 1), Inbound, Drop, ReasonOrphan)
}

func TestNotForwardedAndMalformed(t *testing.T) {
	r := newRig(t, nil)
	r.send([]byte{0x45, 0, 0}, Outbound, Drop, ReasonMalformed)
	r.send(udp(t, ap(client6, 5353), ap(netip.MustParseAddr("ff02::fb"), 5353), "mdns"), Outbound, Drop, ReasonNotForwarded)
}

func TestFlushForgetsEverything(t *testing.T) {
	r := newRig(t, func(p *Policy) {
		p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
	})
	r.handshake(cli, srv)
	if n := r.e.Flush(r.now); n != 1 {
		t.Fatalf("flushed %d", n)
	}
	if s := r.e.Stats(); s.NATMaps != 0 || r.e.Len() != 0 {
		t.Fatalf("after flush: %d mappings, %d entries", s.NATMaps, r.e.Len())
	}
	r.send(tcp(t, cli, srv, "PA", 1003, 5001, "x"), Outbound, Drop, ReasonOrphan)
}

func TestSetPolicyLive(t *testing.T) {
	r := newRig(t, nil)
	r.handshake(cli, srv)
	p := r.e.Policy()
	if err := p.Set("timeouts.tcp.established", "1s"); err != nil {
		t.Fatal(err)
	}
	if err := p.Set("orphan", "reset"); err != nil {
		t.Fatal(err)
	}
	if err := r.e.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	r.advance(time.Second)
	r.send(tcp(t, cli, srv, "PA", 1003, 5001, "x"), Outbound, Reset, ReasonOrphan)
	p.Capacity = 5
	if err := r.e.SetPolicy(p); err == nil {
		t.Fatal("capacity changed live")
	}
}

func TestEstablishedPathDoesNotAllocate(t *testing.T) {
	for _, nat := range []bool{false, true} {
		r := newRig(t, func(p *Policy) {
			p.NAT = NAT{Enabled: nat, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
		})
		r.handshake(cli, srv)
		pkt := tcp(t, cli, srv, "PA", 1003, 5001, "data")
		buf := make([]byte, len(pkt))
		allocs := testing.AllocsPerRun(1000, func() {
			copy(buf, pkt)
			r.e.Process(buf, Outbound, r.now, r.res)
		})
		if r.res.Verdict != Forward || allocs != 0 {
			t.Fatalf("nat=%v: verdict %s, %.1f allocs per packet", nat, r.res.Verdict, allocs)
		}
	}
}

func TestTableFullEvictsLRU(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.Capacity = 2; p.OnFull = OnFull(conntrack.EvictLRU) })
	a, b, c := ap(client4, 1), ap(client4, 2), ap(client4, 3)
	r.send(tcp(t, a, srv, "S", 1, 0, ""), Outbound, Forward, ReasonNew)
	r.advance(time.Millisecond)
	r.send(tcp(t, b, srv, "S", 1, 0, ""), Outbound, Forward, ReasonNew)
	r.advance(time.Millisecond)
	// A retransmitted SYN does not refresh (as in Linux), so it does not make a recent.
	r.send(tcp(t, a, srv, "S", 1, 0, ""), Outbound, Forward, ReasonTracked)
	// The server's SYN-ACK moves a to SYN_RECV: a is now the most recently active.
	r.send(tcp(t, srv, a, "SA", 100, 2, ""), Inbound, Forward, ReasonTracked)
	r.advance(time.Millisecond)
	r.send(tcp(t, c, srv, "S", 1, 0, ""), Outbound, Forward, ReasonNew) // evicts b
	r.send(tcp(t, srv, b, "SA", 100, 2, ""), Inbound, Drop, ReasonOrphan)
	r.send(tcp(t, a, srv, "A", 2, 101, ""), Outbound, Forward, ReasonTracked)
}

func BenchmarkEngineEstablished(b *testing.B) {
	for _, nat := range []bool{false, true} {
		name := "plain"
		if nat {
			name = "nat"
		}
		b.Run(name, func(b *testing.B) {
			r := newRig(b, func(p *Policy) {
				p.NAT = NAT{Enabled: nat, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
			})
			r.handshake(cli, srv)
			pkt := tcp(b, cli, srv, "PA", 1003, 5001, "data")
			buf := make([]byte, len(pkt))
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				copy(buf, pkt)
				r.e.Process(buf, Outbound, r.now, r.res)
			}
		})
	}
}

func TestVerdictEventsDoNotAllocate(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.VerdictEvents = true })
	sub := r.e.Subscribe(1 << 14)
	defer sub.Close()
	r.handshake(cli, srv)
	pkt := tcp(t, cli, srv, "PA", 1003, 5001, "data")
	buf := make([]byte, len(pkt))
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, pkt)
		r.e.Process(buf, Outbound, r.now, r.res)
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocs per packet with verdict events on", allocs)
	}
	var last Event
	for len(sub.C) > 0 {
		last = <-sub.C
	}
	if last.Type != conntrack.EventVerdict || last.Dir != Outbound || last.Cause != ReasonTracked || last.Keepalive || last.Verdict != Forward {
		t.Fatalf("last event %+v", last)
	}
}

// A segment Linux would not pick up (FIN|ACK: tcp_new finds it invalid) must not be
// forwarded once its connection is gone, translated or not.
func TestPickupRefusesWhatConntrackRefuses(t *testing.T) {
	for _, nat := range []bool{false, true} {
		r := newRig(t, func(p *Policy) {
			p.Orphan = OrphanPickup
			p.NAT = NAT{Enabled: nat, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
		})
		r.handshake(cli, srv)
		r.advance(6 * time.Second)
		r.send(tcp(t, cli, srv, "FA", 1003, 5001, ""), Outbound, Drop, ReasonInvalid) // invalid: drop; Linux calls it invalid
		r.send(tcp(t, cli, srv, "A", 1003, 5001, ""), Outbound, Forward, ReasonPickup)
	}
}

// An echo request arriving through an endpoint-independent mapping opens a flow
// whose reply (the inside host's echo reply) finds it.
func TestNATInboundEchoThroughMapping(t *testing.T) {
	r := newRig(t, func(p *Policy) {
		p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}, Filtering: EndpointIndependent}
	})
	res := r.send(ping4(t, client4, server4, false, 7, 1), Outbound, Forward, ReasonNew)
	id := decode(t, res.Packet).icmp4.Id
	other := netip.MustParseAddr("198.19.0.3")
	res = r.send(ping4(t, other, out4, false, id, 9), Inbound, Forward, ReasonNew)
	if d := decode(t, res.Packet); d.dst != client4 || d.icmp4.Id != 7 {
		t.Fatalf("inbound echo reached %s id %d", d.dst, d.icmp4.Id)
	}
	res = r.send(ping4(t, client4, other, true, 7, 9), Outbound, Forward, ReasonTracked)
	if d := decode(t, res.Packet); d.src != out4 || d.icmp4.Id != id {
		t.Fatalf("echo reply left as %s id %d", d.src, d.icmp4.Id)
	}
}

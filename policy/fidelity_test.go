package policy

// Issue 15 (and the TCP flag rule of issue 18.2): the engine behaves as Linux's
// nf_conntrack where the linux-conntrack profile says it does. One test per point,
// on the virtual clock, through Process only; each failed on the code before the
// change (see the report of the fidelity branch). The differential test against the
// kernel itself is fidelity/differential_test.go.

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/internal/pkttest"
)

// seg is a TCP segment with the window, TTL (hop limit) and, if wscale >= 0, a
// window scale option (with MSS, SACK permitted and timestamps, as Linux sends a SYN).
func seg(t testing.TB, src, dst netip.AddrPort, flags string, seq, ack uint32, win uint16, wscale int, ttl uint8, payload string) []byte {
	t.Helper()
	var ip gopacket.NetworkLayer
	if src.Addr().Is4() {
		ip = &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	} else {
		ip = &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolTCP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	}
	tc := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, Window: win,
		SYN: strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), FIN: strings.Contains(flags, "F"),
		RST: strings.Contains(flags, "R"), PSH: strings.Contains(flags, "P")}
	if wscale >= 0 {
		tc.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
			{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{byte(wscale)}},
		}
	}
	tc.SetNetworkLayerForChecksum(ip)
	return pkttest.Serialize(t, ip.(gopacket.SerializableLayer), tc, gopacket.Payload(payload))
}

// entries lists the engine's connections of proto.
func (r *rig) entries(proto uint8) []conntrack.EntryInfo {
	return r.e.List(r.now, func(e *conntrack.EntryInfo) bool { return e.Proto == proto })
}

func linuxRig(t *testing.T, sets ...string) *rig {
	t.Helper()
	return newRig(t, func(p *Policy) {
		*p = ProfileFidelity(t, "linux-conntrack", sets...)
	})
}

// ProfileFidelity is a profile's policy with key=value settings applied.
func ProfileFidelity(t *testing.T, name string, sets ...string) Policy {
	t.Helper()
	p, err := ProfilePolicy(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range sets {
		k, v, _ := strings.Cut(kv, "=")
		if err := p.Set(k, v); err != nil {
			t.Fatalf("set %s: %v", kv, err)
		}
	}
	return p
}

// Point 1: a UDP request answered once keeps the unreplied timeout (30 s); only a flow
// still active more than 2 s after its creation becomes a stream (120 s), as
// nf_conntrack_udp_packet decides. "UDP dies behind Linux NAT" after 30 s of silence.
func TestFidelityUDPStreamAfterTwoSeconds(t *testing.T) {
	dns := ap(server4, 5300) // not 53: gopacket would read the payload as DNS
	q := ap(client4, 5353)
	t.Run("request and answer", func(t *testing.T) {
		r := linuxRig(t, "orphan=drop")
		r.send(udp(t, q, dns, "query"), Outbound, Forward, ReasonNew)
		r.advance(100 * time.Millisecond)
		r.send(udp(t, dns, q, "answer"), Inbound, Forward, ReasonTracked)
		if l := r.entries(conntrack.ProtoUDP); len(l) != 1 || l[0].Assured || !l[0].Replied || l[0].Timeout != 30*time.Second {
			t.Fatalf("after one answer: %+v", l)
		}
		r.advance(31 * time.Second) // past the unreplied timeout, well within the stream one
		r.send(udp(t, dns, q, "late push"), Inbound, Drop, ReasonOrphan)
	})
	t.Run("an answer after 2 s is still the first reply", func(t *testing.T) {
		r := linuxRig(t, "orphan=drop")
		r.send(udp(t, q, dns, "query"), Outbound, Forward, ReasonNew)
		r.advance(5 * time.Second)
		r.send(udp(t, dns, q, "slow answer"), Inbound, Forward, ReasonTracked)
		if l := r.entries(conntrack.ProtoUDP); len(l) != 1 || l[0].Assured {
			t.Fatalf("assured by its first reply: %+v", l)
		}
	})
	t.Run("a stream", func(t *testing.T) {
		r := linuxRig(t, "orphan=drop")
		r.send(udp(t, q, dns, "query"), Outbound, Forward, ReasonNew)
		r.advance(100 * time.Millisecond)
		r.send(udp(t, dns, q, "answer"), Inbound, Forward, ReasonTracked)
		r.advance(2 * time.Second) // 2.1 s after creation
		r.send(udp(t, q, dns, "more"), Outbound, Forward, ReasonTracked)
		if l := r.entries(conntrack.ProtoUDP); len(l) != 1 || !l[0].Assured || l[0].Timeout != 120*time.Second {
			t.Fatalf("stream: %+v", l)
		}
		r.advance(100 * time.Second)
		r.send(udp(t, dns, q, "push"), Inbound, Forward, ReasonTracked)
	})
}

// Point 2: an RST that is the only answer to a SYN, or to a picked-up segment,
// deletes the entry at once (nf_conntrack_tcp_packet, "If only reply is a RST"): it
// is not listed and does not count against max_conns_per_source.
func TestFidelityRSTAsOnlyReplyDeletes(t *testing.T) {
	t.Run("closed port", func(t *testing.T) {
		r := linuxRig(t, "max_conns_per_source=1")
		r.send(seg(t, cli, srv, "S", 1000, 0, 64240, 7, 64, ""), Outbound, Forward, ReasonNew)
		r.send(seg(t, srv, cli, "RA", 0, 1001, 0, -1, 64, ""), Inbound, Forward, ReasonTracked)
		if l := r.entries(conntrack.ProtoTCP); len(l) != 0 {
			t.Fatalf("still listed: %+v", l)
		}
		// The limit of one connection is free again.
		r.send(seg(t, ap(client4, 40001), srv, "S", 2000, 0, 64240, 7, 64, ""), Outbound, Forward, ReasonNew)
	})
	t.Run("picked-up segment", func(t *testing.T) {
		r := linuxRig(t)
		r.send(tcp(t, cli, srv, "PA", 1000, 5000, "data"), Outbound, Forward, ReasonPickup)
		r.send(tcp(t, srv, cli, "R", 5000, 0, ""), Inbound, Forward, ReasonTracked)
		if l := r.entries(conntrack.ProtoTCP); len(l) != 0 {
			t.Fatalf("still listed: %+v", l)
		}
	})
}

// Point 3: an RST inside the window but not at the receiver's rcv.nxt keeps the state
// (the receiver answers it with a challenge ACK, RFC 5961 3.2); the exact one closes.
// The window is the scaled one (window scale from the SYNs' options).
func TestFidelityRSTInWindow(t *testing.T) {
	open := func(t *testing.T, wscale int, win uint16) *rig {
		r := linuxRig(t)
		r.send(seg(t, cli, srv, "S", 1000, 0, 64240, wscale, 64, ""), Outbound, Forward, ReasonNew)
		r.send(seg(t, srv, cli, "SA", 5000, 1001, 65160, wscale, 64, ""), Inbound, Forward, ReasonTracked)
		r.send(seg(t, cli, srv, "A", 1001, 5001, win, -1, 64, ""), Outbound, Forward, ReasonTracked)
		r.send(seg(t, srv, cli, "A", 5001, 1001, win, -1, 64, ""), Inbound, Forward, ReasonTracked)
		return r
	}
	state := func(r *rig) conntrack.TCPState {
		l := r.entries(conntrack.ProtoTCP)
		if len(l) != 1 {
			r.t.Fatalf("%d entries", len(l))
		}
		return l[0].State
	}
	t.Run("inexact keeps ESTABLISHED", func(t *testing.T) {
		r := open(t, 7, 502)
		r.send(seg(t, cli, srv, "R", 1001+3000, 0, 0, -1, 64, ""), Outbound, Forward, ReasonTracked)
		if s := state(r); s != conntrack.TCPEstablished {
			t.Fatalf("state %v after an inexact RST", s)
		}
		r.send(seg(t, srv, cli, "A", 5001, 1001, 502, -1, 64, ""), Inbound, Forward, ReasonTracked) // challenge ACK
		r.send(seg(t, cli, srv, "R", 1001, 0, 0, -1, 64, ""), Outbound, Forward, ReasonTracked)
		if s := state(r); s != conntrack.TCPClose {
			t.Fatalf("state %v after the exact RST", s)
		}
	})
	t.Run("scaled window", func(t *testing.T) {
		// Window field 502 << 7 = 64256 bytes: an RST 60000 bytes in is inside;
		// unscaled (502 bytes) it would be far out of window.
		r := open(t, 7, 502)
		r.send(seg(t, srv, cli, "R", 5001+60000, 0, 0, -1, 64, ""), Inbound, Forward, ReasonTracked)
		if s := state(r); s != conntrack.TCPEstablished {
			t.Fatalf("state %v", s)
		}
	})
}

// Point 4: data that goes unacknowledged caps the timeout at unacknowledged (300 s),
// tcp_max_retrans repeats of a segment at max_retrans, and a picked-up entry that
// no one answered at unacknowledged: a dead server's connection leaves the table in
// minutes, not in the 5 days of ESTABLISHED.
func TestFidelityUnacknowledgedAndRetrans(t *testing.T) {
	t.Run("unacknowledged data", func(t *testing.T) {
		r := linuxRig(t, "orphan=drop")
		r.handshake(cli, srv)
		data := tcp(t, cli, srv, "PA", 1003, 5001, "to a dead server")
		r.send(data, Outbound, Forward, ReasonTracked)
		r.advance(299 * time.Second)
		r.send(tcp(t, srv, cli, "A", 5001, 1003, ""), Inbound, Forward, ReasonTracked) // not an ack of the data
		r.advance(300 * time.Second)
		r.send(data, Outbound, Drop, ReasonOrphan) // the retransmission finds no entry
	})
	t.Run("retransmissions", func(t *testing.T) {
		r := linuxRig(t, "orphan=drop", "timeouts.tcp.max_retrans=100s", "timeouts.tcp.unacknowledged=200s")
		r.handshake(cli, srv)
		data := tcp(t, cli, srv, "PA", 1003, 5001, "again")
		for i := range 4 { // the segment and three repeats
			r.send(data, Outbound, Forward, ReasonTracked)
			want := 200 * time.Second
			if i >= 3 {
				want = 100 * time.Second
			}
			if l := r.entries(conntrack.ProtoTCP); l[0].Timeout != want {
				t.Fatalf("after %d repeats: timeout %v, want %v", i, l[0].Timeout, want)
			}
			r.advance(time.Second)
		}
		r.advance(100 * time.Second)
		r.send(data, Outbound, Drop, ReasonOrphan)
	})
	t.Run("picked up, never answered", func(t *testing.T) {
		r := linuxRig(t)
		r.send(tcp(t, cli, srv, "A", 1000, 5000, ""), Outbound, Forward, ReasonPickup)
		if l := r.entries(conntrack.ProtoTCP); len(l) != 1 || l[0].Timeout != 300*time.Second {
			t.Fatalf("picked up: %+v", l)
		}
		r.advance(301 * time.Second)
		if l := r.entries(conntrack.ProtoTCP); len(l) != 0 {
			t.Fatalf("still listed after 301 s: %+v", l)
		}
	})
}

// Point 5: one invalid rule for live flows and flows with no entry. accept (Linux
// without an INVALID rule): a FIN after the idle expiry passes untracked and reaches
// the server; drop (ct state invalid drop): an out-of-window RST never arrives.
func TestFidelityInvalidRule(t *testing.T) {
	t.Run("accept: FIN after expiry passes untracked", func(t *testing.T) {
		r := linuxRig(t, "timeouts.tcp.established=5s")
		r.handshake(cli, srv)
		r.advance(6 * time.Second)
		r.send(tcp(t, cli, srv, "FA", 1003, 5001, ""), Outbound, Forward, ReasonInvalid)
		if l := r.entries(conntrack.ProtoTCP); len(l) != 0 {
			t.Fatalf("the FIN opened %+v", l)
		}
	})
	t.Run("accept: out-of-window RST of a live flow passes", func(t *testing.T) {
		r := linuxRig(t)
		r.handshake(cli, srv)
		r.send(tcp(t, cli, srv, "R", 900, 0, ""), Outbound, Forward, ReasonInvalid)
	})
	t.Run("drop: the same RST is dropped", func(t *testing.T) {
		r := linuxRig(t, "invalid=drop", "timeouts.tcp.established=5s")
		r.handshake(cli, srv)
		r.send(tcp(t, cli, srv, "R", 900, 0, ""), Outbound, Drop, ReasonInvalid)
		r.advance(6 * time.Second)
		r.send(tcp(t, cli, srv, "FA", 1003, 5001, ""), Outbound, Drop, ReasonInvalid)
	})
	t.Run("accept under NAT: untranslated out, dropped in", func(t *testing.T) {
		// Linux's NAT skips a packet without a conntrack: it leaks with the inside
		// address; one toward the NAT address is for the router itself.
		r := newRig(t, func(p *Policy) {
			p.Invalid = InvalidAccept
			p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
		})
		seen := r.handshake(cli, srv)
		res := r.send(tcp(t, cli, srv, "R", 900, 0, ""), Outbound, Forward, ReasonInvalid)
		if d := decode(t, res.Packet); d.src != client4 || res.Translated {
			t.Errorf("an invalid packet left from %v, translated %v", d.src, res.Translated)
		}
		r.send(tcp(t, srv, seen, "R", 4000, 0, ""), Inbound, Drop, ReasonInvalid)
	})
	// Issue 18.2: flag combinations Linux finds invalid never open an entry.
	t.Run("SYN+FIN opens nothing", func(t *testing.T) {
		for _, inv := range []string{"drop", "accept"} {
			r := newRig(t, func(p *Policy) { p.Set("invalid", inv) })
			want := Drop
			if inv == "accept" {
				want = Forward
			}
			r.send(tcp(t, cli, srv, "SF", 1000, 0, ""), Outbound, want, ReasonInvalid)
			r.send(tcp(t, cli, srv, "SR", 1000, 0, ""), Outbound, want, ReasonInvalid)
			r.send(tcp(t, cli, srv, "", 1000, 0, ""), Outbound, want, ReasonInvalid)
			if l := r.entries(conntrack.ProtoTCP); len(l) != 0 {
				t.Fatalf("invalid: %s: %+v", inv, l)
			}
		}
	})
}

// Point 7: the gateway is a router hop: a forwarded packet leaves with its TTL (hop
// limit) one lower, its checksums right; one that arrives with 1 is answered with
// ICMP time exceeded from the gateway's address on that side and opens nothing; a
// live connection's still counts as seen, as in Linux, where ip_forward drops it
// after conntrack.
func TestFidelityTTL(t *testing.T) {
	t.Run("decremented", func(t *testing.T) {
		r := newRig(t, nil)
		res := r.send(seg(t, cli, srv, "S", 1000, 0, 64240, 7, 64, ""), Outbound, Forward, ReasonNew)
		if ttl := res.Packet[8]; ttl != 63 || res.Translated {
			t.Fatalf("TTL %d after the hop (want 63), translated %v (want false: no NAT)", ttl, res.Translated)
		}
		c6, s6 := ap(client6, 40000), ap(server6, 80)
		res = r.send(seg(t, c6, s6, "S", 1000, 0, 64240, 7, 64, ""), Outbound, Forward, ReasonNew)
		if hl := res.Packet[7]; hl != 63 {
			t.Fatalf("hop limit %d after the hop, want 63", hl)
		}
	})
	t.Run("time exceeded", func(t *testing.T) {
		for _, f := range []struct {
			c, s, from netip.AddrPort
			dir        Dir
		}{
			{cli, srv, ap(gw4, 0), Outbound},
			{ap(client6, 40000), ap(server6, 80), ap(gw6, 0), Outbound},
			{srv, cli, ap(out4, 0), Inbound},
		} {
			r := newRig(t, nil)
			res := r.send(seg(t, f.c, f.s, "S", 1000, 0, 64240, 7, 1, ""), f.dir, Drop, ReasonTTLExceeded)
			if len(res.Inject) != 1 || res.Inject[0].To != f.dir.From() {
				t.Fatalf("%v: injected %+v", f.c, res.Inject)
			}
			d := decode(t, res.Inject[0].Packet)
			ok := d.src == f.from.Addr() && d.dst == f.c.Addr()
			if d.icmp4 != nil {
				ok = ok && d.icmp4.TypeCode == layers.CreateICMPv4TypeCode(11, 0)
			} else {
				ok = ok && d.icmp6 != nil && d.icmp6.TypeCode == layers.CreateICMPv6TypeCode(3, 0)
			}
			if !ok {
				t.Errorf("%v: time exceeded from %v to %v, %+v %+v", f.c, d.src, d.dst, d.icmp4, d.icmp6)
			}
			if l := r.entries(conntrack.ProtoTCP); len(l) != 0 {
				t.Errorf("a SYN that died opened %+v", l)
			}
		}
	})
	t.Run("a live connection's packet still counts", func(t *testing.T) {
		r := newRig(t, nil)
		r.handshake(cli, srv)
		r.advance(4 * time.Second) // rig: ESTABLISHED 5 s
		r.send(seg(t, cli, srv, "PA", 1003, 5001, 65000, -1, 1, "x"), Outbound, Drop, ReasonTTLExceeded)
		r.advance(4 * time.Second)
		r.send(tcp(t, srv, cli, "A", 5001, 1004, ""), Inbound, Forward, ReasonTracked)
	})
	t.Run("NAT still says translated", func(t *testing.T) {
		r := newRig(t, func(p *Policy) {
			p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
		})
		res := r.send(seg(t, cli, srv, "S", 1000, 0, 64240, 7, 64, ""), Outbound, Forward, ReasonNew)
		if ttl := res.Packet[8]; ttl != 63 || !res.Translated {
			t.Fatalf("TTL %d, translated %v", ttl, res.Translated)
		}
	})
	t.Run("off", func(t *testing.T) {
		r := newRig(t, func(p *Policy) { p.Set("decrement_ttl", "false") })
		res := r.send(seg(t, cli, srv, "S", 1000, 0, 64240, 7, 1, ""), Outbound, Forward, ReasonNew)
		if ttl := res.Packet[8]; ttl != 1 {
			t.Fatalf("TTL %d with decrement_ttl off", ttl)
		}
	})
}

// TestTimeExceededSource: the time exceeded comes from the gateway's own address on
// the side the packet came from, as the engine's Networks place its Gateway
// addresses (and NAT's outside address); knowing none there, the engine drops the
// packet unanswered, still as ttl-exceeded.
func TestTimeExceededSource(t *testing.T) {
	inner, outer := ap(netip.MustParseAddr("10.1.2.3"), 40000), ap(netip.MustParseAddr("203.0.113.5"), 80)
	hop := func(t *testing.T, r *rig, c, s netip.AddrPort, dir Dir) (netip.Addr, bool) {
		t.Helper()
		res := r.send(seg(t, c, s, "S", 1000, 0, 64240, 7, 1, ""), dir, Drop, ReasonTTLExceeded)
		if len(res.Inject) == 0 {
			return netip.Addr{}, false
		}
		if len(res.Inject) != 1 || res.Inject[0].To != dir.From() {
			t.Fatalf("injected %+v, want one packet back to %v", res.Inject, dir.From())
		}
		d := decode(t, res.Inject[0].Packet)
		if d.icmp4 == nil || d.icmp4.TypeCode != layers.CreateICMPv4TypeCode(11, 0) || d.dst != c.Addr() {
			t.Fatalf("injected %+v to %v, want time exceeded to %v", d.icmp4, d.dst, c.Addr())
		}
		return d.src, true
	}
	t.Run("per side", func(t *testing.T) {
		r := newRig(t, nil)
		// Listed outside first: each side takes the first address in its networks.
		gwIn, gwOut := netip.MustParseAddr("10.0.0.254"), netip.MustParseAddr("192.0.2.1")
		if err := r.e.SetNetworks(Networks{Inside: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Outside: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
			Gateway: []netip.Addr{gwOut, gwIn, netip.MustParseAddr("10.0.0.253")}}); err != nil {
			t.Fatal(err)
		}
		if from, ok := hop(t, r, inner, outer, Outbound); from != gwIn {
			t.Errorf("outbound: time exceeded from %v (sent %v), want %v", from, ok, gwIn)
		}
		if from, ok := hop(t, r, outer, inner, Inbound); from != gwOut {
			t.Errorf("inbound: time exceeded from %v (sent %v), want %v", from, ok, gwOut)
		}
	})
	t.Run("NAT's outside address", func(t *testing.T) {
		nat := netip.MustParseAddr("192.0.2.7")
		r := newRig(t, func(p *Policy) {
			p.NAT = NAT{Enabled: true, Outside: []netip.Addr{nat}, Ports: PortRange{20000, 20100}}
		})
		if err := r.e.SetNetworks(Networks{Inside: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Outside: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}); err != nil {
			t.Fatal(err)
		}
		if from, ok := hop(t, r, outer, ap(nat, 20000), Inbound); from != nat {
			t.Errorf("inbound: time exceeded from %v (sent %v), want the NAT address %v", from, ok, nat)
		}
		if from, ok := hop(t, r, inner, outer, Outbound); ok {
			t.Errorf("outbound: time exceeded from %v, but the gateway has no inside address", from)
		}
	})
	t.Run("no networks", func(t *testing.T) {
		r := newRig(t, nil)
		if err := r.e.SetNetworks(Networks{}); err != nil {
			t.Fatal(err)
		}
		if from, ok := hop(t, r, cli, srv, Outbound); ok {
			t.Errorf("time exceeded from %v with no address known", from)
		}
	})
}

package policy

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/internal/pkttest"
	"github.com/idlegate/idlegate/packet"
)

var (
	addr   = netip.MustParseAddr
	prefix = netip.MustParsePrefix
)

// badHeaderChecksum is pkt with its IPv4 header checksum off by one.
func badHeaderChecksum(pkt []byte) []byte {
	pkt[11] ^= 1
	return pkt
}

// routeCase is a packet a router in the lab's place would not forward, and why.
type routeCase struct {
	name string
	pkt  func(t testing.TB) []byte
	dir  Dir
	why  Reason
	// ofNetworks: a martian only because of the networks (a subnet's broadcast, the
	// gateway's own address), not by itself.
	ofNetworks bool
}

// syn is a TCP SYN from src to dst (port 40000 to 80).
func syn(src, dst netip.Addr) func(testing.TB) []byte {
	return func(t testing.TB) []byte { return tcp(t, ap(src, 40000), ap(dst, 80), "S", 1000, 0, "") }
}

// routeCases are the packets of issue 18 section 2 that crossed before, in the lab's
// networks, from each side.
var routeCases = []routeCase{
	// From the client side.
	{"source outside the client network", syn(addr("10.9.9.9"), server4), Outbound, ReasonSpoofed, false},
	{"IPv6 source outside the client network", syn(addr("2001:db8::1"), server6), Outbound, ReasonSpoofed, false},
	{"the server's address as source", syn(server4, addr("198.19.0.3")), Outbound, ReasonSpoofed, false},
	{"the server's IPv6 address as source", syn(server6, addr("fd00:19::3")), Outbound, ReasonSpoofed, false},
	{"source 0.0.0.0", syn(addr("0.0.0.0"), server4), Outbound, ReasonMartian, false},
	{"source in 0.0.0.0/8", syn(addr("0.1.2.3"), server4), Outbound, ReasonMartian, false},
	{"source 255.255.255.255", syn(addr("255.255.255.255"), server4), Outbound, ReasonMartian, false},
	{"source the client subnet's broadcast", syn(addr("198.18.0.255"), server4), Outbound, ReasonMartian, true},
	{"source the server subnet's broadcast", syn(addr("198.19.0.255"), server4), Outbound, ReasonMartian, true},
	{"source the gateway's own address", syn(out4, server4), Outbound, ReasonMartian, true},
	{"IPv6 source the gateway's own address", syn(out6, server6), Outbound, ReasonMartian, true},
	{"IPv6 source ::", syn(addr("::"), server6), Outbound, ReasonMartian, false},
	{"IPv6 IPv4-mapped destination", syn(client6, addr("::ffff:198.19.0.2")), Outbound, ReasonMartian, false},
	{"destination 255.255.255.255", syn(client4, addr("255.255.255.255")), Outbound, ReasonMartian, false},
	{"destination the server subnet's broadcast", syn(client4, addr("198.19.0.255")), Outbound, ReasonMartian, true},
	{"destination the client subnet's broadcast", syn(client4, addr("198.18.0.255")), Outbound, ReasonMartian, true},
	{"destination 0.0.0.0", syn(client4, addr("0.0.0.0")), Outbound, ReasonMartian, false},
	{"destination in 0.0.0.0/8", syn(client4, addr("0.0.0.7")), Outbound, ReasonMartian, false},
	{"IPv6 destination ::", syn(client6, addr("::")), Outbound, ReasonMartian, false},
	{"destination outside the lab", syn(client4, addr("203.0.113.7")), Outbound, ReasonNoRoute, false},
	{"IPv6 destination outside the lab", syn(client6, addr("2001:db8::7")), Outbound, ReasonNoRoute, false},
	{"the client's own address as destination", syn(client4, client4), Outbound, ReasonNoRoute, false},
	{"the client's own IPv6 address as destination", syn(client6, client6), Outbound, ReasonNoRoute, false},
	{"another client-side host as destination", syn(client4, addr("198.18.0.3")), Outbound, ReasonNoRoute, false},
	{"the NAT address with NAT off", syn(client4, out4), Outbound, ReasonNoRoute, false},
	{"the IPv6 NAT address with NAT off", syn(client6, out6), Outbound, ReasonNoRoute, false},
	{"bad IPv4 header checksum", func(t testing.TB) []byte {
		return badHeaderChecksum(tcp(t, cli, srv, "S", 1000, 0, ""))
	}, Outbound, ReasonBadChecksum, false},
	{"UDP with a bad IPv4 header checksum", func(t testing.TB) []byte {
		return badHeaderChecksum(udp(t, ap(client4, 5000), ap(server4, 53), "q"))
	}, Outbound, ReasonBadChecksum, false},
	// From the server side.
	{"inbound source outside the server network", syn(addr("10.9.9.9"), client4), Inbound, ReasonSpoofed, false},
	{"inbound the client's address as source", syn(client4, addr("198.18.0.3")), Inbound, ReasonSpoofed, false},
	{"inbound source the gateway's own address", syn(out4, client4), Inbound, ReasonMartian, true},
	{"inbound source the server subnet's broadcast", syn(addr("198.19.0.255"), client4), Inbound, ReasonMartian, true},
	{"inbound destination 255.255.255.255", syn(server4, addr("255.255.255.255")), Inbound, ReasonMartian, false},
	{"inbound destination outside the lab", syn(server4, addr("203.0.113.7")), Inbound, ReasonNoRoute, false},
	{"inbound the server's own address as destination", syn(server4, server4), Inbound, ReasonNoRoute, false},
	{"inbound to the NAT address with NAT off", syn(server4, out4), Inbound, ReasonNoRoute, false},
	{"inbound bad IPv4 header checksum", func(t testing.TB) []byte {
		return badHeaderChecksum(tcp(t, srv, cli, "SA", 5000, 1001, ""))
	}, Inbound, ReasonBadChecksum, false},
}

// TestRouterDrops: every packet a router in the lab's place would not forward is
// dropped with its own reason, opens no connection, is counted and reported in its
// VERDICT event.
func TestRouterDrops(t *testing.T) {
	for _, tc := range routeCases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(p *Policy) { p.VerdictEvents = true; p.Orphan = OrphanReset })
			sub := r.e.Subscribe(16)
			defer sub.Close()
			res := r.send(tc.pkt(t), tc.dir, Drop, tc.why)
			if len(res.Inject) != 0 || res.Conn.Status != conntrack.Miss || r.e.Len() != 0 {
				t.Errorf("%d injected, table status %v, %d entries; want none", len(res.Inject), res.Conn.Status, r.e.Len())
			}
			if n := r.e.Stats().Reasons[tc.why]; n != 1 {
				t.Errorf("Stats.Reasons[%s] = %d, want 1", tc.why, n)
			}
			evs := drain(sub)
			if len(evs) != 1 || evs[0].Type != conntrack.EventVerdict || evs[0].Cause != tc.why || evs[0].Verdict != Drop {
				t.Errorf("events %v, want one VERDICT drop %s", evs, tc.why)
			}
		})
	}
}

// TestRouterDropsBeforeTheTable: a packet of a live connection that a router drops
// (a bad header checksum on the way) neither crosses nor refreshes its connection.
func TestRouterDropsBeforeTheTable(t *testing.T) {
	r := newRig(t, nil) // ESTABLISHED times out after 5 s
	r.handshake(cli, srv)
	for range 3 {
		r.advance(2 * time.Second)
		r.send(badHeaderChecksum(tcp(t, cli, srv, "PA", 1003, 5001, "x")), Outbound, Drop, ReasonBadChecksum)
	}
	r.send(tcp(t, cli, srv, "PA", 1003, 5001, "x"), Outbound, Drop, ReasonOrphan)
}

// TestRouterNAT: under NAT the outside address is routed inbound (to NAT, which finds
// no mapping for a stranger) and nowhere else.
func TestRouterNAT(t *testing.T) {
	r := newRig(t, func(p *Policy) {
		p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4, out6}, Ports: PortRange{20000, 20100}}
	})
	seen := r.handshake(cli, srv)
	if seen.Addr() != out4 {
		t.Fatalf("the server sees %v, want the NAT address", seen)
	}
	r.send(syn(server4, out4)(t), Inbound, Drop, ReasonNATNoMapping)
	r.send(syn(server6, out6)(t), Inbound, Drop, ReasonNATNoMapping)
	r.send(syn(client4, out4)(t), Outbound, Drop, ReasonNoRoute)
	r.send(syn(out4, server4)(t), Outbound, Drop, ReasonMartian)
	r.send(syn(out4, client4)(t), Inbound, Drop, ReasonMartian)
	r.send(syn(addr("10.9.9.9"), out4)(t), Inbound, Drop, ReasonSpoofed)
}

// TestSourceCheckOff: source_check: false forwards what the reverse path filter
// drops (asymmetric paths); martians and destinations with no route stay dropped.
func TestSourceCheckOff(t *testing.T) {
	for _, tc := range routeCases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(p *Policy) { p.SourceCheck = false })
			if tc.why != ReasonSpoofed {
				r.send(tc.pkt(t), tc.dir, Drop, tc.why)
				return
			}
			r.send(tc.pkt(t), tc.dir, Forward, ReasonNew)
		})
	}
}

// TestNoNetworks: an engine that knows no network (replay without --inside) checks no
// source and no route, only martians and checksums.
func TestNoNetworks(t *testing.T) {
	for _, tc := range routeCases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			if err := r.e.SetNetworks(Networks{}); err != nil {
				t.Fatal(err)
			}
			// The gateway's own addresses and the subnets' broadcasts are facts of
			// the networks, which it does not know now.
			if tc.why == ReasonBadChecksum || tc.why == ReasonMartian && !tc.ofNetworks {
				r.send(tc.pkt(t), tc.dir, Drop, tc.why)
				return
			}
			r.send(tc.pkt(t), tc.dir, Forward, ReasonNew)
		})
	}
}

// TestLongestPrefix: with a default route outside (replay's --inside), the longest
// prefix holding an address decides its side.
func TestLongestPrefix(t *testing.T) {
	r := newRig(t, nil)
	nets := Networks{
		Inside:  []netip.Prefix{prefix("10.0.0.0/8"), prefix("10.1.2.0/24")},
		Outside: []netip.Prefix{prefix("0.0.0.0/0"), prefix("10.1.0.0/16"), prefix("::/0")},
	}
	if err := r.e.SetNetworks(nets); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		src, dst string
		dir      Dir
		want     Verdict
		why      Reason
	}{
		{"10.9.0.1", "203.0.113.7", Outbound, Forward, ReasonNew},
		{"10.1.2.9", "10.1.7.7", Outbound, Forward, ReasonNew},     // /24 inside, /16 outside
		{"10.1.7.7", "203.0.113.7", Outbound, Drop, ReasonSpoofed}, // 10.1.0.0/16 is outside
		{"10.9.0.1", "10.9.0.2", Outbound, Drop, ReasonNoRoute},
		{"203.0.113.7", "10.9.0.3", Inbound, Forward, ReasonNew},
		{"10.9.0.4", "10.9.0.3", Inbound, Drop, ReasonSpoofed},
		{"10.0.0.255", "203.0.113.7", Outbound, Forward, ReasonNew}, // 10.255.255.255 is the /8's broadcast, not this
		{"10.255.255.255", "203.0.113.7", Outbound, Drop, ReasonMartian},
		{"2001:db8::1", "2001:db8::2", Outbound, Drop, ReasonSpoofed}, // IPv6: everything is outside
		{"2001:db8::1", "2001:db8::2", Inbound, Drop, ReasonNoRoute},
	}
	for i, c := range cases {
		r.send(tcp(t, ap(addr(c.src), uint16(30000+i)), ap(addr(c.dst), 80), "S", 1, 0, ""), c.dir, c.want, c.why)
	}
	if got := r.e.Networks(); len(got.Inside) != 2 || len(got.Outside) != 3 {
		t.Errorf("Networks() = %+v", got)
	}
}

// TestRouterFamilyUnknown: a family with no known network is not route-checked.
func TestRouterFamilyUnknown(t *testing.T) {
	r := newRig(t, nil)
	if err := r.e.SetNetworks(Networks{Inside: []netip.Prefix{prefix("10.0.0.0/8")}, Outside: []netip.Prefix{prefix("0.0.0.0/0")}}); err != nil {
		t.Fatal(err)
	}
	r.send(syn(addr("2001:db8::1"), addr("2001:db8::2"))(t), Outbound, Forward, ReasonNew)
	r.send(syn(addr("203.0.113.1"), addr("10.1.1.1"))(t), Outbound, Drop, ReasonSpoofed)
}

// TestLaterFragmentRouted: a later fragment is routed like any packet.
func TestLaterFragmentRouted(t *testing.T) {
	r := newRig(t, nil)
	frag := udp(t, ap(addr("10.9.9.9"), 5000), ap(server4, 53), "0123456789abcdef")
	frag[6], frag[7] = 0x00, 0x02 // offset 16 bytes, no more fragments
	frag[10], frag[11] = 0, 0
	c := ^checksum16(frag[:20])
	frag[10], frag[11] = byte(c>>8), byte(c)
	r.send(frag, Outbound, Drop, ReasonSpoofed)
}

// checksum16 is the ones' complement sum of b, folded, for tests.
func checksum16(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func TestNetworksValidate(t *testing.T) {
	cases := []struct {
		name string
		n    Networks
		want string
	}{
		{"host bits", Networks{Inside: []netip.Prefix{prefix("198.18.0.2/24")}}, "write 198.18.0.0/24"},
		{"both sides", Networks{Inside: []netip.Prefix{prefix("10.0.0.0/8")}, Outside: []netip.Prefix{prefix("10.0.0.0/8")}}, "on both sides"},
		{"mapped", Networks{Outside: []netip.Prefix{prefix("::ffff:10.0.0.0/104")}}, "write it as IPv4, 10.0.0.0/8"},
		{"invalid", Networks{Outside: []netip.Prefix{{}}}, "not a prefix"},
		{"gateway", Networks{Gateway: []netip.Addr{{}}}, "gateway address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			err := r.e.SetNetworks(tc.n)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SetNetworks = %v, want an error saying %q", err, tc.want)
			}
			if got := r.e.Networks(); len(got.Inside) != len(labNets.Inside) {
				t.Errorf("a refused SetNetworks changed the networks to %+v", got)
			}
		})
	}
}

// TestNotForwardedMatchesNetip: the integer checks of not-forwarded agree with
// netip's definitions of multicast, link-local unicast and loopback.
func TestNotForwardedMatchesNetip(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 2))
	special4 := []string{"224.0.0.1", "239.255.255.255", "240.0.0.1", "169.254.3.4", "169.253.0.1", "127.0.0.1", "126.255.255.255", "128.0.0.1", "223.255.255.255"}
	special6 := []string{"ff02::1", "ff00::", "fe80::1", "febf::1", "fec0::1", "fe7f::1", "::1", "::2", "fd00:18::2"}
	var addrs []netip.Addr
	for _, a := range append(special4, special6...) {
		addrs = append(addrs, addr(a))
	}
	for range 2000 {
		var b4 [4]byte
		var b16 [16]byte
		binary.BigEndian.PutUint32(b4[:], rng.Uint32())
		binary.BigEndian.PutUint64(b16[:8], rng.Uint64())
		binary.BigEndian.PutUint64(b16[8:], rng.Uint64())
		b16[0] = []byte{0xff, 0xfe, 0xfd, 0x20, 0x00}[rng.IntN(5)]
		addrs = append(addrs, netip.AddrFrom4(b4), netip.AddrFrom16(b16))
	}
	netipSays := func(a netip.Addr) bool { return a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsLoopback() }
	var r routes
	for _, a := range addrs {
		if a.Is4In6() {
			continue // netip unmaps these; they are martians here
		}
		other := server4
		if a.Is6() {
			other = server6
		}
		for _, p := range [][2]netip.Addr{{a, other}, {other, a}} {
			info := packet.Info{Version: 4, Src: p[0], Dst: p[1]}
			if a.Is6() {
				info.Version = 6
			}
			why, _ := r.check(&info, Outbound, false)
			if got, want := why == ReasonNotForwarded, netipSays(a); got != want {
				t.Errorf("%v -> %v: not-forwarded %v, netip says %v", p[0], p[1], got, want)
			}
		}
	}
}

// icmpUnreachable4 is an ICMP port unreachable from src to dst quoting quoted.
func icmpUnreachable4(t testing.TB, src, dst netip.Addr, quoted []byte) []byte {
	return pkttest.Serialize(t, pkttest.IPLayer(src, dst, layers.IPProtocolICMPv4).(gopacket.SerializableLayer),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(quoted))
}

// TestNATICMPErrorAboutNoPacketSent: under NAT an ICMP error crosses only when it
// quotes a packet the gateway sent toward the error's sender, translated back; one
// quoting a packet of the other way, as it arrived, is not related to anything and
// would otherwise cross still addressed to the NAT address (the storm found these).
func TestNATICMPErrorAboutNoPacketSent(t *testing.T) {
	r := newRig(t, func(p *Policy) {
		p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
	})
	c := ap(client4, 5000)
	res := r.send(udp(t, c, ap(server4, 7000), "a"), Outbound, Forward, ReasonNew)
	mapped := ap(out4, decode(t, res.Packet).sport)
	// The server's datagram to the mapping, as the server sent it.
	r.send(icmpUnreachable4(t, server4, out4, udp(t, ap(server4, 7000), mapped, "b")), Inbound, Drop, ReasonOrphan)
	// The server's datagram as the gateway delivered it to the client: an error about
	// it belongs on the inside, not coming from outside.
	r.send(icmpUnreachable4(t, server4, out4, udp(t, ap(server4, 7000), c, "b")), Inbound, Drop, ReasonNoRoute)
	// The real thing still crosses, to the client.
	res = r.send(icmpUnreachable4(t, server4, out4, udp(t, mapped, ap(server4, 7000), "a")), Inbound, Forward, ReasonRelated)
	if d := decode(t, res.Packet); d.dst != client4 {
		t.Fatalf("the error went to %v, want the client", d.dst)
	}
}

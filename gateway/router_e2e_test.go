package gateway_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// routerCase is a packet a router in the gateway's place does not forward, written
// raw onto gw0 of the side it comes from.
type routerCase struct {
	name string
	from policy.Side
	pkt  []byte
	why  policy.Reason
}

// routerCases are issue 18 section 2's list, each with a marker payload
// ("idlegate-router-N") by which it is recognised should it cross.
func routerCases() []routerCase {
	a := netip.MustParseAddr
	var cases []routerCase
	add := func(name string, from policy.Side, src, dst netip.Addr, why policy.Reason) {
		marker := []byte(fmt.Sprintf("idlegate-router-%d", len(cases)))
		pkt := ipPacket(src, dst, 17, udpSeg(netip.AddrPortFrom(src, 40000), netip.AddrPortFrom(dst, 9), marker))
		cases = append(cases, routerCase{name, from, pkt, why})
	}
	in, out := policy.Inside, policy.Outside
	add("source outside the client network", in, a("10.9.9.9"), lab.ServerAddr4, policy.ReasonSpoofed)
	add("IPv6 source outside the client network", in, a("2001:db8::1"), lab.ServerAddr6, policy.ReasonSpoofed)
	add("the server's own address as source", in, lab.ServerAddr4, lab.ServerAddr4, policy.ReasonSpoofed)
	add("the server's own IPv6 address as source", in, lab.ServerAddr6, lab.ServerAddr6, policy.ReasonSpoofed)
	add("source 0.0.0.0", in, a("0.0.0.0"), lab.ServerAddr4, policy.ReasonMartian)
	add("source 255.255.255.255", in, a("255.255.255.255"), lab.ServerAddr4, policy.ReasonMartian)
	add("source the client subnet's broadcast", in, a("198.18.0.255"), lab.ServerAddr4, policy.ReasonMartian)
	add("limited broadcast destination", in, lab.ClientAddr4, a("255.255.255.255"), policy.ReasonMartian)
	add("the server subnet's broadcast as destination", in, lab.ClientAddr4, a("198.19.0.255"), policy.ReasonMartian)
	add("destination outside the lab", in, lab.ClientAddr4, a("203.0.113.7"), policy.ReasonNoRoute)
	add("IPv6 destination outside the lab", in, lab.ClientAddr6, a("2001:db8::7"), policy.ReasonNoRoute)
	add("the client's own address as destination", in, lab.ClientAddr4, lab.ClientAddr4, policy.ReasonNoRoute)
	add("the client's own IPv6 address as destination", in, lab.ClientAddr6, lab.ClientAddr6, policy.ReasonNoRoute)
	add("the NAT address with NAT off", in, lab.ClientAddr4, lab.NATAddr4, policy.ReasonNoRoute)
	add("the IPv6 NAT address with NAT off", in, lab.ClientAddr6, lab.NATAddr6, policy.ReasonNoRoute)
	add("inbound source outside the server network", out, a("10.9.9.9"), lab.ClientAddr4, policy.ReasonSpoofed)
	add("inbound the client's address as source", out, lab.ClientAddr4, lab.ClientAddr4, policy.ReasonSpoofed)
	add("inbound the client subnet's broadcast as destination", out, lab.ServerAddr4, a("198.18.0.255"), policy.ReasonMartian)
	add("inbound the server's own address as destination", out, lab.ServerAddr4, lab.ServerAddr4, policy.ReasonNoRoute)

	bad := func(name string, from policy.Side, src, dst netip.Addr) {
		add(name, from, src, dst, policy.ReasonBadChecksum)
		cases[len(cases)-1].pkt[11] ^= 1
	}
	bad("bad IPv4 header checksum", in, lab.ClientAddr4, lab.ServerAddr4)
	bad("inbound bad IPv4 header checksum", out, lab.ServerAddr4, lab.ClientAddr4)

	syn := func(name string, src, dst netip.Addr, why policy.Reason) {
		marker := []byte(fmt.Sprintf("idlegate-router-%d", len(cases)))
		seg := tcpSeg(netip.AddrPortFrom(src, 40001), netip.AddrPortFrom(dst, 80), 0x02, 1000, 0, marker)
		cases = append(cases, routerCase{name, in, ipPacket(src, dst, 6, seg), why})
	}
	syn("TCP SYN from outside the client network", a("10.9.9.9"), lab.ServerAddr4, policy.ReasonSpoofed)
	syn("TCP SYN to outside the lab", lab.ClientAddr4, a("203.0.113.7"), policy.ReasonNoRoute)
	return cases
}

// TestE2ERouterDrops writes every packet of issue 18 section 2 raw onto gw0 (from the
// client side, and a few from the server side) and checks that none reaches the other
// namespace, each is counted under its reason, none opened a connection, and a normal
// connection still works.
func TestE2ERouterDrops(t *testing.T) { onBothDevices(t, testE2ERouterDrops) }

func testE2ERouterDrops(t *testing.T) {
	pol := policy.Default()
	pol.Orphan = policy.OrphanReset // drops before the table: no RST either
	run := startLab(t, pol)
	nsOf := [2]string{run.Lab.Client.Namespace, run.Lab.Server.Namespace}
	sniffers := [2]*sniffer{sniff(t, nsOf[policy.Inside]), sniff(t, nsOf[policy.Outside])}
	links := [2]*rawLink{openRawLink(t, nsOf[policy.Inside]), openRawLink(t, nsOf[policy.Outside])}

	cases := routerCases()
	want := map[policy.Reason]uint64{}
	byMarker := map[string]string{}
	for _, c := range cases {
		byMarker[markerOf(c.pkt)] = c.name
		if err := links[c.from].send(c.pkt); err != nil {
			t.Fatalf("%s: write onto gw0: %v", c.name, err)
		}
		want[c.why]++
	}
	// Every packet is counted under its reason, no more, no less.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := run.Engine.Stats()
		done := true
		for why, n := range want {
			done = done && st.Reasons[why] >= n
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A normal connection still works, both families.
	for _, fam := range []family{ipv4, ipv6} {
		srv := listenEcho(t, run, fam.server)
		c := mustDial(t, run, srv.addr, net.Dialer{})
		mustRoundTrip(t, c, "still routing "+fam.name)
	}
	time.Sleep(100 * time.Millisecond) // let a packet that did cross arrive

	st := run.Engine.Stats()
	for why, n := range want {
		if st.Reasons[why] != n {
			t.Errorf("reason %s: %d packets, want %d (reasons %v)", why, st.Reasons[why], n, st.ReasonCounts())
		}
	}
	if st.Table.Created != 2 {
		t.Errorf("%d connections created, want the 2 normal ones", st.Table.Created)
	}
	if st.Injected != 0 {
		t.Errorf("%d packets injected, want none", st.Injected)
	}
	for _, to := range []policy.Side{policy.Inside, policy.Outside} {
		got, lost := sniffers[to].Stop()
		if lost != 0 {
			t.Errorf("the %s sniffer lost %d packets: the check below is incomplete", to, lost)
		}
		for _, p := range got {
			if m := markerOf(p); m != "" {
				t.Errorf("%s crossed to the %s: %x", byMarker[m], to, p)
			}
			if why := routable(p, to, false); why != "" {
				t.Errorf("a packet that %s crossed to the %s: %x", why, to, p)
			}
		}
	}
}

// markerOf is the "idlegate-router-N" marker a packet carries, or "".
func markerOf(p []byte) string {
	i := bytes.Index(p, []byte("idlegate-router-"))
	if i < 0 {
		return ""
	}
	j := i + len("idlegate-router-")
	for j < len(p) && p[j] >= '0' && p[j] <= '9' {
		j++
	}
	return string(p[i:j])
}

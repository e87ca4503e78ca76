package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/policy"
)

const s = time.Second

// idleGaps is three TCP connections with known silences:
//
//	A (:40001 -> :5432) query at 1 s, then silent until 401 s (400 s idle)
//	B (:40002 -> :80)   a request every 100 s until 500 s
//	C (:40003 -> :6379) query at 3 s, then at 253 s (250 s idle)
//
// It returns the capture and the record numbers of A's and C's late queries.
func idleGaps(t testing.TB) (c *testCapture, nA, nC int) {
	c = newCapture(t)
	a := c.open(0, ap(client4, 40001), ap(server4, 5432))
	b := c.open(500*time.Millisecond, ap(client4, 40002), ap(server4, 80))
	cc := c.open(2*s, ap(client4, 40003), ap(server4, 6379))
	a.send(1*s, true, "SELECT 1")
	cc.send(3*s, true, "PING")
	b.send(100*s, true, "GET /")
	b.send(200*s, true, "GET /")
	nC = cc.send(253*s, true, "PING")
	b.send(300*s, true, "GET /")
	b.send(400*s, true, "GET /")
	nA = a.send(401*s, true, "SELECT 2")
	b.send(500*s, true, "GET /")
	return c, nA, nC
}

// near reports whether a float of seconds is d, to the microsecond.
func near(sec float64, d time.Duration) bool { return math.Abs(sec-d.Seconds()) < 1e-6 }

type want struct {
	outcome Outcome
	packet  int
	idle    time.Duration // 0: not checked
	timeout time.Duration
	at      time.Duration // for reset-at-expiry
	reason  string
}

func checkFlow(t *testing.T, r *Report, prof string, flow int, w want) {
	t.Helper()
	var pr *ProfileResult
	for i := range r.Profiles {
		if r.Profiles[i].Name == prof {
			pr = &r.Profiles[i]
		}
	}
	if pr == nil {
		t.Fatalf("no profile %s in the report", prof)
	}
	got := pr.Flows[flow-1]
	desc := fmt.Sprintf("%s flow %d (%s): %+v", prof, flow, r.Flows[flow-1], got)
	if got.Outcome != w.outcome || got.Packet != w.packet {
		t.Errorf("%s; want %s at packet %d", desc, w.outcome, w.packet)
	}
	if w.idle > 0 && !near(got.Idle, w.idle) {
		t.Errorf("%s; want idle %v", desc, w.idle)
	}
	if !near(got.Timeout, w.timeout) {
		t.Errorf("%s; want timeout %v", desc, w.timeout)
	}
	if w.at > 0 && !near(got.Time, w.at) {
		t.Errorf("%s; want time %v", desc, w.at)
	}
	if w.reason != "" && got.Reason != w.reason {
		t.Errorf("%s; want reason %s", desc, w.reason)
	}
}

func TestReplayIdleGaps(t *testing.T) {
	c, nA, nC := idleGaps(t)
	names := []string{"linux-conntrack", "aws-nat-gateway", "aws-nlb", "azure-lb", "azure-lb-tcp-reset", "gcp-cloud-nat", "aws-alb"}
	var profs []Profile
	for _, n := range names {
		profs = append(profs, profile(t, n))
	}
	r := run(t, c.pcap(layers.LinkTypeRaw), Options{Profiles: profs})
	if len(r.Flows) != 3 || r.Direction != DirInferred {
		t.Fatalf("flows %v direction %s", r.Flows, r.Direction)
	}
	if r.Flows[0].Inside != "198.18.0.2:40001" || r.Flows[0].InsideBy != "SYN sender" {
		t.Fatalf("flow 1 %+v", r.Flows[0])
	}
	ok := want{outcome: Survived}
	idleA := 401*s - (1*s + time.Millisecond) // since the server's ACK of the first query
	idleC := 253*s - (3*s + time.Millisecond)
	for _, n := range []string{"linux-conntrack", "gcp-cloud-nat"} {
		for f := 1; f <= 3; f++ {
			checkFlow(t, r, n, f, ok)
		}
	}
	checkFlow(t, r, "aws-nat-gateway", 1, want{outcome: Reset, packet: nA, idle: idleA, timeout: 350 * s, reason: "orphan"})
	checkFlow(t, r, "aws-nat-gateway", 2, ok)
	checkFlow(t, r, "aws-nat-gateway", 3, ok)
	checkFlow(t, r, "aws-nlb", 1, want{outcome: Reset, packet: nA, idle: idleA, timeout: 350 * s, reason: "orphan"})
	checkFlow(t, r, "azure-lb", 1, want{outcome: Dropped, packet: nA, idle: idleA, timeout: 240 * s, reason: "orphan"})
	checkFlow(t, r, "azure-lb", 2, ok)
	checkFlow(t, r, "azure-lb", 3, want{outcome: Dropped, packet: nC, idle: idleC, timeout: 240 * s, reason: "orphan"})
	// Azure with TCP reset: RSTs at the deadline, last packet + 240 s.
	checkFlow(t, r, "azure-lb-tcp-reset", 1, want{outcome: ResetAtExpiry, timeout: 240 * s, at: 241*s + time.Millisecond})
	checkFlow(t, r, "azure-lb-tcp-reset", 3, want{outcome: ResetAtExpiry, timeout: 240 * s, at: 243*s + time.Millisecond})
	checkFlow(t, r, "azure-lb-tcp-reset", 2, ok)
	// The ALB counts data only; B sends every 100 s, more than its 60 s.
	checkFlow(t, r, "aws-alb", 2, want{outcome: ResetAtExpiry, timeout: 60 * s, at: 60*s + 500*time.Millisecond + 2*time.Millisecond})

	for _, frag := range []string{
		"this capture survives linux-conntrack and gcp-cloud-nat, breaks on ",
		fmt.Sprintf("aws-nat-gateway at packet %d", nA),
		fmt.Sprintf("azure-lb at packet %d (2 flows)", nC),
		"azure-lb-tcp-reset at +241.001s (RST at expiry) (2 flows)",
	} {
		if !strings.Contains(r.Summary, frag) {
			t.Errorf("summary %q lacks %q", r.Summary, frag)
		}
	}
	var text bytes.Buffer
	r.Text(&text, false)
	for _, frag := range []string{"FLOW", "aws-nat-gateway", fmt.Sprintf("reset @%d", nA), "reset-at-expiry +241.001s", r.Summary} {
		if !strings.Contains(text.String(), frag) {
			t.Errorf("text lacks %q:\n%s", frag, text.String())
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
}

func TestReplaySingleProfileText(t *testing.T) {
	c, nA, _ := idleGaps(t)
	r := run(t, c.pcap(layers.LinkTypeRaw), Options{Profiles: []Profile{profile(t, "aws-nat-gateway")}})
	var text bytes.Buffer
	r.Text(&text, false)
	out := text.String()
	for _, frag := range []string{"profile aws-nat-gateway (tcp established 350s): 2 flows survived, 1 broke",
		fmt.Sprintf("reset     %d", nA), "399.999s", "350s", "orphan outbound",
		fmt.Sprintf("this capture breaks on aws-nat-gateway at packet %d", nA)} {
		if !strings.Contains(out, frag) {
			t.Errorf("text lacks %q:\n%s", frag, out)
		}
	}
}

// TestReplayTimeScale: a lab run at scale 0.01 (a 350 s box idles out after 3.5 s).
func TestReplayTimeScale(t *testing.T) {
	c := newCapture(t)
	a := c.open(0, ap(client4, 40001), ap(server4, 7000))
	a.send(1*s, true, "x")
	n := a.send(6*s, true, "y") // 5 s idle > 3.5 s
	r := run(t, c.pcap(layers.LinkTypeRaw), Options{Profiles: []Profile{profile(t, "aws-nat-gateway")}, Scale: 0.01})
	checkFlow(t, r, "aws-nat-gateway", 1, want{outcome: Reset, packet: n, timeout: 3500 * time.Millisecond})
	if fr := r.Profiles[0].Flows[0]; !near(fr.RealTimeout, 350*s) {
		t.Errorf("real timeout %v", fr.RealTimeout)
	}
	var text bytes.Buffer
	r.Text(&text, false)
	if !strings.Contains(text.String(), "3.5s (real 350s)") {
		t.Errorf("text must show the scaled and the real timeout:\n%s", text.String())
	}
}

// TestReplayEviction: a home router with a small table evicts the idle connection
// when a burst of DNS lookups comes; Linux with early drop keeps it and drops the
// lookups that do not fit.
func TestReplayEviction(t *testing.T) {
	c := newCapture(t)
	x := c.open(0, ap(client4, 40001), ap(server4, 22))
	x.send(1*s, true, "ls")
	var dns []int
	for i := range 10 {
		at := time.Duration(2+i) * s
		q := ap(client4, uint16(50000+i))
		dns = append(dns, c.add(at, udpPkt(t, q, ap(server4, 53), "query")))
		c.add(at+time.Millisecond, udpPkt(t, ap(server4, 53), q, "answer"))
	}
	nX := x.send(20*s, true, "ls")
	b := c.pcap(layers.LinkTypeEthernet)
	r := run(t, b, Options{Profiles: []Profile{
		profile(t, "home-router", "capacity", "8"),
		profile(t, "linux-conntrack", "capacity", "8"),
	}})
	checkFlow(t, r, "home-router", 1, want{outcome: Evicted, packet: nX, idle: 19*s - time.Millisecond, reason: "orphan"})
	for f := 2; f <= 11; f++ {
		checkFlow(t, r, "home-router", f, want{outcome: Survived})
	}
	if note := r.Profiles[0].Flows[1].Note; !strings.Contains(note, "forgotten after its last packet (evicted") {
		t.Errorf("DNS flow 1 note %q", note)
	}
	// Linux assures a UDP flow only when it is still active 2 s after its creation
	// (nf_conntrack_udp_packet): a lookup answered at once never is, so early drop
	// always finds one to make room, and every lookup gets through; the oldest are
	// forgotten after their last packet. X, assured, is never chosen.
	checkFlow(t, r, "linux-conntrack", 1, want{outcome: Survived})
	for f := 2; f <= 11; f++ {
		checkFlow(t, r, "linux-conntrack", f, want{outcome: Survived})
	}
	if note := r.Profiles[1].Flows[1].Note; !strings.Contains(note, "forgotten after its last packet (evicted") {
		t.Errorf("linux-conntrack DNS flow 1 note %q", note)
	}
	_ = dns
}

// TestReplayEarlyDropFull: when every entry is assured (UDP flows still active 2 s
// after their creation, with replies), early drop finds no victim and the new flow
// is dropped, table-full, as Linux logs "table full, dropping packet".
func TestReplayEarlyDropFull(t *testing.T) {
	c := newCapture(t)
	var first []int
	for i := range 10 {
		at := time.Duration(3*i) * s
		q := ap(client4, uint16(50000+i))
		first = append(first, c.add(at, udpPkt(t, q, ap(server4, 53), "query")))
		c.add(at+time.Millisecond, udpPkt(t, ap(server4, 53), q, "answer"))
		c.add(at+2500*time.Millisecond, udpPkt(t, q, ap(server4, 53), "again")) // a stream now: assured
	}
	r := run(t, c.pcap(layers.LinkTypeEthernet), Options{Profiles: []Profile{profile(t, "linux-conntrack", "capacity", "8")}})
	for f := 1; f <= 8; f++ {
		checkFlow(t, r, "linux-conntrack", f, want{outcome: Survived})
	}
	for f := 9; f <= 10; f++ {
		checkFlow(t, r, "linux-conntrack", f, want{outcome: Dropped, packet: first[f-1], reason: "table-full"})
	}
}

// TestReplayNATRemap: under NAT with pickup, the expired flow's next outbound packet
// leaves by a new outside port; the server would answer it with a RST.
func TestReplayNATRemap(t *testing.T) {
	c := newCapture(t)
	a := c.open(0, ap(client4, 40001), ap(server4, 7000))
	a.send(1*s, true, "hello")
	n := a.send(30*s, true, "again")
	b := c.pcap(layers.LinkTypeRaw)
	remap := profile(t, "aws-nat-gateway", "orphan", "pickup", "timeouts.tcp.established", "10s")
	remap.Name = "nat-pickup"
	r := run(t, b, Options{Profiles: []Profile{remap, profile(t, "linux-conntrack")}})
	checkFlow(t, r, "nat-pickup", 1, want{outcome: NATRemap, packet: n, idle: 29*s - time.Millisecond, timeout: 10 * s, reason: "pickup"})
	if note := r.Profiles[0].Flows[0].Note; !strings.Contains(note, "198.19.0.1:") || !strings.Contains(note, "instead of") {
		t.Errorf("note %q", note)
	}
	// Without NAT the same pickup is harmless.
	checkFlow(t, r, "linux-conntrack", 1, want{outcome: Survived})

	// A new connection on the same tuple after the old one expired is entitled to a
	// new port: not a remap.
	c = newCapture(t)
	a = c.open(0, ap(client4, 40001), ap(server4, 7000))
	a.send(1*s, true, "hello")
	a = c.open(60*s, ap(client4, 40001), ap(server4, 7000))
	a.send(61*s, true, "hello")
	r = run(t, c.pcap(layers.LinkTypeRaw), Options{Profiles: []Profile{remap}})
	checkFlow(t, r, "nat-pickup", 1, want{outcome: Survived})
}

// TestReplayNATInboundAfterExpiry: the server pushes on a flow the NAT forgot; its
// packet is addressed to the old mapping, which no longer exists.
func TestReplayNATInboundAfterExpiry(t *testing.T) {
	c := newCapture(t)
	a := c.open(0, ap(client4, 40001), ap(server4, 7000))
	a.send(1*s, true, "subscribe")
	n := a.send(400*s, false, "event")
	r := run(t, c.pcap(layers.LinkTypeRaw), Options{Profiles: []Profile{profile(t, "aws-nat-gateway"), profile(t, "gcp-cloud-nat")}})
	checkFlow(t, r, "aws-nat-gateway", 1, want{outcome: Reset, packet: n, timeout: 350 * s, reason: "nat-no-mapping"})
	if d := r.Profiles[0].Flows[0].Dir; d != "inbound" {
		t.Errorf("direction %s", d)
	}
	checkFlow(t, r, "gcp-cloud-nat", 1, want{outcome: Survived})
}

func TestReplayLinkTypes(t *testing.T) {
	c, nA, _ := idleGaps(t)
	want := run(t, c.pcap(layers.LinkTypeRaw), Options{Profiles: []Profile{profile(t, "aws-nat-gateway")}})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"ethernet-vlan", c.pcap(layers.LinkTypeEthernet)},
		{"sll", c.pcap(layers.LinkTypeLinuxSLL)},
		{"sll2", c.pcap(layers.LinkType(linkSLL2))},
		{"raw12", c.pcap(layers.LinkType(linkRaw12))},
		{"ipv4-228", c.pcap(layers.LinkType(linkIPv4))},
		{"pcapng-ethernet", c.pcapng()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.b, Options{Profiles: []Profile{profile(t, "aws-nat-gateway")}})
			if r.Summary != want.Summary || r.Packets != want.Packets || r.NotIP != 0 {
				t.Fatalf("summary %q (%d packets), want %q (%d)", r.Summary, r.Packets, want.Summary, want.Packets)
			}
			checkFlow(t, r, "aws-nat-gateway", 1, want2(Reset, nA))
		})
	}
	// IPv6 in LINKTYPE_IPV6 (229).
	c6 := newCapture(t)
	a := c6.open(0, ap(client6, 40001), ap(server6, 443))
	a.send(1*s, true, "x")
	n := a.send(500*s, true, "y")
	r := run(t, c6.pcap(layers.LinkType(linkIPv6)), Options{Profiles: []Profile{profile(t, "aws-nat-gateway")}})
	checkFlow(t, r, "aws-nat-gateway", 1, want2(Reset, n))
}

func want2(o Outcome, pkt int) want { return want{outcome: o, packet: pkt, timeout: 350 * s} }

// TestReplayMidStream: a capture that starts in the middle of a connection does not
// report its first packet as an orphan.
func TestReplayMidStream(t *testing.T) {
	c := newCapture(t)
	cn := &conn{c: c, cli: ap(client4, 45000), srv: ap(server4, 5432), cseq: 77777, sseq: 99999}
	cn.send(0, false, "row") // the server speaks first in the capture
	cn.send(1*s, true, "next")
	n := cn.send(300*s, true, "late")
	r := run(t, c.pcap(layers.LinkTypeRaw), Options{Profiles: []Profile{profile(t, "azure-lb"), profile(t, "aws-nat-gateway")}})
	if f := r.Flows[0]; !f.Synthetic || f.Inside != "198.18.0.2:45000" || !strings.Contains(f.InsideBy, "higher port") {
		t.Fatalf("flow %+v", f)
	}
	checkFlow(t, r, "azure-lb", 1, want{outcome: Dropped, packet: n, idle: 299*s - time.Millisecond, timeout: 240 * s})
	checkFlow(t, r, "aws-nat-gateway", 1, want{outcome: Survived})
}

func TestReplayDirection(t *testing.T) {
	// A UDP flow first seen from the server: the first sender counts as inside unless
	// --inside says otherwise.
	c := newCapture(t)
	c.add(0, udpPkt(t, ap(server4, 4500), ap(client4, 4500), "hello"))
	c.add(time.Millisecond, udpPkt(t, ap(client4, 4500), ap(server4, 4500), "hi"))
	n := c.add(200*s, udpPkt(t, ap(server4, 4500), ap(client4, 4500), "late"))
	b := c.pcap(layers.LinkTypeRaw)
	r := run(t, b, Options{Profiles: []Profile{profile(t, "aws-nlb")}})
	if r.Flows[0].Inside != "198.19.0.2:4500" || r.Direction != DirInferred {
		t.Fatalf("inferred %+v", r.Flows[0])
	}
	inside := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}
	r = run(t, b, Options{Profiles: []Profile{profile(t, "aws-nlb")}, Inside: inside})
	if r.Flows[0].Inside != "198.18.0.2:4500" || r.Direction != DirInside || !r.Flows[0].Synthetic {
		t.Fatalf("with --inside %+v %s", r.Flows[0], r.Direction)
	}
	// 200 s of silence on a 120 s UDP flow: the server's datagram meets ICMP.
	checkFlow(t, r, "aws-nlb", 1, want{outcome: Rejected, packet: n, idle: 200*s - time.Millisecond, timeout: 120 * s})
}

// TestReplayIdlegateCapture reads a pcapng written like the gateway's: interface 0
// inside, 1 outside, arrival comments, and translated/injected records to skip.
func TestReplayIdlegateCapture(t *testing.T) {
	var buf bytes.Buffer
	intf := func(name string) pcapgo.NgInterface {
		return pcapgo.NgInterface{Name: name, LinkType: layers.LinkTypeRaw, TimestampResolution: 9}
	}
	w, err := pcapgo.NewNgWriterInterface(&buf, intf("inside"), pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "idlegate"}})
	if err != nil {
		t.Fatal(err)
	}
	w.AddInterface(intf("outside"))
	put := func(at time.Duration, iface int, b []byte, comment string) {
		ci := captureInfo(t0.Add(at), b, iface)
		if err := w.WritePacketWithOptions(ci, b, pcapgo.NgPacketOptions{Comments: []string{comment}}); err != nil {
			t.Fatal(err)
		}
	}
	srv, cli := ap(server4, 5000), ap(client4, 6000)
	// The server (outside) opens a UDP flow toward the client: by interface it is
	// inbound, whatever the ports say.
	put(0, 1, udpPkt(t, srv, cli, "a"), "forward new inbound")
	put(0, 0, udpPkt(t, srv, cli, "a"), "translated")
	put(time.Millisecond, 0, udpPkt(t, cli, srv, "b"), "forward tracked outbound")
	put(time.Millisecond, 1, tcpPkt(t, srv, cli, "R", 1, 0, ""), "injected reset orphan")
	w.Flush()
	var traces []PacketTrace
	r := run(t, buf.Bytes(), Options{Profiles: []Profile{profile(t, "linux-conntrack")}, Trace: func(p PacketTrace) { traces = append(traces, p) }})
	if r.Direction != DirInterfaces || r.Skipped != 2 || r.Packets != 2 || r.Records != 4 {
		t.Fatalf("report %+v", r)
	}
	if r.Flows[0].Inside != cli.String() {
		t.Fatalf("inside %s", r.Flows[0].Inside)
	}
	if len(traces) != 2 || traces[0].Number != 1 || traces[0].Dir != policy.Inbound || traces[1].Number != 3 || traces[1].Dir != policy.Outbound {
		t.Fatalf("traces %+v", traces)
	}
}

// TestReplayIdlegateKeepalive: a capture written through package capture, with
// keepalive probes named, replays its arrivals (keepalive or not) and skips the
// records the gateway did not read.
func TestReplayIdlegateKeepalive(t *testing.T) {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, "idlegate")
	if err != nil {
		t.Fatal(err)
	}
	cli, srv := ap(client4, 40000), ap(server4, 80)
	arrive := func(dir policy.Dir, ka bool) capture.Comment {
		return capture.Comment{Kind: capture.Arrival, Verdict: policy.Forward, Reason: policy.ReasonTracked, Dir: dir, Keepalive: ka}
	}
	for i, r := range []struct {
		side policy.Side
		pkt  []byte
		c    capture.Comment
	}{
		{policy.Inside, tcpPkt(t, cli, srv, "S", 999, 0, ""), arrive(policy.Outbound, false)},
		{policy.Outside, tcpPkt(t, srv, cli, "SA", 4999, 1000, ""), arrive(policy.Inbound, false)},
		{policy.Inside, tcpPkt(t, cli, srv, "A", 1000, 5000, ""), arrive(policy.Outbound, false)},
		{policy.Inside, tcpPkt(t, cli, srv, "A", 999, 5000, ""), arrive(policy.Outbound, true)},
		{policy.Outside, tcpPkt(t, srv, cli, "A", 5000, 1000, ""), arrive(policy.Inbound, false)},
		{policy.Outside, tcpPkt(t, cli, srv, "A", 999, 5000, ""), capture.Comment{Kind: capture.Translated}},
		{policy.Inside, tcpPkt(t, srv, cli, "R", 5000, 0, ""), capture.Comment{Kind: capture.ExpiryReset, Verdict: policy.Reset}},
	} {
		if err := w.Write(r.side, t0.Add(time.Duration(i)*time.Second), r.pkt, r.c); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := run(t, buf.Bytes(), Options{Profiles: []Profile{profile(t, "linux-conntrack")}})
	if r.Direction != DirInterfaces || r.Packets != 5 || r.Skipped != 2 || r.Records != 7 {
		t.Fatalf("report: direction %s, %d packets, %d skipped, %d records; want interfaces, 5, 2, 7", r.Direction, r.Packets, r.Skipped, r.Records)
	}
}

// TestReplayWrite keeps what crossed plus the injected RSTs.
func TestReplayWrite(t *testing.T) {
	c, nA, _ := idleGaps(t)
	for _, ng := range []bool{false, true} {
		var out bytes.Buffer
		r := run(t, c.pcap(layers.LinkTypeRaw), Options{Profiles: []Profile{profile(t, "aws-nat-gateway")}, Write: &out, WritePcapng: ng})
		fwd := r.Profiles[0].Verdicts["forward"]
		// A's late query and the server's ACK of it are orphans: both are answered with a RST.
		if fwd != len(c.pkts)-2 {
			t.Fatalf("forwarded %d of %d", fwd, len(c.pkts))
		}
		back := run(t, out.Bytes(), Options{Profiles: []Profile{profile(t, "linux-conntrack")}})
		got := back.Packets
		if ng { // read back, injected packets are recognised and skipped
			got += back.Skipped
		}
		if got != fwd+r.Profiles[0].Injected || r.Profiles[0].Injected != 2 {
			t.Fatalf("pcapng %v: wrote %d packets, want %d forwarded + %d injected", ng, got, fwd, r.Profiles[0].Injected)
		}
		if ng && back.Direction != DirInterfaces {
			t.Fatalf("the pcapng written must carry the interfaces: %s", back.Direction)
		}
		_ = nA
	}
	if _, err := Run("x", bytes.NewReader(c.pcap(layers.LinkTypeRaw)), Options{
		Profiles: []Profile{profile(t, "pf"), profile(t, "aws-alb")}, Write: io.Discard}); err == nil {
		t.Fatal("--write with two profiles accepted")
	}
}

func TestReplayErrors(t *testing.T) {
	c, _, _ := idleGaps(t)
	good := c.pcap(layers.LinkTypeRaw)
	opt := Options{Profiles: []Profile{profile(t, "pf")}}
	wifi := newCapture(t)
	wifi.add(0, udpPkt(t, ap(client4, 1), ap(server4, 2), "x"))
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "capture test.pcap is empty"},
		{"text", []byte("hello, this is not a capture\n"), "test.pcap is not a pcap or pcapng capture"},
		{"truncated packet", good[:len(good)-10], "capture test.pcap is truncated: it ends in the middle of record"},
		{"truncated header", good[:30], "capture test.pcap is truncated"},
		{"truncated pcapng", c.pcapng()[:500], "capture test.pcap is truncated"},
		{"link type", wifi.pcap(layers.LinkTypeIEEE802_11), "capture test.pcap has link type 802.11 (105), which replay cannot read; it reads Ethernet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run("test.pcap", bytes.NewReader(tc.b), opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one sentence with %q", err, tc.want)
			}
			var ce *CaptureError
			var le *LinkTypeError
			if !errors.As(err, &ce) && !errors.As(err, &le) {
				t.Fatalf("error %T is neither a CaptureError nor a LinkTypeError", err)
			}
		})
	}
}

// FuzzReplay: no capture makes replay panic.
func FuzzReplay(f *testing.F) {
	c, _, _ := idleGaps(f)
	f.Add(c.pcap(layers.LinkTypeEthernet))
	f.Add(c.pcapng())
	f.Fuzz(func(t *testing.T, b []byte) {
		Run("fuzz", bytes.NewReader(b), Options{Profiles: []Profile{profile(t, "aws-nat-gateway")}})
	})
}

// TestReplayRoutesByInside: with --inside the engines know the networks (everything
// else outside) and drop what a router there would not forward; without it they
// know none and drop only martians and bad header checksums.
func TestReplayRoutesByInside(t *testing.T) {
	c := newCapture(t)
	stranger := ap(netip.MustParseAddr("198.51.100.9"), 4000)
	c.add(0, udpPkt(t, ap(client4, 4500), ap(server4, 4500), "ok"))                            // 1: inside to outside
	c.add(s, udpPkt(t, ap(client4, 4501), stranger, "out"))                                    // 2: outside is everything else
	c.add(2*s, udpPkt(t, ap(client4, 4502), ap(client4, 4503), "lan"))                         // 3: inside to inside
	c.add(3*s, udpPkt(t, ap(client4, 4504), ap(netip.MustParseAddr("198.18.0.255"), 9), "bc")) // 4: the inside's broadcast
	c.add(4*s, udpPkt(t, ap(netip.MustParseAddr("0.0.0.0"), 68), ap(server4, 67), "zero"))     // 5: a martian either way
	b := c.pcap(layers.LinkTypeRaw)
	reasons := func(opt Options) []policy.Reason {
		var got []policy.Reason
		opt.Profiles = []Profile{profile(t, "linux-conntrack")}
		opt.Trace = func(p PacketTrace) { got = append(got, p.Reason) }
		run(t, b, opt)
		return got
	}
	inside := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}
	for _, tc := range []struct {
		name string
		opt  Options
		want []policy.Reason
	}{
		{"with --inside", Options{Inside: inside}, []policy.Reason{policy.ReasonNew, policy.ReasonNew, policy.ReasonNoRoute, policy.ReasonMartian, policy.ReasonMartian}},
		{"without", Options{}, []policy.Reason{policy.ReasonNew, policy.ReasonNew, policy.ReasonNew, policy.ReasonNew, policy.ReasonMartian}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reasons(tc.opt); !slices.Equal(got, tc.want) {
				t.Errorf("reasons %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := Run("test.pcap", bytes.NewReader(b), Options{Profiles: []Profile{profile(t, "linux-conntrack")},
		Inside: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}}); err == nil || !strings.Contains(err.Error(), "198.18.0.0/24") {
		t.Errorf("Run with a host prefix: %v, want an error naming the network", err)
	}
}

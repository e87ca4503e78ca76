package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/idlegate/idlegate/packet"
)

// FuzzEngine feeds arbitrary packets in both directions to engines with NAT on and
// off, in the lab's networks or in none, with source_check on or off. Invariants:
// nothing panics, every packet the engine forwards or injects decodes and carries
// correct checksums, a forwarded packet is one a router in the lab's place forwards
// (routable), and once the table is emptied (deleted and swept, or flushed) no NAT
// mapping or per-source count is left.
func FuzzEngine(f *testing.F) {
	t := &testing.T{}
	seeds := [][]byte{
		tcp(t, cli, srv, "S", 1000, 0, ""),
		tcp(t, srv, cli, "SA", 5000, 1001, ""),
		tcp(t, cli, srv, "PA", 1001, 5001, "hello"),
		tcp(t, ap(client6, 1), ap(server6, 2), "FA", 7, 9, ""),
		udp(t, ap(client4, 5353), ap(server4, 7000), "q"),
		udp(t, ap(server6, 7000), ap(client6, 5353), "a"),
		ping4(t, client4, server4, false, 1, 1),
		ping4(t, server4, out4, true, 1, 1),
		tcp(t, ap(netip.MustParseAddr("10.9.9.9"), 1), srv, "S", 1, 0, ""),
		badHeaderChecksum(tcp(t, cli, srv, "S", 1000, 0, "")),
	}
	for i, s := range seeds {
		f.Add(s, uint8(i%2), uint8(i))
	}
	f.Fuzz(func(t *testing.T, pkt []byte, dir uint8, step uint8) {
		for _, nat := range []bool{false, true} {
			p := Default()
			p.Orphan = Orphan(step % 4)
			p.ResetOnExpire = step&4 != 0
			p.Capacity = 4
			p.MaxConnsPerSource = int(step % 3)
			p.NAT = NAT{Enabled: nat, Outside: []netip.Addr{out4, out6}, Ports: PortRange{20000, 20010}}
			p.SourceCheck = step&32 == 0
			e, err := NewEngine(p)
			if err != nil {
				t.Fatal(err)
			}
			nets := step&16 == 0
			if nets {
				if err := e.SetNetworks(labNets); err != nil {
					t.Fatal(err)
				}
			}
			res := new(Result)
			now := t0
			for i := range 3 {
				buf := append([]byte(nil), pkt...)
				var in packet.Info
				goodIn := packet.Decode(buf, &in) == nil && packet.ChecksumsValid(buf, &in)
				orig := append([]byte(nil), buf...)
				d := Dir((int(dir) + i) % 2)
				e.Process(buf, d, now, res)
				if res.Verdict == Forward {
					checkEmitted(t, res.Packet, goodIn)
					if nets {
						checkRoutable(t, orig, &in, d, nat, p.SourceCheck)
					}
				}
				for _, inj := range res.Inject {
					checkEmitted(t, inj.Packet, true)
				}
				now = now.Add(time.Duration(step) * time.Second)
				for _, inj := range e.Tick(now, nil) {
					checkEmitted(t, inj.Packet, true)
				}
			}
			// Whatever ended how, the engine's bookkeeping went with the entries.
			if step&8 != 0 {
				e.Delete(now, nil)
				e.Tick(now, nil) // what Delete leaves is due now
			} else {
				e.Flush(now)
			}
			if s := e.Stats(); s.NATMaps != 0 || e.Len() != 0 || len(e.perSource) != 0 || len(e.counted) != 0 {
				t.Fatalf("after the last connection: %d NAT mappings, %d entries, %d sources counted", s.NATMaps, e.Len(), len(e.perSource))
			}
		}
	})
}

// checkEmitted verifies an emitted packet decodes and, when wantValid, that its
// checksums hold. A forwarded packet that arrived with a bad checksum legitimately
// keeps it (incremental updates preserve errors, as routers do); one that arrived good
// must leave good, rewritten or not; a packet the engine built must always be good.
func checkEmitted(t *testing.T, pkt []byte, wantValid bool) {
	var info packet.Info
	if err := packet.Decode(pkt, &info); err != nil {
		t.Fatalf("emitted packet does not decode: %v\n%x", err, pkt)
	}
	if wantValid && !packet.ChecksumsValid(pkt, &info) {
		t.Fatalf("emitted packet has a bad checksum: %x", pkt)
	}
}

// checkRoutable fails unless a packet the engine forwarded in direction dir (pkt as
// it arrived, in as Decode saw it) is one a router between the lab's networks
// forwards: IPv4 header checksum right, no martian source or destination, the
// source on the side it came from (with sourceCheck), the destination on the other
// side or, inbound under NAT, the NAT address. Written apart from route.go, with
// netip, so the two can disagree.
func checkRoutable(t *testing.T, pkt []byte, in *packet.Info, dir Dir, nat, sourceCheck bool) {
	t.Helper()
	if in.Version == 4 {
		hl := int(pkt[0]&0x0f) * 4
		if checksum16(pkt[:hl]) != 0xffff {
			t.Fatalf("forwarded an IPv4 header with a bad checksum: %x", pkt)
		}
	}
	sides := [2][]netip.Prefix{labNets.Inside, labNets.Outside}
	on := func(a netip.Addr, s Side) bool {
		for _, p := range sides[s] {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	martian := func(a netip.Addr) bool {
		for _, p := range []string{"0.0.0.0/8", "255.255.255.255/32", "198.18.0.255/32", "198.19.0.255/32", "::/128", "::ffff:0:0/96"} {
			if netip.MustParsePrefix(p).Contains(a) {
				return true
			}
		}
		return false
	}
	own := in.Src == out4 || in.Src == out6
	if martian(in.Src) || martian(in.Dst) || own {
		t.Fatalf("forwarded %s a martian %v -> %v", dir, in.Src, in.Dst)
	}
	if sourceCheck && !on(in.Src, dir.From()) {
		t.Fatalf("forwarded %s a packet from %v, which is not %s", dir, in.Src, dir.From())
	}
	toNAT := in.Dst == out4 || in.Dst == out6
	if toNAT && !(nat && dir == Inbound) || !toNAT && !on(in.Dst, dir.To()) {
		t.Fatalf("forwarded %s a packet to %v, which is not %s", dir, in.Dst, dir.To())
	}
}

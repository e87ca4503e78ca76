package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/idlegate/idlegate/packet"
)

// FuzzEngine feeds arbitrary packets in both directions to engines with NAT on and
// off. Invariants: nothing panics, every packet the engine forwards or injects
// decodes and carries correct checksums, and once the table is emptied (deleted and
// swept, or flushed) no NAT mapping or per-source count is left.
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
			e, err := NewEngine(p)
			if err != nil {
				t.Fatal(err)
			}
			res := new(Result)
			now := t0
			for i := range 3 {
				buf := append([]byte(nil), pkt...)
				var in packet.Info
				goodIn := packet.Decode(buf, &in) == nil && packet.ChecksumsValid(buf, &in)
				e.Process(buf, Dir((int(dir)+i)%2), now, res)
				if res.Verdict == Forward {
					checkEmitted(t, res.Packet, goodIn)
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

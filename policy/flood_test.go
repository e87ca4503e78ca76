package policy

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
)

// BenchmarkSYNFlood is a SYN flood against a 1000-entry table holding 20 assured
// connections, under each on_full policy: one op is one SYN of a new flow from the
// client network. It reports the heap the flood grew (after a collection, live
// bytes) and fails if an assured connection lost its entry under early-drop or
// drop-new. The gateway's own e2e flood (TestReliabilitySYNFlood) asserts the same
// through real namespaces.
func BenchmarkSYNFlood(b *testing.B) {
	const capacity, assured = 1000, 20
	// 65536 distinct flows, built once: by the time one comes again it is long gone.
	syns := make([][]byte, 1<<16)
	for i := range syns {
		src := netip.AddrFrom4([4]byte{198, 18, 0, byte(3 + i%250)})
		syns[i] = tcp(b, ap(src, uint16(1024+i/250)), ap(netip.MustParseAddr("198.19.0.77"), 80), "S", uint32(i), 0, "")
	}
	for _, onFull := range []conntrack.OnFull{conntrack.EarlyDrop, conntrack.DropNew, conntrack.EvictLRU} {
		b.Run(onFull.String(), func(b *testing.B) {
			r := newRig(b, func(p *Policy) { p.Capacity = capacity; p.OnFull = OnFull(onFull) })
			conns := make([]netip.AddrPort, assured)
			for i := range conns {
				conns[i] = ap(client4, uint16(40000+i))
				r.handshake(conns[i], srv)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			buf := make([]byte, 1500)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				pkt := buf[:copy(buf, syns[i%len(syns)])]
				r.e.Process(pkt, Outbound, r.now, r.res)
				i++
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)), "heap-growth-B")
			b.ReportMetric(float64(r.e.Len()), "entries")
			if r.e.Len() > capacity {
				b.Fatalf("%d entries in a table of %d", r.e.Len(), capacity)
			}
			if onFull == conntrack.EvictLRU {
				return // it evicts the least recently active, which the idle assured ones are
			}
			live := map[conntrack.Key]bool{}
			for _, e := range r.e.List(r.now, nil) {
				live[e.Orig] = true
			}
			for _, c := range conns {
				var p packet.Info
				pkt := tcp(b, c, srv, "A", 1003, 5001, "")
				packet.Decode(pkt, &p)
				if k, _ := FlowKey(&p); !live[k] {
					b.Fatalf("%s: the assured connection from %v lost its entry", onFull, c)
				}
			}
		})
	}
}

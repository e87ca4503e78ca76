package conntrack

import (
	"runtime"
	"testing"
	"time"
)

// The 1M-flow benchmarks build their table outside the timer; run them
// with -benchtime=1x (or a small count), for example:
//
//	go test ./conntrack -run='^$' -bench=1M -benchtime=1x -benchmem

const million = 1_000_000

// keyN is a distinct TCP or UDP tuple per n, built without netip.
func keyN(proto uint8, n uint32) Key {
	k := Key{Proto: proto, SrcPort: uint16(1024 + n%50000), DstPort: 443}
	k.Src[10], k.Src[11] = 0xff, 0xff
	k.Src[12], k.Src[13], k.Src[14], k.Src[15] = 10, byte(n>>16), byte(n>>8), byte(n)
	k.Dst[10], k.Dst[11] = 0xff, 0xff
	k.Dst[12], k.Dst[13], k.Dst[14], k.Dst[15] = 198, 19, 0, 2
	return k
}

// natReplyN is the translated reply tuple of flow n: the server answers
// 203.0.113.x:port.
func natReplyN(k Key, n uint32) Key {
	rk := k.Reply()
	rk.Dst[12], rk.Dst[13], rk.Dst[14], rk.Dst[15] = 203, 0, 113, byte(n>>16)
	rk.DstPort = uint16(n)
	return rk
}

// fill creates n flows at t0, plain or NATed, in SYN_SENT, through the
// table itself (no events recorded).
func fill(tb testing.TB, tab *testTable, n int, nat bool) {
	p := &Packet{Len: 60, TCPFlags: syn, Seq: 1, Window: 65535}
	for i := range n {
		p.Key = keyN(ProtoTCP, uint32(i))
		reply := p.Key.Reply()
		if nat {
			reply = natReplyN(p.Key, uint32(i))
		}
		if res := tab.Table.Create(p, t0, reply, false, nil); res.Status != Created {
			tb.Fatalf("flow %d: %v", i, res.Status)
		}
	}
}

func BenchmarkTrackEstablished(b *testing.B) {
	const flows = 100_000
	tab := newTable(b, func(c *Config) { c.Capacity = flows })
	pkts := make([]*Packet, flows)
	for i := range flows {
		f := newFlow(b, tab, keyN(ProtoTCP, uint32(i)))
		f.handshake()
		pkts[i] = f.pkt(o, psh|ack, 100)
	}
	var gone []Destroyed // as the policy engine passes it
	now := t0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%flows == 0 {
			now = now.Add(time.Millisecond)
		}
		if tab.Table.Track(pkts[i%flows], now, &gone).Status != Hit {
			b.Fatal("miss")
		}
	}
}

func BenchmarkCreate(b *testing.B) {
	tab := newTable(b, func(c *Config) { c.Capacity = 1 << 22 })
	p := &Packet{Len: 60, TCPFlags: syn, Seq: 1, Window: 65535}
	var gone []Destroyed
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Key = keyN(ProtoTCP, uint32(i))
		if tab.Table.Create(p, t0, p.Key.Reply(), false, &gone).Status != Created {
			b.Fatal("not created")
		}
	}
}

// BenchmarkSweep1M times one Sweep that expires a million idle flows.
func BenchmarkSweep1M(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tab := newTable(b, func(c *Config) { c.Capacity = 1 << 20 })
		fill(b, tab, million, false)
		tab.Table.Sweep(at(time.Second), million, nil) // file everything as the live gateway would have
		runtime.GC()
		b.StartTimer()
		if n := tab.Table.Sweep(at(time.Hour), 2*million, nil); n != million {
			b.Fatalf("swept %d", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/million, "ns/flow")
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPerFlow1M reports the heap a million flows take, from
// before New to after the last Create, per flow.
func BenchmarkMemoryPerFlow1M(b *testing.B) {
	for _, nat := range []bool{false, true} {
		name := "plain"
		if nat {
			name = "nat"
		}
		b.Run(name, func(b *testing.B) {
			var perFlow float64
			for i := 0; i < b.N; i++ {
				h0 := heapAlloc()
				tab := newTable(b, func(c *Config) { c.Capacity = 1 << 20 })
				fill(b, tab, million, nat)
				h1 := heapAlloc()
				perFlow = float64(h1-h0) / million
				runtime.KeepAlive(tab)
			}
			b.ReportMetric(perFlow, "B/flow")
		})
	}
}

// BenchmarkGCPause1M reports a forced collection's wall time and
// stop-the-world pause with a million flows in the table.
func BenchmarkGCPause1M(b *testing.B) {
	tab := newTable(b, func(c *Config) { c.Capacity = 1 << 20 })
	fill(b, tab, million, false)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	const rounds = 5
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for range rounds {
			runtime.GC()
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	gcs := float64(m1.NumGC - m0.NumGC)
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N*rounds), "ms/gc")
	b.ReportMetric(float64(m1.PauseTotalNs-m0.PauseTotalNs)/1e6/gcs, "stw-ms/gc")
	runtime.KeepAlive(tab)
}

package replay

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/idlegate/idlegate/packet"
)

// benchCapture builds an Ethernet pcap of flows TCP connections (each opened with a
// handshake) followed by data segments round-robin over the flows, every 10 µs, up to
// packets records in all. Built without gopacket layers: a million packets must not
// take the benchmark's time.
func benchCapture(tb testing.TB, flows, packets int) []byte {
	tb.Helper()
	var buf bytes.Buffer
	buf.Grow(packets * 110)
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b23c4d) // nanosecond pcap
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], linkEthernet)
	buf.Write(hdr)
	var seg [128]byte
	payload := []byte("0123456789abcdef0123456789abcdef")
	ts := t0
	n := 0
	write := func(ip []byte, data bool) {
		rec := make([]byte, 16+14, 16+14+len(ip)+len(payload))
		l := 14 + len(ip)
		if data {
			l += len(payload)
		}
		binary.LittleEndian.PutUint32(rec[0:], uint32(ts.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(ts.Nanosecond()))
		binary.LittleEndian.PutUint32(rec[8:], uint32(l))
		binary.LittleEndian.PutUint32(rec[12:], uint32(l))
		binary.BigEndian.PutUint16(rec[16+12:], 0x0800)
		rec = append(rec, ip...)
		if data {
			ipb := rec[30:]
			binary.BigEndian.PutUint16(ipb[2:], uint16(len(ip)+len(payload)))
			rec = append(rec, payload...)
		}
		buf.Write(rec)
		ts = ts.Add(10 * time.Microsecond)
		n++
	}
	type fl struct {
		cli, srv netip.AddrPort
		c, s     uint32
	}
	fs := make([]fl, flows)
	for i := range fs {
		f := &fs[i]
		f.cli = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), uint16(30000+i%30000))
		f.srv = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 0, 2}), 443)
		f.c, f.s = 1000, 5000
		write(buildSeg(seg[:0], f.cli, f.srv, packet.ProtoTCP, packet.TCPSyn, f.c, 0), false)
		write(buildSeg(seg[:0], f.srv, f.cli, packet.ProtoTCP, packet.TCPSyn|packet.TCPAck, f.s, f.c+1), false)
		f.c++
		f.s++
		write(buildSeg(seg[:0], f.cli, f.srv, packet.ProtoTCP, packet.TCPAck, f.c, f.s), false)
	}
	for i := 0; n < packets; i++ {
		f := &fs[i%flows]
		if i/flows%2 == 0 {
			write(buildSeg(seg[:0], f.cli, f.srv, packet.ProtoTCP, packet.TCPAck|packet.TCPPsh, f.c, f.s), true)
			f.c += uint32(len(payload))
		} else {
			write(buildSeg(seg[:0], f.srv, f.cli, packet.ProtoTCP, packet.TCPAck|packet.TCPPsh, f.s, f.c), true)
			f.s += uint32(len(payload))
		}
	}
	return buf.Bytes()
}

// BenchmarkReplay replays a 1000-flow, 1M-packet Ethernet capture through one profile
// (without and with NAT) and through three at once; one op is the whole capture, and
// pkts/s the capture's packets replayed per second. Run it with
//
//	go test ./replay -run='^$' -bench=Replay -benchtime=5x -benchmem
func BenchmarkReplay(b *testing.B) {
	const flows, packets = 1000, 1_000_000
	capt := benchCapture(b, flows, packets)
	for _, names := range [][]string{{"linux-conntrack"}, {"aws-nat-gateway"}, {"linux-conntrack", "aws-nat-gateway", "gcp-cloud-nat"}} {
		name := names[0]
		if len(names) > 1 {
			name = "matrix-of-3"
		}
		b.Run(name, func(b *testing.B) {
			var opt Options
			for _, n := range names {
				opt.Profiles = append(opt.Profiles, profile(b, n))
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(capt)))
			b.ResetTimer()
			for range b.N {
				r, err := Run("bench", bytes.NewReader(capt), opt)
				if err != nil {
					b.Fatal(err)
				}
				if r.Packets != packets || r.Profiles[0].Broken != 0 {
					b.Fatalf("replayed %d packets, %d flows broke", r.Packets, r.Profiles[0].Broken)
				}
			}
			b.ReportMetric(float64(packets)*float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

// TestReplayNoAllocPerPacket: replaying twice as many packets of the same flows costs
// no more allocations.
func TestReplayNoAllocPerPacket(t *testing.T) {
	small, big := benchCapture(t, 50, 10_000), benchCapture(t, 50, 20_000)
	for _, name := range []string{"linux-conntrack", "aws-nat-gateway"} {
		opt := Options{Profiles: []Profile{profile(t, name)}}
		count := func(b []byte) float64 {
			return testing.AllocsPerRun(3, func() {
				if _, err := Run("x", bytes.NewReader(b), opt); err != nil {
					t.Fatal(err)
				}
			})
		}
		a1, a2 := count(small), count(big)
		if a2-a1 > 100 {
			t.Errorf("%s: %v allocations for 10000 packets, %v for 20000: packets allocate", name, a1, a2)
		}
	}
}

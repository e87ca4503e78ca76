package report

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/replay"
)

// benchFlows is how many TCP connections a benchmark capture holds.
const benchFlows = 100

var benchCaptures sync.Map // packets -> []byte

// benchCapture is an idlegate pcapng of about packets records, as the gateway
// records it: benchFlows connections opened with handshakes, then data and ACKs
// round-robin every 10 µs, with a 90 s pause halfway that the 60 s ESTABLISHED
// timeout does not survive (every entry expires; orphan pickup takes the flows up
// again on their next packet). Built with idlegate's packet builders: a million
// packets must not take the benchmark's time.
func benchCapture(b *testing.B, packets int) ([]byte, policy.Policy) {
	b.Helper()
	pol := mustPolicy(b, "timeouts.tcp.established", "60s", "orphan", "pickup")
	if c, ok := benchCaptures.Load(packets); ok {
		return c.([]byte), pol
	}
	g := newGW(b, pol)
	g.buf.Grow(packets * 110)
	type fl struct {
		c, s       netip.AddrPort
		cseq, sseq uint32
	}
	fs := make([]fl, benchFlows)
	var buf [128]byte
	payload := []byte("0123456789abcdef0123456789abcdef")
	seg := func(src, dst netip.AddrPort, seq, ack uint32, flags uint8, data []byte) []byte {
		p, err := packet.BuildTCP(buf[:0], src, dst, seq, ack, flags, 65535, data)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	d := time.Duration(0)
	step := 10 * time.Microsecond
	for i := range fs {
		f := &fs[i]
		f.c = netip.AddrPortFrom(client4, uint16(20000+i))
		f.s = netip.AddrPortFrom(server4, 5432)
		f.cseq, f.sseq = 1000, 9000
		g.send(d, policy.Outbound, seg(f.c, f.s, f.cseq, 0, packet.TCPSyn, nil))
		f.cseq++
		g.send(d+step, policy.Inbound, seg(f.s, f.c, f.sseq, f.cseq, packet.TCPSyn|packet.TCPAck, nil))
		f.sseq++
		g.send(d+2*step, policy.Outbound, seg(f.c, f.s, f.cseq, f.sseq, packet.TCPAck, nil))
		d += 3 * step
	}
	for n := 3 * benchFlows; n < packets; n++ {
		if n == packets/2 {
			d += 90 * time.Second
		}
		f := &fs[n%benchFlows]
		d += step
		if (n/benchFlows)%2 == 0 {
			g.send(d, policy.Outbound, seg(f.c, f.s, f.cseq, f.sseq, packet.TCPPsh|packet.TCPAck, payload))
			f.cseq += uint32(len(payload))
		} else {
			g.send(d, policy.Inbound, seg(f.s, f.c, f.sseq, f.cseq, packet.TCPAck, nil))
		}
	}
	c := bytes.Clone(g.bytes())
	benchCaptures.Store(packets, c)
	return c, pol
}

// counter counts the bytes of the page.
type counter int64

func (c *counter) Write(p []byte) (int, error) {
	*c += counter(len(p))
	return len(p), nil
}

var benchSizes = []struct {
	name    string
	packets int
}{{"10k", 10_000}, {"1M", 1_000_000}}

// BenchmarkReportCapture makes the report of a gateway capture and writes its page:
// the time per run, and the page's size (html-bytes).
func BenchmarkReportCapture(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			capt, pol := benchCapture(b, sz.packets)
			b.ReportAllocs()
			var size counter
			for b.Loop() {
				r, err := FromCapture("bench.pcapng", bytes.NewReader(capt), CaptureOptions{Policy: pol})
				if err != nil {
					b.Fatal(err)
				}
				size = 0
				if err := r.WriteHTML(&size); err != nil {
					b.Fatal(err)
				}
				if r.Views[0].Sequence.Packets < sz.packets*9/10 {
					b.Fatalf("the report read %d packets", r.Views[0].Sequence.Packets)
				}
			}
			b.ReportMetric(float64(size), "html-bytes")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(sz.packets), "ns/packet")
		})
	}
}

// BenchmarkReportReplay replays a capture through two profiles and writes the page.
func BenchmarkReportReplay(b *testing.B) {
	var profs []replay.Profile
	for _, n := range []string{"linux-conntrack", "aws-nat-gateway"} {
		pr, err := policy.LookupProfile(n)
		if err != nil {
			b.Fatal(err)
		}
		profs = append(profs, replay.Profile{Name: pr.Name, Policy: pr.Policy()})
	}
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			capt, _ := benchCapture(b, sz.packets)
			b.ReportAllocs()
			var size counter
			for b.Loop() {
				r, _, err := FromReplay("bench.pcapng", bytes.NewReader(capt), replay.Options{Profiles: profs})
				if err != nil {
					b.Fatal(err)
				}
				size = 0
				if err := r.WriteHTML(&size); err != nil {
					b.Fatal(err)
				}
				if len(r.Matrix.Rows) != benchFlows {
					b.Fatal(fmt.Sprintf("%d matrix rows", len(r.Matrix.Rows)))
				}
			}
			b.ReportMetric(float64(size), "html-bytes")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(sz.packets), "ns/packet")
		})
	}
}

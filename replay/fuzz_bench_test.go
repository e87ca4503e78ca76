package replay

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// BenchmarkRunSeed is one execution of FuzzReplay: a capture of a few kilobytes (its seeds)
// replayed through a fresh engine. Its cost is mostly per run, not per packet (the read
// buffer, the table's first slab chunk, the garbage they make), and it bounds how fast the
// fuzz target can go: the Makefile limits FuzzReplay's minimization for that reason.
func BenchmarkRunSeed(b *testing.B) {
	c, _, _ := idleGaps(b)
	for _, in := range []struct {
		name string
		b    []byte
	}{{"pcap", c.pcap(layers.LinkTypeEthernet)}, {"pcapng", c.pcapng()}} {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			p := profile(b, "aws-nat-gateway")
			for range b.N {
				Run("fuzz", bytes.NewReader(in.b), Options{Profiles: []Profile{p}})
			}
		})
	}
}

package replay

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// snapped writes the capture as a raw-IP pcap whose records keep at most snap
// bytes of each packet, as tcpdump -s does.
func (c *testCapture) snapped(snap int) []byte {
	c.t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(uint32(snap), layers.LinkTypeRaw); err != nil {
		c.t.Fatal(err)
	}
	for _, p := range c.pkts {
		b := p.ip[:min(snap, len(p.ip))]
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(p.at), CaptureLength: len(b), Length: len(p.ip)}
		if err := w.WritePacket(ci, b); err != nil {
			c.t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestReplaySnapLength: packets captured shorter than they were (their IP
// length says more) are replayed as the whole packets, not counted malformed.
func TestReplaySnapLength(t *testing.T) {
	c4, nA, _ := idleGaps(t)
	c6 := newCapture(t)
	a := c6.open(0, ap(client6, 40001), ap(server6, 443))
	a.send(1*s, true, "hello")
	n6 := a.send(500*s, true, "again")
	for _, tc := range []struct {
		name   string
		c      *testCapture
		snap   int // cuts every data segment inside its payload
		packet int // where flow 1 is reset
	}{
		{"ipv4", c4, 44, nA},
		{"ipv6", c6, 62, n6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := Options{Profiles: []Profile{profile(t, "aws-nat-gateway")}}
			want := run(t, tc.c.pcap(layers.LinkTypeRaw), opt)
			r := run(t, tc.c.snapped(tc.snap), opt)
			if r.Malformed != 0 || r.Packets != want.Packets || r.Summary != want.Summary {
				t.Fatalf("snap %d: %d packets, %d malformed, summary %q; want %d, 0, %q",
					tc.snap, r.Packets, r.Malformed, r.Summary, want.Packets, want.Summary)
			}
			checkFlow(t, r, "aws-nat-gateway", 1, want2(Reset, tc.packet))
		})
	}
}

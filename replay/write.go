package replay

import (
	"bufio"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/policy"
)

// output records what crossed the replayed box: idlegate's pcapng (capture.Writer:
// interface 0 inside, 1 outside, a verdict comment per packet), which replay reads
// back, or a plain pcap of raw IP packets. Errors are sticky: after the first, writes
// do nothing and Flush returns it.
type output interface {
	Write(side policy.Side, t time.Time, pkt []byte, c capture.Comment) error
	Flush() error
}

func newOutput(w io.Writer, pcapng bool) (output, error) {
	if pcapng {
		cw, err := capture.NewWriter(w, "idlegate replay")
		if err != nil {
			return nil, err
		}
		return cw, nil
	}
	p := &pcapOutput{bw: bufio.NewWriterSize(w, 1<<20)}
	p.w = pcapgo.NewWriterNanos(p.bw)
	if err := p.w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return nil, err
	}
	return p, nil
}

// pcapOutput writes a pcap without interfaces or comments.
type pcapOutput struct {
	bw  *bufio.Writer
	w   *pcapgo.Writer
	err error
}

func (p *pcapOutput) Write(_ policy.Side, t time.Time, pkt []byte, _ capture.Comment) error {
	if p.err == nil {
		p.err = p.w.WritePacket(gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(pkt), Length: len(pkt)}, pkt)
	}
	return p.err
}

func (p *pcapOutput) Flush() error {
	if p.err == nil {
		p.err = p.bw.Flush()
	}
	return p.err
}

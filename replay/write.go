package replay

import (
	"bufio"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/policy"
)

// writer records what crossed the replayed box: raw IP packets, as a pcap, or as a
// pcapng like the gateway's (interface 0 inside, 1 outside, a verdict comment per
// packet), which replay can read back.
type writer struct {
	bw  *bufio.Writer
	pc  *pcapgo.Writer
	ng  *pcapgo.NgWriter
	err error
}

func newWriter(w io.Writer, ng bool) (*writer, error) {
	wr := &writer{bw: bufio.NewWriterSize(w, 1<<20)}
	if !ng {
		wr.pc = pcapgo.NewWriterNanos(wr.bw)
		if err := wr.pc.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
			return nil, err
		}
		return wr, nil
	}
	intf := func(name string) pcapgo.NgInterface {
		return pcapgo.NgInterface{Name: name, LinkType: layers.LinkTypeRaw, TimestampResolution: 9}
	}
	var err error
	wr.ng, err = pcapgo.NewNgWriterInterface(wr.bw, intf("inside"), pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Application: "idlegate replay",
		Comment:     "interface 0 = inside (client side), 1 = outside (server side); what would have crossed the box, with its verdicts",
	}})
	if err == nil {
		_, err = wr.ng.AddInterface(intf("outside"))
	}
	if err != nil {
		return nil, err
	}
	return wr, nil
}

// write records pkt seen on side at t; the comment goes to pcapng only.
func (w *writer) write(side policy.Side, t time.Time, pkt []byte, comment string) {
	if w.err != nil {
		return
	}
	ci := gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(pkt), Length: len(pkt), InterfaceIndex: int(side)}
	if w.pc != nil {
		w.err = w.pc.WritePacket(ci, pkt)
		return
	}
	w.err = w.ng.WritePacketWithOptions(ci, pkt, pcapgo.NgPacketOptions{Comments: []string{comment}})
}

func (w *writer) flush() error {
	if w.err != nil {
		return w.err
	}
	if w.ng != nil {
		if err := w.ng.Flush(); err != nil {
			return err
		}
	}
	return w.bw.Flush()
}

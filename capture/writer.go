package capture

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/policy"
)

// Interface names: a pcapng whose interfaces 0 and 1 have these names is idlegate's.
const (
	InsideName  = "inside"
	OutsideName = "outside"
)

// flushAt is how much a Writer encodes before it hands it on.
const flushAt = 64 << 10

// Status is what a Writer's destination holds: whole blocks only, as far as the
// Writer knows (bytes still buffered are not counted).
type Status struct {
	Packets int       // packet records
	Last    time.Time // timestamp of the last of them; zero if none
	Bytes   int64     // the destination's length up to the end of its last whole block
	Err     error     // the write error that stopped the Writer; nil while it writes
}

// Writer writes idlegate's pcapng to an io.Writer: the section header and both
// interfaces at NewWriter, then one block per Write. It encodes into memory and hands
// the destination whole blocks only (one write per 64 KiB, and at Flush), so that what
// the destination holds ends at a block boundary, unless a write to it fails. The first
// failed write stops the Writer: every later call returns that error and writes
// nothing, and Status says how much of the destination is whole (File cuts the file
// back to it). A Writer is not safe for concurrent use; File is.
type Writer struct {
	out    io.Writer
	ng     *pcapgo.NgWriter
	enc    encoded     // blocks encoded but not yet handed on
	ends   []int       // end offset in enc of each packet block
	stamps []time.Time // and its timestamp
	st     Status
	opts   pcapgo.NgPacketOptions
	cmt    [1]string // opts.Comments
}

// encoded collects what the pcapgo writer encodes; its writes never fail.
type encoded struct{ b []byte }

func (e *encoded) Write(p []byte) (int, error) {
	e.b = append(e.b, p...)
	return len(p), nil
}

// NewWriter writes the section header (application app, e.g. "idlegate") and the two
// interfaces to w, then returns a Writer for the packets.
func NewWriter(w io.Writer, app string) (*Writer, error) {
	wr := &Writer{out: w}
	wr.enc.b = make([]byte, 0, flushAt+8<<10)
	intf := func(name, desc string) pcapgo.NgInterface {
		return pcapgo.NgInterface{Name: name, Description: desc, LinkType: layers.LinkTypeRaw, SnapLength: 0, TimestampResolution: 9}
	}
	ng, err := pcapgo.NewNgWriterInterface(&wr.enc, intf(InsideName, "the client side"), pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Application: app,
		Comment:     "interface 0 = inside (client side), 1 = outside (server side); packet comments give idlegate's verdicts",
	}})
	if err == nil {
		_, err = ng.AddInterface(intf(OutsideName, "the server side"))
	}
	if err == nil {
		err = ng.Flush()
	}
	if err != nil { // encoding into memory: not reached
		return nil, err
	}
	wr.ng = ng
	n, err := w.Write(wr.enc.b)
	if err == nil && n < len(wr.enc.b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return nil, err
	}
	wr.st.Bytes = int64(n)
	wr.enc.b = wr.enc.b[:0]
	return wr, nil
}

// Write records pkt, seen on side at t, with comment c (None: no comment). pkt is
// copied; the caller keeps it. It returns the error that stopped the Writer, if any.
func (w *Writer) Write(side policy.Side, t time.Time, pkt []byte, c Comment) error {
	if w.st.Err != nil {
		return w.st.Err
	}
	if side > policy.Outside {
		return fmt.Errorf("capture: no interface for side %d", side)
	}
	ci := gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(pkt), Length: len(pkt), InterfaceIndex: int(side)}
	w.opts.Comments = nil
	if s := c.String(); s != "" {
		w.cmt[0] = s
		w.opts.Comments = w.cmt[:]
	}
	// Into memory: these cannot fail once the arguments are checked as above.
	if err := w.ng.WritePacketWithOptions(ci, pkt, w.opts); err != nil {
		return err
	}
	if err := w.ng.Flush(); err != nil {
		return err
	}
	w.ends = append(w.ends, len(w.enc.b))
	w.stamps = append(w.stamps, t)
	if len(w.enc.b) >= flushAt {
		return w.Flush()
	}
	return nil
}

// Flush hands every block encoded so far to the destination. It returns the error
// that stopped the Writer, if any.
func (w *Writer) Flush() error {
	if w.st.Err != nil {
		return w.st.Err
	}
	if len(w.enc.b) == 0 {
		return nil
	}
	n, err := w.out.Write(w.enc.b)
	if err == nil && n < len(w.enc.b) {
		err = io.ErrShortWrite
	}
	whole := len(w.ends)
	if err != nil {
		// The blocks that reached the destination whole: those ending within n.
		whole = sort.Search(len(w.ends), func(i int) bool { return w.ends[i] > n })
		w.st.Err = err
	}
	if whole > 0 {
		w.st.Packets += whole
		w.st.Last = w.stamps[whole-1]
		w.st.Bytes += int64(w.ends[whole-1])
	}
	w.enc.b, w.ends, w.stamps = w.enc.b[:0], w.ends[:0], w.stamps[:0]
	if err != nil {
		w.enc.b, w.ends, w.stamps = nil, nil, nil
	}
	return err
}

// Status says what the destination holds.
func (w *Writer) Status() Status { return w.st }

package capture

import (
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Record is one packet record of a pcapng. Reader.Next fills it; Data is valid until
// the next call.
type Record struct {
	Data []byte    // the packet as captured
	Time time.Time // its timestamp
	// Interface is the pcapng interface it was recorded on; in an idlegate capture,
	// a policy.Side: 0 inside (client side), 1 outside (server side).
	Interface int
	LinkType  layers.LinkType // of that interface
	Length    int             // its length on the wire; more than len(Data) if cut short
	// Comment is the gateway's word on it, typed: Kind None without a comment, Foreign
	// for a comment idlegate does not write or any comment outside an idlegate capture.
	Comment
	Text string // the record's first comment as written, "" if none
}

// Reader reads a pcapng record by record: idlegate's, with typed comments, or any
// other (Kind None or Foreign). It allocates nothing per record beyond what pcapgo
// allocates for comments.
type Reader struct {
	ng       *pcapgo.NgReader
	links    []layers.LinkType // per interface of the current section, filled lazily
	idlegate bool
	checked  bool // idlegate is known for the current section
}

// NewReader reads the pcapng section header from r. The errors are pcapgo's (wrapped
// with what failed); io.ErrUnexpectedEOF (errors.Is) means the input was cut short.
func NewReader(r io.Reader) (rd *Reader, err error) {
	defer func() {
		if p := recover(); p != nil { // a damaged header must end in an error, whatever the decoder does
			rd, err = nil, fmt.Errorf("the pcapng decoder failed (%v)", p)
		}
	}()
	rd = &Reader{}
	rd.ng, err = pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{WantMixedLinkType: true,
		SectionEndCallback: func([]pcapgo.NgInterface, pcapgo.NgSectionInfo) { rd.links, rd.checked = rd.links[:0], false }})
	if err != nil {
		return nil, err
	}
	return rd, nil
}

// Idlegate reports whether the section being read is idlegate's: its interface 0 is
// named "inside" and 1 "outside". It is known once Next has returned a record.
func (r *Reader) Idlegate() bool { return r.idlegate }

// Next reads the next packet record into rec; io.EOF at the clean end. The section
// header and interfaces of a later section are read on the way.
func (r *Reader) Next(rec *Record) (err error) {
	defer func() {
		if p := recover(); p != nil { // a damaged record must end in an error
			err = fmt.Errorf("the pcapng decoder failed (%v)", p)
		}
	}()
	data, ci, opts, err := r.ng.ZeroCopyReadPacketDataWithOptions()
	if err != nil {
		return err
	}
	if !r.checked {
		r.checked, r.idlegate = true, false
		if r.ng.NInterfaces() >= 2 {
			i0, _ := r.ng.Interface(0)
			i1, _ := r.ng.Interface(1)
			r.idlegate = i0.Name == InsideName && i1.Name == OutsideName
		}
	}
	link, err := r.linkOf(ci.InterfaceIndex)
	if err != nil {
		return err
	}
	rec.Data, rec.Time, rec.Interface, rec.LinkType, rec.Length = data, ci.Timestamp, ci.InterfaceIndex, link, ci.Length
	rec.Text = ""
	if len(opts.Comments) > 0 {
		rec.Text = opts.Comments[0]
	}
	switch {
	case rec.Text == "":
		rec.Comment = Comment{}
	case r.idlegate:
		rec.Comment = parseComment(rec.Text)
	default:
		rec.Comment = Comment{Kind: Foreign}
	}
	return nil
}

// linkOf is the link type of interface i of the current section.
func (r *Reader) linkOf(i int) (layers.LinkType, error) {
	for j := len(r.links); j <= i; j++ {
		intf, err := r.ng.Interface(j)
		if err != nil {
			return 0, err
		}
		r.links = append(r.links, intf.LinkType)
	}
	if i < 0 {
		return 0, fmt.Errorf("record on interface %d", i)
	}
	return r.links[i], nil
}

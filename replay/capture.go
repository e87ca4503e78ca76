package replay

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/capture"
)

// Link types replay reads (tcpdump's LINKTYPE_ values).
const (
	linkEthernet = 1
	linkRaw12    = 12 // DLT_RAW as some systems write it
	linkRaw      = 101
	linkSLL      = 113
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276
)

// supportedLinks is the list given when a capture has another link type.
const supportedLinks = "Ethernet (1, with 802.1Q/802.1ad VLAN tags), Linux cooked SLL (113) and SLL2 (276), raw IP (101, 12), raw IPv4 (228) and raw IPv6 (229)"

// LinkTypeError is a capture (or one of its pcapng interfaces) of a link type replay
// cannot read.
type LinkTypeError struct {
	Capture  string
	LinkType layers.LinkType
}

func (e *LinkTypeError) Error() string {
	return fmt.Sprintf("capture %s has link type %s (%d), which replay cannot read; it reads %s",
		e.Capture, linkName(e.LinkType), int(e.LinkType), supportedLinks)
}

func linkName(l layers.LinkType) string {
	switch int(l) {
	case linkRaw12, linkRaw:
		return "RAW"
	case linkSLL2:
		return "LINUX_SLL2"
	case linkIPv4:
		return "IPV4"
	case linkIPv6:
		return "IPV6"
	}
	if s := l.String(); s != "" && !strings.HasPrefix(s, "UnknownLinkType") {
		return s
	}
	return "unknown"
}

func supported(l layers.LinkType) bool {
	switch int(l) {
	case linkEthernet, linkRaw12, linkRaw, linkSLL, linkIPv4, linkIPv6, linkSLL2:
		return true
	}
	return false
}

// CaptureError is a capture that cannot be read: not a pcap or pcapng file, or cut
// short. It reads as one sentence.
type CaptureError struct {
	Capture string
	Packet  int // records read before the failure
	Err     error
	Msg     string
}

func (e *CaptureError) Error() string { return e.Msg }
func (e *CaptureError) Unwrap() error { return e.Err }

// record is one packet of a capture. data is valid until the next read.
type record struct {
	data      []byte // the frame as captured
	ts        time.Time
	iface     int
	link      layers.LinkType
	truncated bool            // captured shorter than it was on the wire (snap length)
	note      capture.Comment // an idlegate pcapng's word on the packet
}

// reader reads pcap files with pcapgo and pcapng files with capture.Reader, without
// allocating per packet (pcapng packet comments excepted).
type reader struct {
	name string
	pcap *pcapgo.Reader
	ng   *capture.Reader
	rec  capture.Record
	n    int // records read
	// idlegate is set for a pcapng written by idlegate (capture.Reader.Idlegate):
	// interface 0 is inside, 1 outside, and packet comments give the verdicts.
	idlegate bool
}

var (
	pcapMagics = [][4]byte{{0xd4, 0xc3, 0xb2, 0xa1}, {0xa1, 0xb2, 0xc3, 0xd4}, {0x4d, 0x3c, 0xb2, 0xa1}, {0xa1, 0xb2, 0x3c, 0x4d}}
	ngMagic    = [4]byte{0x0a, 0x0d, 0x0d, 0x0a}
)

// openReader detects pcap or pcapng (optionally gzip-compressed) and reads its header.
func openReader(name string, r io.Reader) (*reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, err := br.Peek(4)
	if err != nil {
		if len(head) == 0 {
			return nil, &CaptureError{Capture: name, Err: err, Msg: fmt.Sprintf("capture %s is empty; give a pcap or pcapng file (tcpdump -w, or idlegate's --pcap)", name)}
		}
		return nil, &CaptureError{Capture: name, Err: err, Msg: fmt.Sprintf("capture %s is too short to be a pcap or pcapng file", name)}
	}
	if head[0] == 0x1f && head[1] == 0x8b { // gzip: look at what it holds
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, &CaptureError{Capture: name, Err: err, Msg: fmt.Sprintf("capture %s looks gzip-compressed but cannot be decompressed: %v", name, err)}
		}
		br = bufio.NewReaderSize(zr, 1<<20)
		if head, err = br.Peek(4); err != nil {
			return nil, &CaptureError{Capture: name, Err: err, Msg: fmt.Sprintf("capture %s holds too little to be a pcap or pcapng file", name)}
		}
	}
	var magic [4]byte
	copy(magic[:], head)
	rd := &reader{name: name}
	isPcap := false
	for _, m := range pcapMagics {
		isPcap = isPcap || magic == m
	}
	switch {
	case magic == ngMagic:
		rd.ng, err = capture.NewReader(br)
	case isPcap:
		rd.pcap, err = pcapgo.NewReader(br)
	default:
		return nil, &CaptureError{Capture: name, Msg: fmt.Sprintf("%s is not a pcap or pcapng capture (it starts with bytes % x); write one with tcpdump -w or idlegate's --pcap", name, head)}
	}
	if err != nil {
		return nil, rd.fail(err)
	}
	if rd.pcap != nil && !supported(rd.pcap.LinkType()) {
		return nil, &LinkTypeError{Capture: name, LinkType: rd.pcap.LinkType()}
	}
	return rd, nil
}

// fail turns a read error into one sentence naming the capture and where it broke.
func (r *reader) fail(err error) error {
	var lt *LinkTypeError
	if errors.As(err, &lt) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &CaptureError{Capture: r.name, Packet: r.n, Err: err,
			Msg: fmt.Sprintf("capture %s is truncated: it ends in the middle of record %d (was it still being written?)", r.name, r.n+1)}
	}
	if r.n == 0 && r.pcap == nil && r.ng == nil {
		return &CaptureError{Capture: r.name, Err: err, Msg: fmt.Sprintf("capture %s has a damaged header: %v", r.name, err)}
	}
	return &CaptureError{Capture: r.name, Packet: r.n, Err: err,
		Msg: fmt.Sprintf("capture %s is damaged at record %d: %v", r.name, r.n+1, err)}
}

// next reads the next record; io.EOF at the clean end.
func (r *reader) next(rec *record) (err error) {
	defer func() {
		// A damaged file must end in a sentence, whatever the decoder does with it.
		if p := recover(); p != nil {
			err = &CaptureError{Capture: r.name, Packet: r.n, Msg: fmt.Sprintf("capture %s is damaged at record %d (%v)", r.name, r.n+1, p)}
		}
	}()
	if r.pcap != nil {
		data, ci, err := r.pcap.ZeroCopyReadPacketData()
		if err != nil {
			if err == io.EOF {
				return io.EOF
			}
			return r.fail(err)
		}
		r.n++
		rec.data, rec.ts, rec.iface, rec.link = data, ci.Timestamp, 0, r.pcap.LinkType()
		rec.truncated = ci.CaptureLength < ci.Length
		rec.note = capture.Comment{}
		return nil
	}
	cr := &r.rec
	if err := r.ng.Next(cr); err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return r.fail(err)
	}
	r.n++
	r.idlegate = r.ng.Idlegate()
	if !supported(cr.LinkType) {
		return &LinkTypeError{Capture: r.name, LinkType: cr.LinkType}
	}
	rec.data, rec.ts, rec.iface, rec.link = cr.Data, cr.Time, cr.Interface, cr.LinkType
	rec.truncated = len(cr.Data) < cr.Length
	rec.note = cr.Comment
	return nil
}

// ipOf returns the IP packet inside a frame of link type l, or nil if the frame does
// not carry IPv4 or IPv6 (ARP, LLDP, a frame too short).
func ipOf(b []byte, l layers.LinkType) []byte {
	var etype uint16
	switch int(l) {
	case linkRaw, linkRaw12, linkIPv4, linkIPv6:
		return b
	case linkEthernet:
		if len(b) < 14 {
			return nil
		}
		etype, b = binary.BigEndian.Uint16(b[12:14]), b[14:]
		for i := 0; i < 3 && (etype == 0x8100 || etype == 0x88a8 || etype == 0x9100); i++ {
			if len(b) < 4 {
				return nil
			}
			etype, b = binary.BigEndian.Uint16(b[2:4]), b[4:]
		}
	case linkSLL:
		if len(b) < 16 {
			return nil
		}
		etype, b = binary.BigEndian.Uint16(b[14:16]), b[16:]
	case linkSLL2:
		if len(b) < 20 {
			return nil
		}
		etype, b = binary.BigEndian.Uint16(b[0:2]), b[20:]
	default:
		return nil
	}
	if etype != 0x0800 && etype != 0x86dd {
		return nil
	}
	return b
}

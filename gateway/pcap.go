package gateway

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/policy"
)

// Pcap writes what crosses the gateway to a pcapng file readable by tcpdump, tshark and
// gopacket. It has two interfaces, 0 "inside" and 1 "outside", with raw IP link type.
// Every packet read is recorded on the interface it arrived on with a comment
// "<verdict> <reason> <direction>"; a forwarded packet the engine translated (NAT; the
// TTL decrement of every forwarded packet does not count) is recorded again on the
// interface it leaves by with the comment "translated"; a packet
// the gateway originates is recorded on the interface it leaves by with the comment
// "injected <verdict-or-event>". Safe for concurrent use.
type Pcap struct {
	mu   sync.Mutex
	f    *os.File
	w    *pcapgo.NgWriter
	path string
	opts pcapgo.NgPacketOptions // reused by Write, under mu
	cmt  [1]string              // opts.Comments
}

// OpenPcap creates (or truncates) path and writes the pcapng section and interfaces.
func OpenPcap(path string) (*Pcap, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create pcap %q: %w", path, err)
	}
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Application: "idlegate",
		Comment:     "interface 0 = inside (client side), 1 = outside (server side); packet comments give the gateway's verdict",
	}}
	intf := func(name string) pcapgo.NgInterface {
		return pcapgo.NgInterface{Name: name, LinkType: layers.LinkTypeRaw, SnapLength: 0, TimestampResolution: 9}
	}
	w, err := pcapgo.NewNgWriterInterface(f, intf("inside"), opts)
	if err == nil {
		_, err = w.AddInterface(intf("outside"))
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write pcap header %q: %w", path, err)
	}
	return &Pcap{f: f, w: w, path: path}, nil
}

// Path is the file being written.
func (p *Pcap) Path() string { return p.path }

// Write records one packet seen on side at time t with a comment.
func (p *Pcap) Write(side policy.Side, t time.Time, pkt []byte, comment string) {
	ci := gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(pkt), Length: len(pkt), InterfaceIndex: int(side)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w == nil {
		return
	}
	p.cmt[0] = comment
	p.opts.Comments = p.cmt[:]
	p.w.WritePacketWithOptions(ci, pkt, p.opts)
}

// Flush pushes buffered packets to the file.
func (p *Pcap) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w != nil {
		p.w.Flush()
	}
}

// Close flushes and closes the file; later writes are ignored.
func (p *Pcap) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w == nil {
		return nil
	}
	err := p.w.Flush()
	p.w = nil
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	return err
}

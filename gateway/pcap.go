package gateway

import (
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
)

// The gateway records what crosses it to a capture.File (idlegate's pcapng, see
// package capture): every packet read on the interface it arrived on with its verdict,
// the rewritten copy of a forwarded packet on the interface it left by, and every
// packet it originated. A recording ends when SetPcap replaces or stops it, when Run
// returns, or at its first write error (a full disk): then the gateway logs one line,
// counts it (PcapWriteErrors, idlegate_pcap_write_errors_total), stops recording, and
// keeps the recording's control.PcapStatus for Stats and for the next SetPcap to report. The
// file is cut back to its last whole block, so every reader opens it.

// recording is the capture in progress: its file and the filter that picks the
// packets it records (nil: every packet).
type recording struct {
	*capture.File
	filter  *control.Filter
	started time.Time
	packets atomic.Int64 // records written, buffered ones included
}

// Write records a packet (capture.File.Write) and counts it.
func (r *recording) Write(side policy.Side, t time.Time, pkt []byte, c capture.Comment) error {
	err := r.File.Write(side, t, pkt, c)
	if err == nil {
		r.packets.Add(1)
	}
	return err
}

// keeps reports whether the recording takes a packet the engine decided with res
// (its injections follow it): the packet's connection, or the packet's own tuple,
// matches the filter in either direction.
func (r *recording) keeps(res *policy.Result) bool {
	if r.filter == nil {
		return true
	}
	if res.Conn.Orig != (conntrack.Key{}) {
		return r.filter.MatchPacket(res.Conn.Orig)
	}
	return r.keepsInfo(&res.Info)
}

// keepsPacket is keeps for a packet the gateway originates outside any Process call
// (the RSTs of an expiry).
func (r *recording) keepsPacket(pkt []byte) bool {
	if r.filter == nil {
		return true
	}
	var p packet.Info
	if packet.Decode(pkt, &p) != nil {
		return false
	}
	return r.keepsInfo(&p)
}

func (r *recording) keepsInfo(p *packet.Info) bool {
	if k, ok := policy.FlowKey(p); ok {
		return r.filter.MatchPacket(k)
	}
	if !p.Src.IsValid() || !p.Dst.IsValid() {
		return false // not even an IP packet: no filter picks it
	}
	return r.filter.MatchPacket(conntrack.MakeKey(p.Proto, netip.AddrPortFrom(p.Src, 0), netip.AddrPortFrom(p.Dst, 0)))
}

// SetPcap starts recording to a new pcapng file at path, replacing (and closing) any
// recording in progress; an empty path stops recording. The file is created mode 0600
// and never through a symbolic link; an existing file is refused (capture.ErrRefused)
// unless force, and then overwritten. The new file is opened before the old recording
// stops, so that no packet goes unrecorded, unless it is the old recording's own file
// (with force): that one is closed first (it would otherwise flush its last packets
// into the new file). If the new file cannot be created, a recording to another file
// goes on.
//
// It returns what the recording it ended holds or, if none was running, the status of
// the last one a write error stopped since the last start (zero if none).
//
// filter, if not the zero Filter, picks the packets recorded (control.Filter's
// MatchPacket: protocol, addresses and ports, either direction); others are not.
func (g *Gateway) SetPcap(path string, force bool, filter control.Filter) (control.PcapStatus, error) {
	if err := filter.CheckPacket(); err != nil {
		return control.PcapStatus{}, err
	}
	g.pcmu.Lock()
	defer g.pcmu.Unlock()
	var ended control.PcapStatus
	if old := g.pcap.Load(); old != nil && path != "" && force && sameFile(old.Path(), path) {
		g.pcap.Store(nil)
		ended = g.endPcapLocked(old)
	}
	var p *recording
	if path != "" {
		f, err := capture.Create(path, force)
		if err != nil {
			return control.PcapStatus{}, err
		}
		p = &recording{File: f, started: g.cfg.Now()}
		if !filter.IsZero() {
			p.filter = &filter
		}
	}
	if old := g.pcap.Swap(p); old != nil {
		ended = g.endPcapLocked(old)
	} else if ended.Path == "" && g.pcapFailed != nil {
		ended = *g.pcapFailed
	}
	if p != nil {
		g.pcapFailed = nil
	}
	return ended, nil
}

// sameFile reports whether paths a and b name one file.
func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// PcapPath is the file being recorded, or "".
func (g *Gateway) PcapPath() string {
	if p := g.pcap.Load(); p != nil {
		return p.Path()
	}
	return ""
}

// PcapFailed is the status of the last recording a write error stopped, if no
// recording started since.
func (g *Gateway) PcapFailed() (control.PcapStatus, bool) {
	g.pcmu.Lock()
	defer g.pcmu.Unlock()
	if g.pcapFailed == nil {
		return control.PcapStatus{}, false
	}
	return *g.pcapFailed, true
}

// PcapInfo says what is being recorded.
func (g *Gateway) PcapInfo() control.PcapInfo {
	g.pcmu.Lock()
	defer g.pcmu.Unlock()
	var info control.PcapInfo
	if p := g.pcap.Load(); p != nil {
		info = control.PcapInfo{Recording: true, Path: p.Path(), Started: p.started, Packets: int(p.packets.Load())}
		if p.filter != nil {
			info.Filter = p.filter.String()
		}
	}
	if g.pcapFailed != nil {
		f := *g.pcapFailed
		info.Failed = &f
	}
	return info
}

// PcapWriteErrors counts the recordings a write error stopped.
func (g *Gateway) PcapWriteErrors() uint64 { return g.pcapErrors.Load() }

// pcapWriteFailed stops the recording p after a write error, unless something else
// stopped it first (and then accounts for it).
func (g *Gateway) pcapWriteFailed(p *recording) {
	g.pcmu.Lock()
	defer g.pcmu.Unlock()
	if g.pcap.CompareAndSwap(p, nil) {
		g.endPcapLocked(p)
	}
}

// endPcapLocked closes p, which the caller took out of g.pcap, and accounts for a
// write error that stopped it. g.pcmu is held.
func (g *Gateway) endPcapLocked(p *recording) control.PcapStatus {
	err := p.Close()
	st := p.Status()
	s := control.PcapStatus{Path: p.Path(), Packets: st.Packets, Last: st.Last}
	if err != nil {
		s.Error = err.Error()
		g.pcapErrors.Add(1)
		g.pcapFailed = &s
		g.cfg.Log.Error("recording stopped after a write error; the file is cut back to its last whole block",
			"pcap", s.Path, "err", err, "packets", s.Packets, "last", s.Last)
	}
	return s
}

// arrival is the comment of a packet read with result res in direction dir.
func arrival(res *policy.Result, dir policy.Dir) capture.Comment {
	return capture.Comment{Kind: capture.Arrival, Verdict: res.Verdict, Reason: res.Reason, Dir: dir, Keepalive: res.Conn.Keepalive}
}

// injected is the comment of a packet injected in answer to a packet given res.
func injected(res *policy.Result) capture.Comment {
	return capture.Comment{Kind: capture.Injected, Verdict: res.Verdict, Reason: res.Reason}
}

var (
	translated  = capture.Comment{Kind: capture.Translated}
	expiryReset = capture.Comment{Kind: capture.ExpiryReset, Verdict: policy.Reset}
)

package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/policy"
)

// The gateway records what crosses it to a capture.File (idlegate's pcapng, see
// package capture): every packet read on the interface it arrived on with its verdict,
// the rewritten copy of a forwarded packet on the interface it left by, and every
// packet it originated. A recording ends when SetPcap replaces or stops it, when Run
// returns, or at its first write error (a full disk): then the gateway logs one line,
// counts it (PcapWriteErrors, idlegate_pcap_write_errors_total), stops recording, and
// keeps the recording's PcapStatus for Stats and for the next SetPcap to report. The
// file is cut back to its last whole block, so every reader opens it.

// PcapStatus describes a recording that ended.
type PcapStatus struct {
	Path    string    `json:"path"`
	Packets int       `json:"packets"`         // records the file holds
	Last    time.Time `json:"last,omitzero"`   // the timestamp of the last of them
	Error   string    `json:"error,omitempty"` // the write error that stopped it
}

// String says what the file holds and, after a write error, that recording stopped.
func (s PcapStatus) String() string {
	holds := fmt.Sprintf("%s holds %d packets", s.Path, s.Packets)
	switch {
	case s.Packets == 0:
		holds = s.Path + " holds no packets"
	case !s.Last.IsZero():
		holds += " up to " + s.Last.Format("2006-01-02 15:04:05.000 MST")
	}
	if s.Error != "" {
		return "recording stopped after a write error: " + s.Error + "; " + holds
	}
	return holds
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
func (g *Gateway) SetPcap(path string, force bool) (PcapStatus, error) {
	g.pcmu.Lock()
	defer g.pcmu.Unlock()
	var ended PcapStatus
	if old := g.pcap.Load(); old != nil && path != "" && force && sameFile(old.Path(), path) {
		g.pcap.Store(nil)
		ended = g.endPcapLocked(old)
	}
	var p *capture.File
	if path != "" {
		var err error
		if p, err = capture.Create(path, force); err != nil {
			return PcapStatus{}, err
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
func (g *Gateway) PcapFailed() (PcapStatus, bool) {
	g.pcmu.Lock()
	defer g.pcmu.Unlock()
	if g.pcapFailed == nil {
		return PcapStatus{}, false
	}
	return *g.pcapFailed, true
}

// PcapWriteErrors counts the recordings a write error stopped.
func (g *Gateway) PcapWriteErrors() uint64 { return g.pcapErrors.Load() }

// pcapWriteFailed stops the recording p after a write error, unless something else
// stopped it first (and then accounts for it).
func (g *Gateway) pcapWriteFailed(p *capture.File) {
	g.pcmu.Lock()
	defer g.pcmu.Unlock()
	if g.pcap.CompareAndSwap(p, nil) {
		g.endPcapLocked(p)
	}
}

// endPcapLocked closes p, which the caller took out of g.pcap, and accounts for a
// write error that stopped it. g.pcmu is held.
func (g *Gateway) endPcapLocked(p *capture.File) PcapStatus {
	err := p.Close()
	st := p.Status()
	s := PcapStatus{Path: p.Path(), Packets: st.Packets, Last: st.Last}
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

// Package gateway moves packets between the inside and the outside TUN device through
// a policy engine on the live clock. It is the privileged shell around the pure core.
//
// One packet's path, per direction, in one goroutine:
//  1. read a batch from the device of the side it arrives on (tun.Device.Read into
//     buffers the pump owns, each packet tun.Headroom bytes in when both devices pass
//     offloads: its virtio_net_hdr stays in front of it);
//  2. policy.Engine.Process decides each packet: verdict, in-place rewrite (NAT),
//     packets to inject (RST, ICMP); a GSO super-packet is one packet here, as a GRO
//     packet is to Linux's conntrack;
//  3. write the forwarded packets as one batch to the other device, offload headers
//     and all, and the injected ones (with no offload header: their checksums are
//     complete) to the side each names.
//
// Forwarding a packet allocates nothing (TestPumpAllocs).
//
// A third goroutine calls Engine.Tick every TickInterval, so expiries are reported and
// reset_on_expire RSTs are sent within 100 ms of their deadline.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/tun"
)

// Config wires a gateway.
type Config struct {
	Inside, Outside tun.Device // Run owns both once called and closes them when it returns
	Engine          *policy.Engine
	// Now is the live clock; nil means time.Now. The engine never reads a clock itself.
	Now func() time.Time
	// TickInterval is how often expiries are swept; 0 means 20 ms.
	TickInterval time.Duration
	Log          *slog.Logger // nil means discard
}

// Gateway pumps packets between two devices. Methods are safe for concurrent use.
type Gateway struct {
	cfg  Config
	devs [2]tun.Device // indexed by policy.Side
	// wmu serialises writes to each device: the pump of the other side, injections
	// from both pumps and the ticker all write (tun.Device allows one writer at a time).
	wmu   [2]sync.Mutex
	pcap  atomic.Pointer[Pcap]
	pcmu  sync.Mutex   // serialises SetPcap
	stats [2]sideStats // indexed by the side a packet arrives on
	start time.Time
}

type sideStats struct {
	rxPackets, rxBytes  atomic.Uint64
	txPackets, txBytes  atomic.Uint64
	injected, writeErrs atomic.Uint64
	readErrs            atomic.Uint64
}

// SideStats counts packets per side: received from it, sent to it.
type SideStats struct {
	RxPackets   uint64 `json:"rx_packets"`
	RxBytes     uint64 `json:"rx_bytes"`
	TxPackets   uint64 `json:"tx_packets"`
	TxBytes     uint64 `json:"tx_bytes"`
	Injected    uint64 `json:"injected"`
	WriteErrors uint64 `json:"write_errors"`
	ReadErrors  uint64 `json:"read_errors"`
}

// New checks cfg and builds a gateway; Run starts it.
func New(cfg Config) (*Gateway, error) {
	if cfg.Inside == nil || cfg.Outside == nil || cfg.Engine == nil {
		return nil, errors.New("gateway needs an inside device, an outside device and an engine")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 20 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	g := &Gateway{cfg: cfg, start: cfg.Now()}
	g.devs[policy.Inside], g.devs[policy.Outside] = cfg.Inside, cfg.Outside
	return g, nil
}

// Engine is the gateway's policy engine.
func (g *Gateway) Engine() *policy.Engine { return g.cfg.Engine }

// Started is when the gateway was built, on its clock.
func (g *Gateway) Started() time.Time { return g.start }

// Now reads the gateway's clock.
func (g *Gateway) Now() time.Time { return g.cfg.Now() }

// SetPcap starts recording to a new pcapng file at path, replacing (and closing) any
// recording in progress; an empty path stops recording. The new file is opened
// before the old recording stops, so that no packet goes unrecorded, unless it is the
// old recording's own file: that one is closed first (it would otherwise flush its
// last packets into the new file). If the new file cannot be created, a recording to
// another file goes on.
func (g *Gateway) SetPcap(path string) error {
	g.pcmu.Lock()
	defer g.pcmu.Unlock()
	if old := g.pcap.Load(); old != nil && path != "" && sameFile(old.Path(), path) {
		g.pcap.Store(nil)
		old.Close()
	}
	var p *Pcap
	if path != "" {
		var err error
		if p, err = OpenPcap(path); err != nil {
			return err
		}
	}
	if old := g.pcap.Swap(p); old != nil {
		old.Close()
	}
	return nil
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

// Stats returns the per-side device counters.
func (g *Gateway) Stats() [2]SideStats {
	var out [2]SideStats
	for i := range g.stats {
		s := &g.stats[i]
		out[i] = SideStats{
			RxPackets: s.rxPackets.Load(), RxBytes: s.rxBytes.Load(),
			TxPackets: s.txPackets.Load(), TxBytes: s.txBytes.Load(),
			Injected: s.injected.Load(), WriteErrors: s.writeErrs.Load(), ReadErrors: s.readErrs.Load(),
		}
	}
	return out
}

// Run pumps packets until ctx is done or a device fails, then closes both devices and
// any pcap recording. It returns nil after a cancellation.
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	for _, side := range []policy.Side{policy.Inside, policy.Outside} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.pump(ctx, side); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.tick(ctx)
	}()
	<-ctx.Done()
	// Closing the devices unblocks the pumps' reads.
	for _, d := range g.devs {
		d.Close()
	}
	wg.Wait()
	if p := g.pcap.Swap(nil); p != nil {
		p.Close()
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// pump carries packets arriving on side to the other side.
func (g *Gateway) pump(ctx context.Context, side policy.Side) error {
	in, out := g.devs[side], g.devs[1-side]
	if w, ok := in.(interface{ Waits() tun.Wait }); ok && w.Waits() == tun.WaitThread {
		// The device blocks this goroutine's thread in poll(2) when idle; keep
		// the pump on it so that a wake-up needs no hand-over.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	dir := policy.Dir(side) // packets from the inside go outbound
	batch := max(in.BatchSize(), 1)
	// Packets sit at offset hr in their buffers. With devices on both sides that
	// pass offloads, the virtio_net_hdr each was read with stays in the hr bytes
	// before it and goes out with it: a GSO super-packet (up to 65535 bytes, past
	// the MTU) crosses as one packet, as Linux's own conntrack sees a GRO packet.
	// Otherwise hr is 0 and every device reads plain packets.
	hr := 0
	if tun.PassesOffloads(in) && tun.PassesOffloads(out) {
		hr = tun.Headroom
	}
	const maxPacket = 65535 // the largest IP packet
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, hr+maxPacket)
	}
	sizes := make([]int, batch)
	fwd := make([][]byte, 0, batch)
	var orig []byte // pre-rewrite copy for the pcap, allocated on first use
	res := new(policy.Result)
	st, ost := &g.stats[side], &g.stats[1-side]
	var one [1][]byte // an injected packet, as a batch of one
	var failures int  // read errors in a row
	var backoff time.Duration
	for {
		n, err := in.Read(bufs, sizes, hr)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
				return nil
			}
			st.readErrs.Add(1)
			failures++
			if failures >= readErrorLimit {
				return fmt.Errorf("read %s: %d errors in a row, the last: %w", in.Name(), failures, err)
			}
			g.cfg.Log.Warn("read failed", "side", side, "in_a_row", failures, "err", err)
			// Back off so that a persistent error neither spins nor floods the log.
			backoff = min(max(2*backoff, readBackoffMin), readBackoffMax)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		failures, backoff = 0, 0
		now := g.cfg.Now()
		pc := g.pcap.Load()
		fwd = fwd[:0]
		var rxBytes, txBytes uint64
		for i := range n {
			pkt := bufs[i][hr : hr+sizes[i]]
			rxBytes += uint64(len(pkt))
			if pc != nil {
				orig = append(orig[:0], pkt...)
			}
			g.cfg.Engine.Process(pkt, dir, now, res)
			if res.Verdict == policy.Forward {
				// res.Packet is pkt, rewritten in place: same buffer, same length.
				fwd = append(fwd, bufs[i][:hr+len(res.Packet)])
				txBytes += uint64(len(res.Packet))
			}
			if pc != nil {
				pc.Write(side, now, orig, pcapComment(res.Verdict, res.Reason, dir, false))
				if res.Verdict == policy.Forward && res.Translated {
					pc.Write(1-side, now, res.Packet, "translated")
				}
			}
			for _, inj := range res.Inject {
				g.inject(&one, inj, now, pc, pcapComment(res.Verdict, res.Reason, dir, true))
			}
		}
		st.rxPackets.Add(uint64(n))
		st.rxBytes.Add(rxBytes)
		if len(fwd) > 0 {
			g.wmu[1-side].Lock()
			sent, failed := 0, 0
			for rest := fwd; len(rest) > 0; {
				w, err := out.Write(rest, hr)
				sent += w
				if err == nil {
					break
				}
				// Packet w failed; the others still go.
				failed++
				rest = rest[min(w+1, len(rest)):]
				if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
					failed += len(rest)
					break
				}
				g.cfg.Log.Debug("write failed", "side", 1-side, "err", err)
			}
			g.wmu[1-side].Unlock()
			ost.txPackets.Add(uint64(sent))
			if failed == 0 {
				ost.txBytes.Add(txBytes)
			} else {
				ost.writeErrs.Add(uint64(failed))
				if ctx.Err() != nil {
					return nil
				}
			}
		}
	}
}

// A pump gives up after readErrorLimit read errors in a row; between them it waits
// readBackoffMin, doubling up to readBackoffMax (about 9 s of errors in all).
var (
	readErrorLimit = 100
	readBackoffMin = time.Millisecond
	readBackoffMax = 100 * time.Millisecond
)

// Array lengths of the engine's counters: the number of verdicts and of reasons.
const (
	numVerdicts = len(policy.Stats{}.Verdicts)
	numReasons  = len(policy.Stats{}.Reasons)
)

// pcapComments are the comments of recorded packets, built once so that recording
// allocates none: [verdict][reason][dir][0] is a packet read, "<verdict> <reason>
// <direction>", and [1] a packet injected in answer to it, "injected <verdict>
// <reason>".
var pcapComments = func() (c [numVerdicts][numReasons][2][2]string) {
	for v := range c {
		for r := range c[v] {
			for d := range c[v][r] {
				vr := policy.Verdict(v).String() + " " + policy.Reason(r).String()
				c[v][r][d][0] = vr + " " + policy.Dir(d).String()
				c[v][r][d][1] = "injected " + vr
			}
		}
	}
	return c
}()

// pcapComment is the comment of a packet the engine gave v for reason r in
// direction dir, or of a packet injected in answer to it.
func pcapComment(v policy.Verdict, r policy.Reason, dir policy.Dir, injected bool) string {
	i := 0
	if injected {
		i = 1
	}
	if int(v) < numVerdicts && int(r) < numReasons && int(dir) < 2 {
		return pcapComments[v][r][dir][i]
	}
	if injected {
		return "injected " + v.String() + " " + r.String()
	}
	return v.String() + " " + r.String() + " " + dir.String()
}

// inject writes a packet the gateway originates to its side, with no offload
// header: its checksums are complete. one is the caller's scratch batch.
func (g *Gateway) inject(one *[1][]byte, inj policy.Injected, now time.Time, pc *Pcap, comment string) {
	dev, st := g.devs[inj.To], &g.stats[inj.To]
	// Record before sending: once the packet is out, its receiver may react (and, say,
	// stop the recording) before a record written afterwards would land.
	if pc != nil {
		pc.Write(inj.To, now, inj.Packet, comment)
	}
	one[0] = inj.Packet
	g.wmu[inj.To].Lock()
	_, err := dev.Write(one[:], 0)
	g.wmu[inj.To].Unlock()
	one[0] = nil
	if err != nil {
		st.writeErrs.Add(1)
		return
	}
	st.txPackets.Add(1)
	st.txBytes.Add(uint64(len(inj.Packet)))
	st.injected.Add(1)
}

// tick sweeps expiries on the live clock and sends what reset_on_expire asks for.
func (g *Gateway) tick(ctx context.Context) {
	t := time.NewTicker(g.cfg.TickInterval)
	defer t.Stop()
	var out []policy.Injected
	var one [1][]byte
	flushEvery := int(time.Second / g.cfg.TickInterval)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := g.cfg.Now()
		out = g.cfg.Engine.Tick(now, out[:0])
		pc := g.pcap.Load()
		for _, inj := range out {
			g.inject(&one, inj, now, pc, "injected reset reset_on_expire")
		}
		if pc != nil && i%max(flushEvery, 1) == 0 {
			pc.Flush()
		}
	}
}

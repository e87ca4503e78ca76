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
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/control"
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
	wmu  [2]sync.Mutex
	pcap atomic.Pointer[recording]
	// pcmu serialises the starts and ends of recordings and guards pcapFailed.
	pcmu       sync.Mutex
	pcapFailed *control.PcapStatus // the last recording a write error stopped, until the next starts
	pcapErrors atomic.Uint64
	stats      [2]sideStats // indexed by the side a packet arrives on
	start      time.Time

	infoMu sync.Mutex  // guards info; see labinfo.go
	info   control.Lab // the lab the gateway runs in, as StartLab described it

	metricsOnce sync.Once
	metrics     http.Handler // GET /metrics, built once
	notices     noticeHub    // the gateway's own events (notice.go)
}

type sideStats struct {
	rxPackets, rxBytes  atomic.Uint64
	txPackets, txBytes  atomic.Uint64
	injected, writeErrs atomic.Uint64
	readErrs            atomic.Uint64
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

// Stats returns the per-side device counters, indexed by policy.Side.
func (g *Gateway) Stats() [2]control.SideStats {
	var out [2]control.SideStats
	for i := range g.stats {
		s := &g.stats[i]
		out[i] = control.SideStats{
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
	g.pcmu.Lock()
	if p := g.pcap.Swap(nil); p != nil {
		g.endPcapLocked(p)
	}
	g.pcmu.Unlock()
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
			rec := pc // the recording this packet goes to: nil if its filter leaves it out
			if rec != nil && !rec.keeps(res) {
				rec = nil
			}
			if rec != nil {
				err := rec.Write(side, now, orig, arrival(res, dir))
				if err == nil && res.Verdict == policy.Forward && res.Translated {
					err = rec.Write(1-side, now, res.Packet, translated)
				}
				if err != nil {
					g.pcapWriteFailed(rec)
					pc, rec = nil, nil
				}
			}
			for _, inj := range res.Inject {
				if rec == nil {
					g.inject(&one, inj, now, nil, injected(res))
				} else if rec = g.inject(&one, inj, now, rec, injected(res)); rec == nil {
					pc = nil // a write error stopped the recording
				}
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

// inject writes a packet the gateway originates to its side, with no offload
// header: its checksums are complete. one is the caller's scratch batch. It records
// the packet to pc (if not nil) with comment c, and returns pc, or nil if that write
// stopped the recording.
func (g *Gateway) inject(one *[1][]byte, inj policy.Injected, now time.Time, pc *recording, c capture.Comment) *recording {
	dev, st := g.devs[inj.To], &g.stats[inj.To]
	// Record before sending: once the packet is out, its receiver may react (and, say,
	// stop the recording) before a record written afterwards would land.
	if pc != nil && pc.Write(inj.To, now, inj.Packet, c) != nil {
		g.pcapWriteFailed(pc)
		pc = nil
	}
	one[0] = inj.Packet
	g.wmu[inj.To].Lock()
	_, err := dev.Write(one[:], 0)
	g.wmu[inj.To].Unlock()
	one[0] = nil
	if err != nil {
		st.writeErrs.Add(1)
		return pc
	}
	st.txPackets.Add(1)
	st.txBytes.Add(uint64(len(inj.Packet)))
	st.injected.Add(1)
	return pc
}

// injectExpiryResets sends the RSTs reset_on_expire asks for at an expiry (Tick's,
// or an operator's Expire), recording those the recording's filter keeps, and
// returns the recording, nil if none is running or a write error stopped it.
func (g *Gateway) injectExpiryResets(one *[1][]byte, rsts []policy.Injected, now time.Time) *recording {
	pc := g.pcap.Load()
	for _, inj := range rsts {
		if pc != nil && !pc.keepsPacket(inj.Packet) {
			g.inject(one, inj, now, nil, expiryReset)
			continue
		}
		pc = g.inject(one, inj, now, pc, expiryReset)
	}
	return pc
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
		pc := g.injectExpiryResets(&one, out, now)
		if pc != nil && i%max(flushEvery, 1) == 0 && pc.Flush() != nil {
			g.pcapWriteFailed(pc)
		}
	}
}

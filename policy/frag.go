package policy

import (
	"net/netip"
	"time"

	"github.com/idlegate/idlegate/packet"
)

// Fragments are not reassembled. The first fragment carries the ports, is tracked like
// any packet, and its verdict (and address translation) is remembered for the
// datagram (source, destination, identification, protocol) for fragTimeout; later
// fragments follow that verdict. A later fragment whose first fragment was not seen
// or not forwarded is dropped: a stateful firewall cannot know its connection.
const (
	fragTimeout = 30 * time.Second // Linux net.ipv4.ipfrag_time
	maxFrags    = 1024             // datagrams remembered at once; more are dropped
)

type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8
}

type fragEntry struct {
	forward  bool
	src, dst netip.Addr // addresses after translation
	expires  time.Time
}

// fragTable is guarded by Engine.mu.
type fragTable struct{ m map[fragKey]fragEntry }

func newFragTable() fragTable { return fragTable{m: map[fragKey]fragEntry{}} }

// record remembers the verdict of a first fragment seen with wire addresses src, dst.
func (f *fragTable) record(src, dst netip.Addr, p *packet.Info, forward bool, now time.Time) {
	if len(f.m) >= maxFrags {
		f.expire(now)
		if len(f.m) >= maxFrags {
			return
		}
	}
	f.m[fragKey{src, dst, p.FragID, p.Proto}] = fragEntry{forward, p.Src, p.Dst, now.Add(fragTimeout)}
}

func (f *fragTable) lookup(p *packet.Info, now time.Time) (fragEntry, bool) {
	e, ok := f.m[fragKey{p.Src, p.Dst, p.FragID, p.Proto}]
	if !ok || !now.Before(e.expires) {
		return fragEntry{}, false
	}
	return e, true
}

func (f *fragTable) expire(now time.Time) {
	for k, e := range f.m {
		if !now.Before(e.expires) {
			delete(f.m, k)
		}
	}
}

func (f *fragTable) clear() { clear(f.m) }

// laterFragmentLocked follows the verdict of the fragment's first fragment: forwarded
// (with the same address translation) if that was, dropped otherwise, including when
// the first fragment has not been seen. Fragments are not reassembled.
func (e *Engine) laterFragmentLocked(pkt []byte, p *packet.Info, now time.Time, res *Result) {
	f, ok := e.frags.lookup(p, now)
	if !ok || !f.forward {
		res.Verdict, res.Reason = Drop, ReasonFragment
		return
	}
	translated := f.src != p.Src || f.dst != p.Dst
	if f.src != p.Src && !packet.SetSource(pkt, p, f.src, 0) ||
		f.dst != p.Dst && !packet.SetDestination(pkt, p, f.dst, 0) {
		res.Verdict, res.Reason = Drop, ReasonFragment
		return
	}
	res.Translated = translated
	res.Verdict, res.Reason = Forward, ReasonTracked
}

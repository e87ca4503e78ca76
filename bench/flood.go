package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/lab"
)

// A flood flow is one UDP datagram from a source address and port of its own
// to one server port: flow i leaves from floodSource(i / portsPerSource) port
// firstFloodPort + i % portsPerSource.
const (
	firstFloodPort = 1024
	portsPerSource = 65536 - firstFloodPort
	// FloodPort is the server's port for flood datagrams; a socket that never
	// reads is bound there so the server answers no ICMP port unreachable.
	FloodPort = 9
	// floodPayload makes each datagram a minimum Ethernet frame's worth.
	floodPayload = 18
	floodBatch   = 64 // datagrams per sendmmsg
)

// FloodSources returns the client addresses a flood of flows flows needs, with
// half as much again for datagrams lost on the way: 198.18.0.10 upward, at
// most 198.18.0.250.
func FloodSources(flows int) []netip.Addr {
	n := (flows + flows/2 + portsPerSource - 1) / portsPerSource
	n = max(1, min(n, 241))
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})
	}
	return addrs
}

// AddAddrs adds addrs, each as /24, to link in the named namespace.
func AddAddrs(namespace, link string, addrs []netip.Addr) error {
	ns, err := lab.OpenNetns(namespace)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", link, namespace, err)
	}
	for _, a := range addrs {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(a, 24))}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("address %s on %s in %s: %w", a, link, namespace, err)
		}
	}
	return nil
}

// FloodConfig is one flow flood.
type FloodConfig struct {
	ClientNS string         // where the datagrams are sent from
	Sources  []netip.Addr   // source addresses, present on the client's link (AddAddrs)
	Dst      netip.AddrPort // the server's flood port
	// Target is how many new entries the flood creates before it stops.
	Target int
	// Count reads the number of entries in the table under test.
	Count func() (int, error)
	// Window bounds the datagrams sent but not yet seen as entries; 0 means 512.
	// It keeps the flood from measuring only how fast queues overflow.
	Window int
	// Limit bounds the flood's duration; 0 means one minute.
	Limit time.Duration
}

// FloodResult is what a flood did.
type FloodResult struct {
	Created int           // new entries counted
	Sent    int           // datagrams sent
	Elapsed time.Duration // from the first datagram to the Target-th entry (or to the stop)
	Full    bool          // Target was reached
}

// PerSec is new entries per second.
func (r FloodResult) PerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Created) / r.Elapsed.Seconds()
}

// stallTimeout is how long the count may stand still with datagrams in flight
// before they are taken as lost (a full TUN ring or backlog drops silently).
const stallTimeout = 50 * time.Millisecond

// Flood sends one datagram per new flow from a raw socket in the client
// namespace (IP_HDRINCL, sendmmsg), each from a new source address and port,
// until the table under test holds Target new entries, the flows run out, Limit
// passes or ctx ends.
func Flood(ctx context.Context, cfg FloodConfig) (FloodResult, error) {
	if cfg.Window <= 0 {
		cfg.Window = 512
	}
	if cfg.Limit <= 0 {
		cfg.Limit = time.Minute
	}
	var res FloodResult
	space := len(cfg.Sources) * portsPerSource
	if cfg.Target <= 0 || !cfg.Dst.Addr().Is4() || len(cfg.Sources) == 0 {
		return res, fmt.Errorf("flood: nothing to do (target %d, %d sources, destination %s)", cfg.Target, len(cfg.Sources), cfg.Dst)
	}
	var fd int
	if err := lab.Do(cfg.ClientNS, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		return unix.Connect(fd, &unix.SockaddrInet4{Addr: cfg.Dst.Addr().As4()})
	}); err != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return res, fmt.Errorf("flood: raw socket in %s: %w", cfg.ClientNS, err)
	}
	defer unix.Close(fd)

	const size = 20 + 8 + floodPayload
	var (
		bufs [floodBatch][size]byte
		iovs [floodBatch]unix.Iovec
		msgs [floodBatch]unix.Mmsghdr
	)
	dst := cfg.Dst.Addr().As4()
	for i := range bufs {
		b := bufs[i][:]
		b[0] = 0x45                             // IPv4, 20-byte header
		binary.BigEndian.PutUint16(b[2:], size) // total length (the kernel checks it)
		b[8], b[9] = 64, unix.IPPROTO_UDP       // TTL, protocol; the kernel fills id and checksum
		copy(b[16:20], dst[:])                  // destination
		binary.BigEndian.PutUint16(b[22:], cfg.Dst.Port())
		binary.BigEndian.PutUint16(b[24:], 8+floodPayload) // UDP length; checksum 0: none (IPv4)
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(size)
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.Iovlen = 1
	}

	base, err := cfg.Count()
	if err != nil {
		return res, err
	}
	start := time.Now()
	lastCreated := 0
	progressAt := start // when the count last grew
	stallAt := start    // progressAt, or when in-flight datagrams were last taken as lost
	lost := 0           // datagrams taken as lost after a stall
	next := 0           // next flow index
	for {
		n, err := cfg.Count()
		if err != nil {
			return res, err
		}
		now := time.Now()
		res.Created = n - base
		if res.Created >= cfg.Target {
			res.Created, res.Full = cfg.Target, true
			res.Elapsed = now.Sub(start)
			return res, nil
		}
		if res.Created != lastCreated {
			lastCreated, progressAt, stallAt = res.Created, now, now
		}
		if now.Sub(start) > cfg.Limit || ctx.Err() != nil || (next == space && now.Sub(progressAt) > stallTimeout) {
			res.Elapsed = progressAt.Sub(start)
			return res, ctx.Err()
		}
		inflight := res.Sent - res.Created - lost
		if inflight >= cfg.Window || next == space {
			if now.Sub(stallAt) > stallTimeout {
				lost = res.Sent - res.Created
				stallAt = now
				continue
			}
			time.Sleep(20 * time.Microsecond)
			continue
		}
		k := min(floodBatch, cfg.Window-inflight, space-next)
		for i := range k {
			f := next + i
			src := cfg.Sources[f/portsPerSource].As4()
			b := bufs[i][:]
			copy(b[12:16], src[:])
			binary.BigEndian.PutUint16(b[20:], uint16(firstFloodPort+f%portsPerSource))
		}
		sent, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(k), unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 {
			if errno == unix.EAGAIN || errno == unix.ENOBUFS {
				time.Sleep(20 * time.Microsecond) // a full send buffer or device queue: wait for the gateway
				continue
			}
			return res, fmt.Errorf("flood: sendmmsg: %w", errno)
		}
		next += int(sent)
		res.Sent += int(sent)
	}
}

// FloodSink binds a UDP socket that never reads on the flood port in the named
// namespace, so flood datagrams are dropped quietly when its buffer is full.
func FloodSink(namespace string, addr netip.Addr) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := lab.Do(namespace, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, FloodPort)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("flood sink in %s: %w", namespace, err)
	}
	return c, nil
}

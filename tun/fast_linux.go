package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/idlegate/idlegate/packet"
	"golang.org/x/sys/unix"
)

// Offload flags for TUNSETOFFLOAD (include/uapi/linux/if_tun.h): what the
// kernel may hand to the device's reader.
const (
	tunFCsum = 0x01 // partial checksums (CHECKSUM_PARTIAL)
	tunFTSO4 = 0x02 // TCP segmentation offload, IPv4
	tunFTSO6 = 0x04 // TCP segmentation offload, IPv6
	tunFUSO4 = 0x20 // UDP segmentation offload, IPv4 (Linux 6.2)
	tunFUSO6 = 0x40 // UDP segmentation offload, IPv6 (Linux 6.2)

	tcpOffloads = tunFCsum | tunFTSO4 | tunFTSO6
	udpOffloads = tunFUSO4 | tunFUSO6
)

const (
	// DefaultFastBatch is the largest batch a FastDevice Read returns unless
	// FastConfig says otherwise.
	DefaultFastBatch = 32
	// maxPacket is the largest IP packet, a GSO super-packet included: Linux
	// caps a TUN's GSO size at 65536 bytes of sk_buff, 65535 of IP.
	maxPacket = 65535
)

// Wait says how a FastDevice Read waits when no packet is queued.
type Wait uint8

const (
	// WaitPoller parks the reading goroutine in the Go netpoller (epoll).
	WaitPoller Wait = iota
	// WaitThread blocks the reading goroutine's thread in poll(2) on the TUN
	// descriptor and an eventfd that Close signals. The caller may lock its
	// goroutine to the thread (runtime.LockOSThread; the gateway does). On the
	// 2-core machine it measured slower than WaitPoller: TCP request/response
	// at 0.6x the round trips (BENCHMARKS.md, "Data path"), bulk alike.
	WaitThread
)

// FastConfig tunes OpenFast. The zero value is the default.
type FastConfig struct {
	MTU   int  // link MTU; 0 means DefaultMTU
	Batch int  // largest Read batch; 0 means DefaultFastBatch
	Wait  Wait // how an idle Read waits
	// NoOffload opens the device with IFF_VNET_HDR but asks the kernel for no
	// offloads: every packet arrives whole, at most MTU long, with its checksum
	// complete. For measurements.
	NoOffload bool
}

// FastDevice is a Linux TUN device opened with IFF_VNET_HDR and segmentation
// offload (TUNSETOFFLOAD: partial checksums, TSO for IPv4 and IPv6, USO where
// the kernel has it). The kernel hands it TCP and UDP super-packets of up to
// 64 KiB that a Read returns as one packet, so one system call moves what
// would take some forty at MTU 1500.
//
// With an offset of at least Headroom, Read leaves each packet's
// virtio_net_hdr in the Headroom bytes before it and Write sends the header it
// finds there, so a super-packet read from one FastDevice is written whole to
// another and the receiving kernel takes it as one (as from GRO). A packet
// with a partial checksum is returned with the field in the form
// packet.HidePartialChecksum gives, which NAT rewrites keep right, and Write
// turns it back before sending. Write also sends consecutive small UDP
// datagrams of one flow as one USO super-packet (coalesceUDP), as the
// kernel's UDP GRO would. A packet whose offload this device
// cannot pass (an unexpected layout, an ECN-marked or UFO super-packet) is
// finished in software: its checksum completed or its segments cut
// (packet.Segment), each then with a zero header. A Read or Write with an
// offset below Headroom moves plain packets only: Read finishes every packet
// in software (segments of a super-packet that do not fit the batch are kept
// for the next Read) and Write sends each packet with a zero header.
//
// Read reads until the queue is empty or the batch is full: TUN returns one
// packet per read(2), so a batch is one system call per packet but one
// wake-up per batch. Read and Write allocate nothing.
//
// Read and Write may be called concurrently with each other, each from one
// goroutine at a time; Close from anywhere.
type FastDevice struct {
	file *os.File
	rc   syscall.RawConn
	name string // at open time
	mtu  int
	cfg  FastConfig
	offl int // TUN_F_* granted
	efd  int // eventfd Close signals (WaitThread), -1 otherwise

	// rmu is held by Read for its whole call: Read is single-reader, and Close
	// waits for it before closing efd.
	rmu     sync.Mutex
	scratch []byte // a packet read without headroom, header included
	// A super-packet being cut in software; segments left are returned first.
	seg     []byte
	segGSO  packet.GSO
	segNext int
	segN    int

	wmu  sync.Mutex // serialises Write; guards whdr and wr
	whdr [VirtioNetHdrLen]byte
	wr   writeState

	rd      readState // guarded by rmu
	fillFn  func(uintptr) bool
	waitFn  func(uintptr)
	writeFn func(uintptr)

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	stats fastCounters
}

type fastCounters struct {
	passed, partial, completed, segmented, segments, dropped atomic.Uint64
	coalesced, usoWrites                                     atomic.Uint64
}

// FastStats counts what a FastDevice's Reads saw and its Writes made, since
// it was opened.
type FastStats struct {
	SuperPackets uint64 // GSO super-packets passed through whole
	Partial      uint64 // packets passed with a partial checksum (super-packets included)
	Completed    uint64 // partial checksums finished in software
	Segmented    uint64 // super-packets cut in software
	Segments     uint64 // segments those gave
	Dropped      uint64 // packets whose header did not fit them (never forwarded)
	Coalesced    uint64 // UDP datagrams Write sent inside USO super-packets
	USOWrites    uint64 // USO super-packets Write made of them
}

var _ Device = (*FastDevice)(nil)

// OpenFast creates the TUN device name (IFF_TUN|IFF_NO_PI|IFF_VNET_HDR, not
// persistent) in the calling thread's network namespace, turns on offloads
// and sets its MTU. Like OpenWater, the link stays down and an empty name
// lets the kernel pick one; errors are ErrNoTUN, ErrNotPermitted or an error
// naming what failed.
func OpenFast(name string, cfg FastConfig) (*FastDevice, error) {
	var err error
	if cfg.MTU, err = checkOpen(name, cfg.MTU); err != nil {
		return nil, err
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultFastBatch
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, translateOpenError(name, &os.PathError{Op: "open", Path: "/dev/net/tun", Err: err})
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open tun %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, translateOpenError(name, os.NewSyscallError("ioctl TUNSETIFF", err))
	}
	d := &FastDevice{name: ifr.Name(), mtu: cfg.MTU, cfg: cfg, efd: -1}
	d.fillFn, d.waitFn, d.writeFn = d.fill, d.waitThread, d.writeAll
	if !cfg.NoOffload {
		// USO came with Linux 6.2; without it the kernel segments UDP itself.
		for _, o := range []int{tcpOffloads | udpOffloads, tcpOffloads} {
			if err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, o); err == nil {
				d.offl = o
				break
			}
		}
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("open tun %q: TUNSETOFFLOAD: %w", name, err)
		}
	}
	if cfg.Wait == WaitThread {
		// The file is made from a blocking descriptor so that the netpoller
		// never watches it; reads are made non-blocking afterwards and wait in
		// poll(2).
		if d.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("open tun %q: eventfd: %w", name, err)
		}
		d.file = os.NewFile(uintptr(fd), "/dev/net/tun")
		err = unix.SetNonblock(fd, true)
	} else {
		if err = unix.SetNonblock(fd, true); err == nil {
			d.file = os.NewFile(uintptr(fd), "/dev/net/tun")
		}
	}
	if err == nil {
		d.rc, err = d.file.SyscallConn()
	}
	if err != nil {
		if d.file == nil {
			unix.Close(fd)
		}
		d.Close()
		return nil, fmt.Errorf("open tun %q: %w", name, err)
	}
	if err := setMTU(d.name, cfg.MTU); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// FastAvailable reports whether OpenFast can work here: /dev/net/tun opens
// and takes IFF_VNET_HDR with TCP offloads. It creates no link.
func FastAvailable() error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return translateOpenError("", &os.PathError{Op: "open", Path: "/dev/net/tun", Err: err})
	}
	defer unix.Close(fd)
	var feat uint32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNGETFEATURES, uintptr(unsafe.Pointer(&feat))); e != 0 {
		return fmt.Errorf("TUNGETFEATURES: %w", e)
	}
	if feat&unix.IFF_VNET_HDR == 0 {
		return errors.New("this kernel's TUN driver has no IFF_VNET_HDR")
	}
	return nil
}

// PassesOffloads is true: see PassesOffloads.
func (d *FastDevice) PassesOffloads() bool { return true }

// Offloads reports whether the kernel hands the device TCP (TSO) and UDP (USO)
// super-packets.
func (d *FastDevice) Offloads() (tso, uso bool) {
	return d.offl&tunFTSO4 != 0, d.offl&tunFUSO4 != 0
}

// Stats returns the device's counters.
func (d *FastDevice) Stats() FastStats {
	s := &d.stats
	return FastStats{
		SuperPackets: s.passed.Load(), Partial: s.partial.Load(), Completed: s.completed.Load(),
		Segmented: s.segmented.Load(), Segments: s.segments.Load(), Dropped: s.dropped.Load(),
		Coalesced: s.coalesced.Load(), USOWrites: s.usoWrites.Load(),
	}
}

// Waits reports how an idle Read waits.
func (d *FastDevice) Waits() Wait { return d.cfg.Wait }

// BatchSize is FastConfig.Batch.
func (d *FastDevice) BatchSize() int { return d.cfg.Batch }

// MTU is the link MTU set at open time.
func (d *FastDevice) MTU() int { return d.mtu }

// Name asks the kernel (TUNGETIFF), so that a rename shows; after Close it
// returns the name at open time.
func (d *FastDevice) Name() string { return kernelName(d.rc, d.name) }

// Close closes the descriptor and wakes a blocked Read, which returns
// os.ErrClosed.
func (d *FastDevice) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		if d.efd >= 0 {
			var one [8]byte
			one[0] = 1
			unix.Write(d.efd, one[:])
		}
		if d.file != nil {
			if err := d.file.Close(); err != nil {
				d.closeErr = fmt.Errorf("close tun %q: %w", d.name, err)
			}
		}
		if d.efd >= 0 {
			d.rmu.Lock()
			unix.Close(d.efd)
			d.efd = -1
			d.rmu.Unlock()
		}
	})
	return d.closeErr
}

// Read reads up to min(len(bufs), BatchSize()) packets: it waits for the first
// and takes what else is queued. See FastDevice for what offset changes.
func (d *FastDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.closed.Load() {
		return 0, os.ErrClosed
	}
	limit := min(len(bufs), len(sizes), d.cfg.Batch)
	if limit == 0 {
		return 0, nil
	}
	bufs, sizes = bufs[:limit], sizes[:limit]
	n := d.nextSegments(bufs, sizes, offset)
	if n == limit || d.segNext < d.segN {
		return n, nil
	}
	d.rd = readState{bufs: bufs, sizes: sizes, offset: offset, n: n, limit: limit}
	var err error
	if d.cfg.Wait == WaitThread {
		err = d.rc.Control(d.waitFn)
	} else {
		err = d.rc.Read(d.fillFn)
	}
	n, rerr := d.rd.n, d.rd.err
	d.rd = readState{}
	if err == nil {
		err = rerr
	}
	if err != nil && n == 0 {
		if d.closed.Load() || isClosed(err) {
			return 0, os.ErrClosed
		}
		return 0, fmt.Errorf("read tun %q: %w", d.name, err)
	}
	return n, nil
}

// readState is what the RawConn callbacks of one Read work on. It lives in the
// device (guarded by rmu) and the callbacks are method values made at open, so
// that a Read allocates nothing.
type readState struct {
	bufs     [][]byte
	sizes    []int
	offset   int
	n, limit int
	err      error
}

// fill reads packets into d.rd until the batch is full, a software cut leaves
// segments over, or the queue is empty; it reports whether the Read is done
// (false: nothing read yet, wait).
func (d *FastDevice) fill(fd uintptr) bool {
	r := &d.rd
	for r.n < r.limit && d.segNext == d.segN {
		k, err := d.readOne(int(fd), r.bufs[r.n:], r.sizes[r.n:], r.offset)
		switch err {
		case nil:
			r.n += k
		case unix.EINTR:
		case unix.EAGAIN:
			return r.n > 0
		default:
			r.err = err
			return true
		}
	}
	return true
}

// waitThread runs fill until it is done, waiting in poll(2) on the TUN
// descriptor and the close eventfd in between (WaitThread).
func (d *FastDevice) waitThread(fd uintptr) {
	pfd := [2]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(d.efd), Events: unix.POLLIN}}
	for !d.fill(fd) {
		if d.closed.Load() {
			d.rd.err = os.ErrClosed
			return
		}
		if _, err := unix.Poll(pfd[:], -1); err != nil && err != unix.EINTR {
			d.rd.err = err
			return
		}
		if pfd[1].Revents != 0 {
			d.rd.err = os.ErrClosed
			return
		}
	}
}

// nextSegments copies segments left of a super-packet being cut in software.
func (d *FastDevice) nextSegments(bufs [][]byte, sizes []int, offset int) int {
	n := 0
	for n < len(bufs) && d.segNext < d.segN {
		if offset >= VirtioNetHdrLen {
			clear(bufs[n][offset-VirtioNetHdrLen : offset])
		}
		m, err := packet.Segment(bufs[n][offset:], d.seg, d.segGSO, d.segNext)
		d.segNext++
		if err != nil {
			d.stats.dropped.Add(1)
			continue
		}
		sizes[n] = m
		n++
	}
	return n
}

// readOne reads one packet from the kernel into bufs[0] (and, when it has to
// be cut, segments into the following buffers) and returns how many packets it
// placed.
func (d *FastDevice) readOne(fd int, bufs [][]byte, sizes []int, offset int) (int, error) {
	headroom := offset >= VirtioNetHdrLen
	var in []byte
	if headroom {
		in = bufs[0][offset-VirtioNetHdrLen:]
	} else {
		if d.scratch == nil {
			d.scratch = make([]byte, VirtioNetHdrLen+maxPacket)
		}
		in = d.scratch
	}
	m, err := unix.Read(fd, in)
	if err != nil {
		return 0, err
	}
	var h VirtioNetHdr
	if m <= VirtioNetHdrLen || h.Decode(in) != nil {
		d.stats.dropped.Add(1)
		return 0, nil
	}
	pkt := in[VirtioNetHdrLen:m]
	switch act, g := classify(&h, pkt); {
	case act == actPass && headroom:
		if h.Flags&VirtioNetHdrFNeedsCsum != 0 {
			packet.HidePartialChecksum(pkt, int(h.CsumStart), int(h.CsumOffset))
			d.stats.partial.Add(1)
		}
		if h.GSOType != VirtioNetHdrGSONone {
			d.stats.passed.Add(1)
		}
		sizes[0] = len(pkt)
		return 1, nil
	case act == actPass && h.GSOType == VirtioNetHdrGSONone, act == actComplete:
		if h.Flags&VirtioNetHdrFNeedsCsum != 0 {
			packet.CompleteChecksum(pkt, int(h.CsumStart), int(h.CsumOffset))
			d.stats.completed.Add(1)
		}
		if headroom {
			clear(in[:VirtioNetHdrLen])
		}
		sizes[0] = copy(bufs[0][offset:], pkt)
		return 1, nil
	case act == actPass, act == actSegment:
		if d.seg == nil {
			d.seg = make([]byte, maxPacket)
		}
		n, err := packet.Segments(pkt, g)
		if err != nil {
			d.stats.dropped.Add(1)
			return 0, nil
		}
		d.seg = d.seg[:copy(d.seg[:cap(d.seg)], pkt)]
		d.segGSO, d.segNext, d.segN = g, 0, n
		d.stats.segmented.Add(1)
		d.stats.segments.Add(uint64(n))
		return d.nextSegments(bufs, sizes, offset), nil
	}
	d.stats.dropped.Add(1)
	return 0, nil
}

type action uint8

const (
	actPass     action = iota // pass through as it is
	actComplete               // finish the partial checksum, send plain
	actSegment                // cut in software
	actDrop                   // cannot be made right
)

// classify decides what a packet read with header h needs, and for a
// super-packet describes its segmentation.
func classify(h *VirtioNetHdr, pkt []byte) (action, packet.GSO) {
	start, off := int(h.CsumStart), int(h.CsumOffset)
	if h.GSOType == VirtioNetHdrGSONone {
		if h.Flags&VirtioNetHdrFNeedsCsum == 0 {
			return actPass, packet.GSO{}
		}
		if start+off+2 > len(pkt) {
			return actDrop, packet.GSO{}
		}
		if _, ok := packet.PartialChecksumProto(pkt, start, off); ok {
			return actPass, packet.GSO{}
		}
		return actComplete, packet.GSO{}
	}
	g := packet.GSO{L4Off: start, Size: int(h.GSOSize)}
	var v uint8
	switch h.GSOType &^ VirtioNetHdrGSOECN {
	case VirtioNetHdrGSOTCPv4:
		g.Proto, v = packet.ProtoTCP, 4
	case VirtioNetHdrGSOTCPv6:
		g.Proto, v = packet.ProtoTCP, 6
	case VirtioNetHdrGSOUDPL4:
		g.Proto = packet.ProtoUDP
	default:
		return actDrop, g
	}
	// The kernel always asks for the checksum of a super-packet; a GSO type
	// of the other IP version, or an IP length other than the packet's (one
	// cut short by a small buffer), is never passed on.
	if h.Flags&VirtioNetHdrFNeedsCsum == 0 || len(pkt) == 0 || v != 0 && packet.IPVersion(pkt) != v || packet.IPLen(pkt) != len(pkt) {
		return actDrop, g
	}
	if n, err := packet.Segments(pkt, g); err != nil || n < 1 {
		return actDrop, g
	}
	if proto, ok := packet.PartialChecksumProto(pkt, start, off); !ok || proto != g.Proto || h.GSOType&VirtioNetHdrGSOECN != 0 {
		return actSegment, g
	}
	return actPass, g
}

// Write writes the packets in order; see FastDevice for what offset changes.
// A packet with a partial checksum in hidden form is sent with it revealed.
// With headroom, consecutive UDP datagrams of one flow that the kernel handed
// over with partial checksums are sent as one USO super-packet (see
// coalesceUDP): the receiving kernel cuts it into the same datagrams. Write
// may change the bytes of the buffers (and past their length, up to their
// capacity); it does not keep them.
func (d *FastDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.closed.Load() {
		return 0, os.ErrClosed
	}
	d.wr = writeState{bufs: bufs, offset: offset}
	err := d.rc.Control(d.writeFn)
	i, werr := d.wr.i, d.wr.err
	d.wr = writeState{}
	if err == nil {
		err = werr
	}
	if err != nil {
		if d.closed.Load() || isClosed(err) {
			return i, os.ErrClosed
		}
		return i, fmt.Errorf("write tun %q: %w", d.name, err)
	}
	return len(bufs), nil
}

// writeState is what the RawConn callback of one Write works on (see
// readState); guarded by wmu.
type writeState struct {
	bufs   [][]byte
	offset int
	i      int // the next packet to write
	err    error
}

// writeAll writes d.wr's packets, coalescing UDP runs when it may.
func (d *FastDevice) writeAll(fd uintptr) {
	w := &d.wr
	for w.i < len(w.bufs) {
		b, next := w.bufs[w.i], w.i+1
		if w.offset >= VirtioNetHdrLen && d.offl&tunFUSO4 != 0 {
			b, next = d.coalesceUDP(w.bufs, w.i, w.offset)
		}
		if w.err = d.writeOne(int(fd), b, w.offset); w.err != nil {
			return
		}
		w.i = next
	}
}

// coalesceUDP looks at bufs[i:] for a run of UDP datagrams that may leave as
// one USO super-packet, like the kernel's own UDP GRO: datagrams of one flow
// that the kernel handed over with a partial checksum and nothing else to
// offload, which packet.UDPCoalescer accepts (it holds the rules). It appends
// the payloads of the run to the first buffer, within its capacity, makes it
// the super-packet, writes its virtio_net_hdr, and returns it with the index
// after the run. Without a run it returns bufs[i] and i+1.
func (d *FastDevice) coalesceUDP(bufs [][]byte, i, offset int) ([]byte, int) {
	first := bufs[i]
	if i+1 == len(bufs) {
		return first, i + 1
	}
	var c packet.UDPCoalescer
	if start, off, ok := partialOnly(first, offset); !ok || !c.Begin(first[offset:], start, off) {
		return first, i + 1
	}
	j := i + 1
	for ; j < len(bufs); j++ {
		if start, off, ok := partialOnly(bufs[j], offset); !ok || !c.Append(bufs[j][offset:], start, off) {
			break
		}
	}
	n := c.Len()
	if n < 2 {
		return first, i + 1
	}
	pkt, g := c.Finish()
	h := VirtioNetHdr{
		Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOUDPL4,
		HdrLen: uint16(g.L4Off + packet.UDPHeaderLen), GSOSize: uint16(g.Size),
		CsumStart: uint16(g.L4Off), CsumOffset: uint16(g.CsumOffset()),
	}
	out := first[:offset+len(pkt)]
	h.Encode(out[offset-VirtioNetHdrLen:])
	d.stats.coalesced.Add(uint64(n))
	d.stats.usoWrites.Add(1)
	return out, j
}

// partialOnly reports whether the virtio_net_hdr in the Headroom before
// b[offset:] asks for a partial checksum and no segmentation, and where that
// checksum lies.
func partialOnly(b []byte, offset int) (start, off int, ok bool) {
	var h VirtioNetHdr
	if h.Decode(b[offset-VirtioNetHdrLen:]) != nil {
		return 0, 0, false
	}
	ok = h.Flags == VirtioNetHdrFNeedsCsum && h.GSOType == VirtioNetHdrGSONone
	return int(h.CsumStart), int(h.CsumOffset), ok
}

func (d *FastDevice) writeOne(fd int, b []byte, offset int) error {
	var p []byte // the bytes to write: header and packet
	var h VirtioNetHdr
	if offset >= VirtioNetHdrLen {
		p = b[offset-VirtioNetHdrLen:]
		if p[0]&VirtioNetHdrFNeedsCsum != 0 {
			// Sent revealed, handed back as given.
			h.Decode(p)
			packet.RevealPartialChecksum(p[VirtioNetHdrLen:], int(h.CsumStart), int(h.CsumOffset))
			defer packet.HidePartialChecksum(p[VirtioNetHdrLen:], int(h.CsumStart), int(h.CsumOffset))
		}
	}
	for {
		var err error
		if p != nil {
			_, err = unix.Write(fd, p)
		} else {
			_, err = unix.Writev(fd, [][]byte{d.whdr[:], b[offset:]})
		}
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// A TUN's send buffer is INT_MAX, so this is not expected; wait
			// for room all the same.
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			unix.Poll(pfd, 10)
			continue
		}
		return err
	}
}

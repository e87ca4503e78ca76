// Package tun moves IP packets between the gateway and the kernel.
//
// A [Device] reads and writes batches of raw IP packets (no packet-information
// header) into buffers its caller owns. Three implementations live here:
//
//   - [OpenFast]: the Linux fast path: IFF_VNET_HDR with TCP/UDP segmentation
//     offload (64 KiB super-packets pass through with their virtio_net_hdr in
//     [Headroom] bytes before each packet), reads drained in batches, no
//     allocation per packet. Chosen wherever [FastAvailable] says it works.
//   - [OpenWater]: a Linux TUN device opened through github.com/songgao/water,
//     one plain packet per read: the portable default.
//   - [ChannelDevice]: an in-memory device backed by channels, so the whole
//     gateway runs in a unit test without privileges (wireguard-go tun/tuntest
//     style).
//
// The netlink helpers [MoveToNamespace] and [Configure] place a TUN link in a
// network namespace and give it addresses and routes without shelling out to
// ip(8). Everything except [ChannelDevice] needs root or CAP_NET_ADMIN.
package tun

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Device is a source and sink of IP packets.
//
// Read and Write may be called concurrently with each other; each of them is
// meant to be called from one goroutine at a time. Close may be called from any
// goroutine, at any time, any number of times.
type Device interface {
	// Read reads up to len(bufs) packets, at most BatchSize. Packet i is copied
	// to bufs[i][offset:] and its length stored in sizes[i]; len(sizes) must be
	// at least len(bufs). A packet longer than its buffer is truncated, as the
	// kernel does. Read blocks until at least one packet is available and
	// returns the count. After Close it returns an error matching os.ErrClosed
	// (or io.EOF when an in-memory device's input was closed).
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write writes the packets bufs[i][offset:] in order and returns how many
	// were written; each slice must end where its packet ends. On error n is the index of the packet that failed; later
	// packets were not attempted. Write does not keep the buffers.
	Write(bufs [][]byte, offset int) (n int, err error)

	// BatchSize is the largest number of packets one Read fills.
	BatchSize() int

	// MTU is the link MTU in bytes as set when the device was opened.
	MTU() int

	// Name is the link's current interface name.
	Name() string

	// Close releases the device and unblocks a pending Read.
	Close() error
}

// Errors from opening a TUN device. Callers branch on them with errors.Is; the
// message names the fix.
var (
	ErrNoTUN        = errors.New("/dev/net/tun is missing: load the TUN driver with `modprobe tun`")
	ErrNotPermitted = errors.New("creating a TUN device needs root or CAP_NET_ADMIN: run as root")
)

const (
	// DefaultMTU is used when a caller passes an MTU of zero.
	DefaultMTU = 1500
	// maxInterfaceName is IFNAMSIZ minus the terminating NUL.
	maxInterfaceName = 15
)

// checkOpen validates the name and MTU a device is opened with and returns
// the MTU to use (0 means DefaultMTU).
func checkOpen(name string, mtu int) (int, error) {
	if len(name) > maxInterfaceName {
		return 0, fmt.Errorf("open tun %q: interface names are at most %d bytes", name, maxInterfaceName)
	}
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < 68 || mtu > 65535 {
		return 0, fmt.Errorf("open tun %q: MTU %d is outside 68..65535", name, mtu)
	}
	return mtu, nil
}

// setMTU sets the MTU of the link named name in the calling thread's network
// namespace.
func setMTU(name string, mtu int) error {
	link, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetMTU(link, mtu)
	}
	if err != nil {
		return fmt.Errorf("set MTU %d on tun %q: %w", mtu, name, err)
	}
	return nil
}

// kernelName asks the kernel (TUNGETIFF) for the current name of the TUN
// device behind rc, so that a rename shows; it returns fallback if it cannot.
func kernelName(rc syscall.RawConn, fallback string) string {
	name := fallback
	rc.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq("")
		if err == nil && unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr) == nil {
			name = ifr.Name()
		}
	})
	return name
}

// isClosed reports whether err from a TUN descriptor means the device was
// closed: os.ErrClosed, or EBADF/EBADFD from a descriptor closed under a
// system call.
func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || err == unix.EBADF || err == unix.EBADFD
}

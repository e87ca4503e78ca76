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

import "errors"

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

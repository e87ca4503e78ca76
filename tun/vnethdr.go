package tun

import (
	"encoding/binary"
	"errors"
)

// The virtio_net_hdr (include/uapi/linux/virtio_net.h) that a TUN device opened
// with IFF_VNET_HDR puts before every packet it reads and expects before every
// packet written to it. It carries what the kernel's sk_buff knows about
// offloads: a partial checksum to finish (CHECKSUM_PARTIAL) and segmentation
// (GSO) of a super-packet. Its 16-bit fields are in the host's byte order (the
// legacy virtio rule TUN follows unless TUNSETVNETLE/BE says otherwise).
//
//	byte 0     flags        VirtioNetHdrFNeedsCsum, VirtioNetHdrFDataValid
//	byte 1     gso_type     VirtioNetHdrGSO*, plus VirtioNetHdrGSOECN
//	bytes 2-3  hdr_len      length of the headers (a hint; not trusted here)
//	bytes 4-5  gso_size     payload bytes per segment
//	bytes 6-7  csum_start   where the checksummed data starts (the transport header)
//	bytes 8-9  csum_offset  where the checksum field is, from csum_start
const (
	// VirtioNetHdrLen is the size of struct virtio_net_hdr.
	VirtioNetHdrLen = 10

	VirtioNetHdrFNeedsCsum = 1 // the checksum at csum_start+csum_offset is partial
	VirtioNetHdrFDataValid = 2 // the checksum was verified (CHECKSUM_UNNECESSARY)

	VirtioNetHdrGSONone  = 0
	VirtioNetHdrGSOTCPv4 = 1
	VirtioNetHdrGSOUDP   = 3 // UFO: IP fragmentation of one datagram; never asked for here
	VirtioNetHdrGSOTCPv6 = 4
	VirtioNetHdrGSOUDPL4 = 5 // USO: one UDP datagram per segment (Linux 6.2)
	VirtioNetHdrGSOECN   = 0x80
)

// Headroom is the offset at which callers should place packets for Read and
// Write: room for a virtio_net_hdr in front. A device that passes offloads
// (see PassesOffloads) keeps each packet's header there between Read and
// Write; other devices ignore it.
const Headroom = VirtioNetHdrLen

// VirtioNetHdr is a decoded struct virtio_net_hdr.
type VirtioNetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

var errShortVirtioNetHdr = errors.New("virtio_net_hdr: fewer than 10 bytes")

// Decode reads h from the first VirtioNetHdrLen bytes of b.
func (h *VirtioNetHdr) Decode(b []byte) error {
	if len(b) < VirtioNetHdrLen {
		return errShortVirtioNetHdr
	}
	e := binary.NativeEndian
	*h = VirtioNetHdr{
		Flags: b[0], GSOType: b[1],
		HdrLen: e.Uint16(b[2:]), GSOSize: e.Uint16(b[4:]),
		CsumStart: e.Uint16(b[6:]), CsumOffset: e.Uint16(b[8:]),
	}
	return nil
}

// Encode writes h to the first VirtioNetHdrLen bytes of b.
func (h *VirtioNetHdr) Encode(b []byte) error {
	if len(b) < VirtioNetHdrLen {
		return errShortVirtioNetHdr
	}
	e := binary.NativeEndian
	b[0], b[1] = h.Flags, h.GSOType
	e.PutUint16(b[2:], h.HdrLen)
	e.PutUint16(b[4:], h.GSOSize)
	e.PutUint16(b[6:], h.CsumStart)
	e.PutUint16(b[8:], h.CsumOffset)
	return nil
}

// PassesOffloads reports whether d carries a virtio_net_hdr in the Headroom
// bytes before each packet when Read and Write are given an offset of at least
// Headroom, so that checksum-offload packets and GSO super-packets (up to
// 65535 bytes, beyond the MTU) pass through it. Such a device must only write
// to a device that passes offloads too; give it a smaller offset and it reads
// plain packets, at most MTU long, with complete checksums.
func PassesOffloads(d Device) bool {
	o, ok := d.(interface{ PassesOffloads() bool })
	return ok && o.PassesOffloads()
}

package tun

import (
	"io"
	"os"
	"sync"
)

const (
	// ChannelBatchSize is the largest batch a ChannelDevice Read fills.
	ChannelBatchSize = 64
	// ChannelQueueLen is the capacity of a ChannelDevice's Inbound and
	// Outbound channels.
	ChannelQueueLen = 1024
)

// ChannelDevice is an in-memory Device. The test plays the kernel: it sends
// packets on Inbound for the gateway to Read and receives what the gateway
// wrote from Outbound. Both channels are buffered (ChannelQueueLen); a Write
// blocks while Outbound is full.
//
// Closing the device makes Read and Write return os.ErrClosed; it does not
// close either channel. Closing Inbound makes Read return io.EOF once it is
// drained.
type ChannelDevice struct {
	Inbound  chan []byte // packets the gateway will Read, as if the kernel sent them; the device does not keep them
	Outbound chan []byte // packets the gateway wrote; each is a fresh copy the receiver owns

	name string
	mtu  int

	closed    chan struct{}
	closeOnce sync.Once
}

var _ Device = (*ChannelDevice)(nil)

// NewChannel returns an open ChannelDevice. An MTU of 0 means DefaultMTU;
// the MTU is reported, not enforced.
func NewChannel(name string, mtu int) *ChannelDevice {
	if mtu == 0 {
		mtu = DefaultMTU
	}
	return &ChannelDevice{
		Inbound:  make(chan []byte, ChannelQueueLen),
		Outbound: make(chan []byte, ChannelQueueLen),
		name:     name,
		mtu:      mtu,
		closed:   make(chan struct{}),
	}
}

// Read blocks for the first packet, then takes whatever else is already queued
// on Inbound, up to len(bufs) and ChannelBatchSize.
func (c *ChannelDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	select {
	case <-c.closed:
		return 0, os.ErrClosed
	default:
	}
	var (
		p  []byte
		ok bool
	)
	select {
	case <-c.closed:
		return 0, os.ErrClosed
	case p, ok = <-c.Inbound:
		if !ok {
			return 0, io.EOF
		}
	}
	sizes[0] = copy(bufs[0][offset:], p)
	n := 1
	for n < len(bufs) && n < ChannelBatchSize {
		select {
		case p, ok = <-c.Inbound:
			if !ok {
				return n, nil // the next Read reports io.EOF
			}
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

// Write copies each packet and sends the copy on Outbound.
func (c *ChannelDevice) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		select {
		case <-c.closed:
			return i, os.ErrClosed
		default:
		}
		p := make([]byte, len(b)-offset)
		copy(p, b[offset:])
		select {
		case <-c.closed:
			return i, os.ErrClosed
		case c.Outbound <- p:
		}
	}
	return len(bufs), nil
}

// BatchSize returns ChannelBatchSize.
func (c *ChannelDevice) BatchSize() int { return ChannelBatchSize }

// MTU returns the MTU given to NewChannel.
func (c *ChannelDevice) MTU() int { return c.mtu }

// Name returns the name given to NewChannel.
func (c *ChannelDevice) Name() string { return c.name }

// Close unblocks Read and Write. It always returns nil.
func (c *ChannelDevice) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

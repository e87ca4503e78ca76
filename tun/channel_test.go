package tun

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

func TestChannelRoundTrip(t *testing.T) {
	c := NewChannel("mem0", 0)
	if c.MTU() != DefaultMTU || c.Name() != "mem0" || c.BatchSize() != ChannelBatchSize {
		t.Fatalf("NewChannel: mtu %d name %q batch %d", c.MTU(), c.Name(), c.BatchSize())
	}

	const offset = 4
	in := [][]byte{{0x45, 1, 2}, {0x60, 3}, {0x45, 4, 5, 6}}
	for _, p := range in {
		c.Inbound <- p
	}
	bufs, sizes := makeBufs(8, 64), make([]int, 8)
	n, err := c.Read(bufs, sizes, offset)
	if err != nil || n != len(in) {
		t.Fatalf("Read = %d, %v; want %d, nil", n, err, len(in))
	}
	for i := range n {
		bufs[i] = bufs[i][:offset+sizes[i]]
		if got := bufs[i][offset:]; !bytes.Equal(got, in[i]) {
			t.Errorf("packet %d = %x, want %x", i, got, in[i])
		}
	}

	if n, err := c.Write(bufs[:n], offset); err != nil || n != len(in) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(in))
	}
	for i := range bufs { // the device must have copied
		clear(bufs[i])
	}
	for i, want := range in {
		if got := <-c.Outbound; !bytes.Equal(got, want) {
			t.Errorf("written packet %d = %x, want %x", i, got, want)
		}
	}
}

func TestChannelReadBatchLimits(t *testing.T) {
	tests := []struct {
		name   string
		queued int
		bufs   int
		want   int
	}{
		{name: "one of one", queued: 1, bufs: 4, want: 1},
		{name: "limited by bufs", queued: 5, bufs: 3, want: 3},
		{name: "limited by batch size", queued: ChannelBatchSize + 3, bufs: ChannelBatchSize + 10, want: ChannelBatchSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChannel("mem0", 0)
			for range tt.queued {
				c.Inbound <- []byte{0x45}
			}
			n, err := c.Read(makeBufs(tt.bufs, 16), make([]int, tt.bufs), 0)
			if err != nil || n != tt.want {
				t.Fatalf("Read = %d, %v; want %d, nil", n, err, tt.want)
			}
		})
	}
}

func TestChannelTruncatesLikeTheKernel(t *testing.T) {
	c := NewChannel("mem0", 0)
	c.Inbound <- []byte{1, 2, 3, 4, 5}
	bufs, sizes := makeBufs(1, 3), make([]int, 1)
	if n, err := c.Read(bufs, sizes, 0); n != 1 || err != nil || sizes[0] != 3 {
		t.Fatalf("Read = %d, %v, size %d; want 1, nil, 3", n, err, sizes[0])
	}
}

func TestChannelCloseUnblocksRead(t *testing.T) {
	c := NewChannel("mem0", 0)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(makeBufs(1, 16), make([]int, 1), 0)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let Read block; the assertion holds either way
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5s after Close")
	}
	if _, err := c.Write([][]byte{{0x45}}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestChannelClosedInboundIsEOF(t *testing.T) {
	c := NewChannel("mem0", 0)
	c.Inbound <- []byte{0x45}
	close(c.Inbound)
	bufs, sizes := makeBufs(4, 16), make([]int, 4)
	if n, err := c.Read(bufs, sizes, 0); n != 1 || err != nil {
		t.Fatalf("first Read = %d, %v; want 1, nil", n, err)
	}
	if n, err := c.Read(bufs, sizes, 0); n != 0 || err != io.EOF {
		t.Fatalf("second Read = %d, %v; want 0, io.EOF", n, err)
	}
}

func makeBufs(n, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs
}

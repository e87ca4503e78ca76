package gateway

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/tun"
)

// readOne reads one packet from s in a goroutine and returns a channel with the
// outcome.
func readOne(s *sideDevice) chan error {
	c := make(chan error, 1)
	go func() {
		bufs, sizes := [][]byte{make([]byte, 64)}, []int{0}
		_, err := s.Read(bufs, sizes, 0)
		c <- err
	}()
	return c
}

func wantBlocked(t *testing.T, c chan error, what string) {
	t.Helper()
	select {
	case err := <-c:
		t.Fatalf("%s: Read returned %v; want it to wait", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

func wantRead(t *testing.T, c chan error, want error, what string) {
	t.Helper()
	select {
	case err := <-c:
		if !errors.Is(err, want) && err != want {
			t.Fatalf("%s: Read returned %v, want %v", what, err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: Read did not return", what)
	}
}

// TestSideDeviceGoneAndSwap: a device taken away under a Read (its reads fail
// with os.ErrClosed without the side closing it, as a TUN whose namespace went)
// calls gone once, holds the reader, refuses writes, and a swap hands the reader
// the new device; Close ends everything without another gone.
func TestSideDeviceGoneAndSwap(t *testing.T) {
	d1, d2 := tun.NewChannel("a1", 0), tun.NewChannel("a2", 0)
	var gone atomic.Int32
	var why error
	s := newSideDevice(policy.Inside, d1, func(side policy.Side, err error) {
		if side != policy.Inside {
			t.Errorf("gone for side %v", side)
		}
		why = err
		gone.Add(1)
	})
	d1.Inbound <- []byte{0x45}
	wantRead(t, readOne(s), nil, "a packet on the first device")

	r := readOne(s)
	wantBlocked(t, r, "an idle device")
	d1.Close() // the kernel took it away
	wantBlocked(t, r, "a device taken away")
	if gone.Load() != 1 || !errors.Is(why, os.ErrClosed) {
		t.Fatalf("gone called %d times with %v; want once with the read error", gone.Load(), why)
	}
	if _, err := s.Write([][]byte{{0x45}}, 0); !errors.Is(err, errSideAway) {
		t.Errorf("Write while away: %v, want errSideAway", err)
	}
	s.swap(d2)
	d2.Inbound <- []byte{0x45}
	wantRead(t, r, nil, "the reader after the swap")
	if _, err := s.Write([][]byte{{0x45, 1}}, 0); err != nil {
		t.Errorf("Write after the swap: %v", err)
	}
	if got := <-d2.Outbound; len(got) != 2 {
		t.Errorf("the new device got %x", got)
	}

	r = readOne(s)
	wantBlocked(t, r, "an idle new device")
	s.Close()
	wantRead(t, r, os.ErrClosed, "a Read when the side is closed")
	if gone.Load() != 1 {
		t.Errorf("Close called gone: %d calls", gone.Load())
	}
	if _, err := d2.Write([][]byte{{1}}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Close left the device open: %v", err)
	}
}

// TestSideDeviceTakeAway: a side found gone by the watcher is closed and calls
// gone with the reason once, however often it is taken away, and a Read waits
// for the swap.
func TestSideDeviceTakeAway(t *testing.T) {
	d1, d2 := tun.NewChannel("b1", 0), tun.NewChannel("b2", 0)
	var calls atomic.Int32
	var why error
	s := newSideDevice(policy.Outside, d1, func(_ policy.Side, err error) { why = err; calls.Add(1) })
	r := readOne(s)
	wantBlocked(t, r, "an idle device")
	s.takeAway(vanished{"the process ended"})
	s.takeAway(vanished{"again"})
	wantBlocked(t, r, "a side taken away")
	var v vanished
	if calls.Load() != 1 || !errors.As(why, &v) || v.why != "the process ended" {
		t.Fatalf("gone: %d calls, last %v; want one with the watcher's reason", calls.Load(), why)
	}
	if !s.isAway() {
		t.Error("isAway is false after takeAway")
	}
	s.swap(d2)
	if s.isAway() {
		t.Error("isAway is true after swap")
	}
	d2.Inbound <- []byte{0x60}
	wantRead(t, r, nil, "the reader after the swap")
	s.Close()
	s.swap(tun.NewChannel("b3", 0)) // after Close: closes the new device, changes nothing
	if _, err := s.Write([][]byte{{1}}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
}

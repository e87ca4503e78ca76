package gateway

import (
	"errors"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/tun"
)

// sideDevice is one side of a wedge as the pumps see it: the TUN in that side's
// namespace, which a re-attach replaces by a TUN in the side's new namespace. It
// tells a TUN the kernel took away (its namespace was deleted: a container
// stopped or restarted, and every read fails with EBADFD) from one the gateway
// closed: the first makes it call gone once and then hold its reader until swap
// or Close, so that the pump goes on with the new device and never sees the gap.
//
// Read is for one goroutine at a time, as tun.Device says; Write, swap and
// Close may be called from any goroutine.
type sideDevice struct {
	side  policy.Side
	batch int
	offl  bool     // the devices pass offloads (tun.PassesOffloads); the same for every device swapped in
	wait  tun.Wait // how an idle Read of the device waits (tun.FastDevice.Waits)
	gone  func(policy.Side, error)

	mu      sync.Mutex // guards the fields below
	cur     tun.Device
	away    bool          // cur was taken away; Read waits for swapped
	closed  bool          // Close was called
	swapped chan struct{} // closed, and replaced, by each swap and by Close
}

var errSideAway = errors.New("this side of the wedge is away: its namespace went and has not come back")

func newSideDevice(side policy.Side, d tun.Device, gone func(policy.Side, error)) *sideDevice {
	s := &sideDevice{side: side, batch: d.BatchSize(), offl: tun.PassesOffloads(d), gone: gone, cur: d, swapped: make(chan struct{})}
	if w, ok := d.(interface{ Waits() tun.Wait }); ok {
		s.wait = w.Waits()
	}
	return s
}

// takenAway reports whether err from a device the gateway did not close means
// its link is gone: reads of a TUN whose device was unregistered fail with
// EBADFD, which the tun package reports as os.ErrClosed.
func takenAway(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD)
}

func (s *sideDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		s.mu.Lock()
		d, away, closed, ch := s.cur, s.away, s.closed, s.swapped
		s.mu.Unlock()
		if closed {
			return 0, os.ErrClosed
		}
		if away {
			<-ch
			continue
		}
		n, err := d.Read(bufs, sizes, offset)
		if err == nil || n > 0 {
			return n, err
		}
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			return 0, os.ErrClosed
		case s.cur != d, s.away:
			s.mu.Unlock()
			continue // swapped, or taken away (takeAway), while this Read failed
		case !takenAway(err):
			s.mu.Unlock()
			return n, err
		}
		s.away = true
		s.mu.Unlock()
		d.Close()
		s.gone(s.side, err)
	}
}

// takeAway is for a side found gone by other means than its reads (the process
// its namespace was found by ended, while the namespace lingers): the device is
// closed, which removes its link and routes from the old namespace, gone is
// called with why, and Read waits for swap. It does nothing if the side is away
// or closed already.
func (s *sideDevice) takeAway(why error) {
	s.mu.Lock()
	if s.away || s.closed {
		s.mu.Unlock()
		return
	}
	s.away = true
	d := s.cur
	s.mu.Unlock()
	d.Close()
	s.gone(s.side, why)
}

// isAway reports whether the side waits for a new device.
func (s *sideDevice) isAway() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.away || s.closed
}

func (s *sideDevice) Write(bufs [][]byte, offset int) (int, error) {
	s.mu.Lock()
	d, away, closed := s.cur, s.away, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return 0, os.ErrClosed
	case away:
		return 0, errSideAway
	}
	return d.Write(bufs, offset)
}

// swap makes d the side's device and wakes a Read waiting for it; the old
// device is closed. d must be of the kind the side started with.
func (s *sideDevice) swap(d tun.Device) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		d.Close()
		return
	}
	old := s.cur
	s.cur, s.away = d, false
	close(s.swapped)
	s.swapped = make(chan struct{})
	s.mu.Unlock()
	old.Close()
}

// Close closes the current device and ends a Read, now or waiting.
func (s *sideDevice) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.swapped)
	d := s.cur
	s.mu.Unlock()
	return d.Close()
}

func (s *sideDevice) BatchSize() int { return s.batch }

// PassesOffloads is the devices': see tun.PassesOffloads.
func (s *sideDevice) PassesOffloads() bool { return s.offl }

// Waits is the devices' (tun.FastDevice.Waits; tun.WaitPoller for others).
func (s *sideDevice) Waits() tun.Wait { return s.wait }

func (s *sideDevice) MTU() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.MTU()
}

func (s *sideDevice) Name() string {
	s.mu.Lock()
	d := s.cur
	s.mu.Unlock()
	return d.Name()
}

var _ tun.Device = (*sideDevice)(nil)

package tun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/songgao/water"
)

// waterDevice is a TUN device opened by water. water opens /dev/net/tun with
// O_NONBLOCK and wraps the descriptor in an *os.File, so reads park in the Go
// netpoller and Close wakes a blocked Read with os.ErrClosed.
type waterDevice struct {
	ifce *water.Interface
	file *os.File // ifce's descriptor; used for TUNGETIFF
	name string   // name at open time, used in error messages
	mtu  int

	closeOnce sync.Once
	closeErr  error
}

// OpenWater creates the TUN device name (IFF_TUN|IFF_NO_PI, not persistent) in
// the calling thread's network namespace and sets its MTU (0 means
// DefaultMTU). The link stays down; see Configure. An empty name lets the
// kernel pick one (tun0, tun1, ...). The device disappears when it is closed.
//
// A missing driver is reported as ErrNoTUN and a missing privilege as
// ErrNotPermitted.
func OpenWater(name string, mtu int) (Device, error) {
	mtu, err := checkOpen(name, mtu)
	if err != nil {
		return nil, err
	}
	ifce, err := water.New(water.Config{
		DeviceType:             water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	})
	if err != nil {
		// water leaks the descriptor when TUNSETIFF fails; nothing here can
		// reach it. This only happens on a setup error.
		return nil, translateOpenError(name, err)
	}
	file, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return nil, fmt.Errorf("open tun %q: water returned %T, want *os.File", name, ifce.ReadWriteCloser)
	}
	d := &waterDevice{ifce: ifce, file: file, name: ifce.Name(), mtu: mtu}
	if err := setMTU(d.name, mtu); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// translateOpenError turns the errno from opening /dev/net/tun or TUNSETIFF
// into an error that names the fix.
func translateOpenError(name string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENXIO):
		return fmt.Errorf("open tun %q: %w (%v)", name, ErrNoTUN, err)
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("open tun %q: %w (%v)", name, ErrNotPermitted, err)
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("open tun %q: the name is in use by another device or process; pick another name: %w", name, err)
	}
	return fmt.Errorf("open tun %q: %w", name, err)
}

func (d *waterDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	n, err := d.ifce.Read(bufs[0][offset:])
	if err != nil {
		return 0, fmt.Errorf("read tun %q: %w", d.name, err)
	}
	sizes[0] = n
	return 1, nil
}

func (d *waterDevice) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if _, err := d.ifce.Write(b[offset:]); err != nil {
			return i, fmt.Errorf("write tun %q: %w", d.name, err)
		}
	}
	return len(bufs), nil
}

// BatchSize is 1: a read(2) on a TUN descriptor returns one packet.
func (d *waterDevice) BatchSize() int { return 1 }

func (d *waterDevice) MTU() int { return d.mtu }

// Name asks the kernel (TUNGETIFF) so that a rename, for example to gw0 inside
// a lab namespace, shows. After Close it returns the name at open time.
func (d *waterDevice) Name() string {
	conn, err := d.file.SyscallConn()
	if err != nil {
		return d.name
	}
	return kernelName(conn, d.name)
}

func (d *waterDevice) Close() error {
	d.closeOnce.Do(func() {
		if err := d.ifce.Close(); err != nil {
			d.closeErr = fmt.Errorf("close tun %q: %w", d.name, err)
		}
	})
	return d.closeErr
}

package gateway

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/tun"
)

// failingDevice fails its Reads as script says (true: fail) and then blocks until
// closed; it counts the Reads.
type failingDevice struct {
	mu     sync.Mutex
	script []bool
	reads  int
	closed chan struct{}
	once   sync.Once
}

func newFailingDevice(script []bool) *failingDevice {
	return &failingDevice{script: script, closed: make(chan struct{})}
}

var errTransient = errors.New("transient read error")

func (d *failingDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.mu.Lock()
	i := d.reads
	d.reads++
	d.mu.Unlock()
	if i < len(d.script) {
		if d.script[i] {
			return 0, errTransient
		}
		sizes[0] = 0 // an empty packet: malformed, dropped
		return 1, nil
	}
	<-d.closed
	return 0, os.ErrClosed
}

func (d *failingDevice) Reads() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reads
}

func (d *failingDevice) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (d *failingDevice) BatchSize() int                               { return 1 }
func (d *failingDevice) MTU() int                                     { return 1500 }
func (d *failingDevice) Name() string                                 { return "failing" }
func (d *failingDevice) Close() error                                 { d.once.Do(func() { close(d.closed) }); return nil }

func shrinkReadBackoff(t *testing.T, limit int) {
	oldLimit, oldMin, oldMax := readErrorLimit, readBackoffMin, readBackoffMax
	readErrorLimit, readBackoffMin, readBackoffMax = limit, time.Microsecond, 50*time.Microsecond
	t.Cleanup(func() { readErrorLimit, readBackoffMin, readBackoffMax = oldLimit, oldMin, oldMax })
}

func startGateway(t *testing.T, inside tun.Device) (*Gateway, chan error, context.CancelFunc) {
	t.Helper()
	eng, err := policy.NewEngine(policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Config{Inside: inside, Outside: tun.NewChannel("outside", 0), Engine: eng, TickInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	return gw, done, cancel
}

// TestPumpReadErrorsInARow: read errors separated by successful reads never stop
// the gateway, however many there are; readErrorLimit of them in a row do.
func TestPumpReadErrorsInARow(t *testing.T) {
	const limit = 5
	shrinkReadBackoff(t, limit)

	t.Run("transient", func(t *testing.T) {
		var script []bool
		for range 10 * limit { // many more errors than the limit, never limit-1 in a row
			for range limit - 1 {
				script = append(script, true)
			}
			script = append(script, false)
		}
		dev := newFailingDevice(script)
		gw, done, cancel := startGateway(t, dev)
		defer cancel()
		for deadline := time.Now().Add(10 * time.Second); dev.Reads() <= len(script); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the pump made %d reads of %d within 10s", dev.Reads(), len(script)+1)
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Run stopped after transient read errors: %v", err)
		default:
		}
		if n, want := gw.Stats()[policy.Inside].ReadErrors, uint64(10*limit*(limit-1)); n != want {
			t.Errorf("ReadErrors = %d, want %d", n, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})

	t.Run("persistent", func(t *testing.T) {
		script := make([]bool, 2*limit)
		for i := range script {
			script[i] = true
		}
		dev := newFailingDevice(script)
		_, done, cancel := startGateway(t, dev)
		defer cancel()
		select {
		case err := <-done:
			if !errors.Is(err, errTransient) || !strings.Contains(err.Error(), "in a row") {
				t.Errorf("Run = %v, want the read error, %d in a row", err, limit)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not stop within 10s of persistent read errors")
		}
		if n := dev.Reads(); n != limit {
			t.Errorf("the pump made %d reads, want %d", n, limit)
		}
	})
}

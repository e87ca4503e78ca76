package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/internal/version"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// Files in a lab's run directory besides the pid file.
const (
	SocketFile = control.SocketFile // the control API, mode 0600
	StateFile  = "lab.json"         // the lab's control.Lab, what `idlegate lab show` prints
	LogFile    = "gateway.log"      // the detached gateway's log
)

// LabOptions tune StartLab, and StartWedge through WedgeOptions.
type LabOptions struct {
	Pcap       string         // record a pcapng file from the start (a new file, see Gateway.SetPcap)
	PcapForce  bool           // overwrite Pcap if it exists
	PcapFilter control.Filter // record only the packets it picks (the zero Filter: all)
	PolicyFile string         // shown by `lab show`
	// Profile names the built-in profile the policy started from, for `lab show`.
	Profile string
	// TimeScale, if not 0 or 1, multiplies every timeout of the policy (which is in
	// real units) before the gateway runs it; `policy set` then takes real units too.
	TimeScale float64
	// Metrics, if set, is a TCP address ("127.0.0.1:9477") where GET /metrics is
	// also served, for a stock Prometheus; only /metrics.
	Metrics string
	Log     *slog.Logger
	Now     func() time.Time
}

// Running is a lab or a wedge whose gateway runs in this process.
type Running struct {
	Lab     *lab.Lab   // the lab, or nil for a wedge
	Wedge   *lab.Wedge // the wedge, or nil for a lab
	Gateway *Gateway
	Engine  *policy.Engine
	Socket  string
	// Metrics is the address /metrics is served on over TCP, if LabOptions.Metrics
	// asked for it (with its port if it asked for port 0).
	Metrics string

	wedge    *wedgeRun    // a wedge's own state, nil for a lab
	down     func() error // removes the lab or takes the wedge out
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	stopOnce sync.Once
	stopErr  error
}

// LabNetworks are the networks on each side of every lab, for the engine to route by:
// the client's prefixes inside, the server's outside, and as the gateway's own
// addresses its router addresses toward the client (the source of the time exceeded
// it sends there) and the NAT addresses (the same toward the server; nothing answers
// on them when NAT is off).
func LabNetworks() policy.Networks {
	return policy.Networks{
		Inside:  []netip.Prefix{lab.InsideNet4, lab.InsideNet6},
		Outside: []netip.Prefix{lab.OutsideNet4, lab.OutsideNet6},
		Gateway: []netip.Addr{lab.RouterAddr4, lab.RouterAddr6, lab.NATAddr4, lab.NATAddr6},
	}
}

// StartLab builds the lab's namespaces, starts its gateway with the policy (scaled
// by opts.TimeScale) and serves the control API, which answers as soon as StartLab
// returns. Stop tears everything down; so does a failure of StartLab itself. The
// engine routes by LabNetworks.
func StartLab(ctx context.Context, cfg lab.Config, pol policy.Policy, opts LabOptions) (*Running, error) {
	eng, run, scale, err := newEngine(pol, &opts)
	if err != nil {
		return nil, err
	}
	if err := eng.SetNetworks(LabNetworks()); err != nil {
		return nil, err
	}
	mln, err := listenMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	l, err := lab.Up(cfg)
	if err != nil {
		closeListener(mln)
		return nil, err
	}
	fail := func(err error) (*Running, error) {
		closeListener(mln)
		return nil, errors.Join(err, l.Down())
	}
	gw, err := New(Config{Inside: l.Client.Dev, Outside: l.Server.Dev, Engine: eng, Log: opts.Log, Now: opts.Now})
	if err != nil {
		return fail(err)
	}
	sock := filepath.Join(l.RunDir, SocketFile)
	// Listening here, before anything runs, means the API answers once StartLab returns.
	ln, err := listenControl(sock)
	if err != nil {
		return fail(err)
	}
	if opts.Pcap != "" {
		if _, err := gw.SetPcap(opts.Pcap, opts.PcapForce, opts.PcapFilter); err != nil {
			ln.Close()
			return fail(err)
		}
	}
	st := control.Lab{
		Name: l.Name, Kind: KindLab, PID: os.Getpid(), RunDir: l.RunDir, Socket: sock,
		PolicyFile: opts.PolicyFile, Started: gw.Started(), MTU: l.Client.Dev.MTU(), Device: l.Device,
		Client:     control.Side{Namespace: l.Client.Namespace, Link: lab.LinkName, Addr4: l.Client.Addr4.String(), Addr6: l.Client.Addr6.String()},
		Server:     control.Side{Namespace: l.Server.Namespace, Link: lab.LinkName, Addr4: l.Server.Addr4.String(), Addr6: l.Server.Addr6.String()},
		NAT:        []string{lab.NATAddr4.String(), lab.NATAddr6.String()},
		PolicyView: control.PolicyView{Profile: opts.Profile, TimeScale: scale, Policy: pol},
	}
	if mln != nil {
		st.Metrics = mln.Addr().String()
	}
	if scale != 1 {
		st.InForce = run
	}
	gw.setLab(st)
	r := &Running{Lab: l, Gateway: gw, Engine: eng, Socket: sock, Metrics: st.Metrics, down: l.Down}
	r.launch(ctx, ln, mln)
	if err := writeState(l.RunDir, st); err != nil {
		return nil, errors.Join(err, r.Stop())
	}
	return r, nil
}

// newEngine checks opts and makes the engine of policy pol (in real units) scaled
// by opts.TimeScale: run is the policy the engine runs, scale the scale (1 for 0).
func newEngine(pol policy.Policy, opts *LabOptions) (eng *policy.Engine, run policy.Policy, scale float64, err error) {
	scale = opts.TimeScale
	if scale == 0 {
		scale = 1
	}
	run = pol
	if scale != 1 {
		if run, err = pol.Scale(scale); err != nil {
			return nil, run, scale, err
		}
	}
	if err := opts.PcapFilter.CheckPacket(); err != nil {
		return nil, run, scale, fmt.Errorf("pcap filter: %w", err)
	}
	eng, err = policy.NewEngine(run)
	return eng, run, scale, err
}

// listenMetrics listens on the TCP address of LabOptions.Metrics; "" is none (nil).
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve metrics on %s: %w", addr, err)
	}
	return ln, nil
}

func closeListener(ln net.Listener) {
	if ln != nil {
		ln.Close()
	}
}

// launch runs the gateway, serves the control API on ln and, if mln is not nil,
// /metrics on mln, until ctx is done or any of them stops; Done is closed when all
// have.
func (r *Running) launch(ctx context.Context, ln, mln net.Listener) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	gw := r.Gateway
	var wg sync.WaitGroup
	wg.Add(2)
	var gerr, serr, merr error
	go func() {
		defer wg.Done()
		gerr = gw.Run(ctx)
		r.cancel()
	}()
	go func() {
		defer wg.Done()
		serr = gw.serve(ctx, ln, gw.handler())
		r.cancel()
	}()
	if mln != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			merr = gw.ServeMetrics(ctx, mln)
			r.cancel()
		}()
	}
	go func() {
		wg.Wait()
		r.err = errors.Join(gerr, serr, merr)
		close(r.done)
	}()
}

// writeState writes what `lab show` prints to the run directory.
func writeState(runDir string, st control.Lab) error {
	st.Version = version.Get().Version
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(runDir, StateFile), append(b, '\n'), 0o600)
	}
	if err != nil {
		return fmt.Errorf("write the state file: %w", err)
	}
	return nil
}

// Done is closed when the gateway stops (after Stop, or on a device failure).
func (r *Running) Done() <-chan struct{} { return r.done }

// Err is why the gateway stopped, after Done is closed; nil after a plain Stop.
func (r *Running) Err() error { return r.err }

// Stop stops the gateway and removes the lab: namespaces, links and run directory.
// It is idempotent and safe to call from several goroutines.
func (r *Running) Stop() error {
	r.stopOnce.Do(func() {
		r.cancel()
		<-r.done
		r.stopErr = errors.Join(r.err, r.down())
	})
	return r.stopErr
}

// ReadState reads the description of a lab from its run directory (its gateway may
// have died since: see lab.Owner).
func ReadState(name, runBase string) (control.Lab, error) {
	var st control.Lab
	b, err := os.ReadFile(filepath.Join(lab.RunDir(name, runBase), StateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return st, lab.NoSuchLab(name)
	case errors.Is(err, fs.ErrPermission):
		return st, &permissionError{name: name, dir: lab.RunDir(name, runBase)}
	case err != nil:
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("lab %q state file is damaged (%v); run `idlegate lab down --name %s`", name, err, name)
	}
	return st, nil
}

// permissionError is a run directory the caller may not read: it is root's.
type permissionError struct{ name, dir string }

func (e *permissionError) Error() string {
	return fmt.Sprintf("lab %q keeps its state in %s, which only root may read: run this as root (sudo)", e.name, e.dir)
}

func (e *permissionError) Unwrap() error { return control.ErrPermission }

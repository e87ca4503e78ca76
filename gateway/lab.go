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

// LabOptions tune StartLab.
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

// Running is a lab whose gateway runs in this process.
type Running struct {
	Lab     *lab.Lab
	Gateway *Gateway
	Engine  *policy.Engine
	Socket  string
	// Metrics is the address /metrics is served on over TCP, if LabOptions.Metrics
	// asked for it (with its port if it asked for port 0).
	Metrics string

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
	scale := opts.TimeScale
	if scale == 0 {
		scale = 1
	}
	run := pol
	if scale != 1 {
		var err error
		if run, err = pol.Scale(scale); err != nil {
			return nil, err
		}
	}
	if err := opts.PcapFilter.CheckPacket(); err != nil {
		return nil, fmt.Errorf("pcap filter: %w", err)
	}
	eng, err := policy.NewEngine(run)
	if err != nil {
		return nil, err
	}
	if err := eng.SetNetworks(LabNetworks()); err != nil {
		return nil, err
	}
	var mln net.Listener
	if opts.Metrics != "" {
		if mln, err = net.Listen("tcp", opts.Metrics); err != nil {
			return nil, fmt.Errorf("serve metrics on %s: %w", opts.Metrics, err)
		}
	}
	l, err := lab.Up(cfg)
	if err != nil {
		if mln != nil {
			mln.Close()
		}
		return nil, err
	}
	fail := func(err error) (*Running, error) {
		if mln != nil {
			mln.Close()
		}
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
		Name: l.Name, Kind: "lab", PID: os.Getpid(), RunDir: l.RunDir, Socket: sock,
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
	ctx, cancel := context.WithCancel(ctx)
	r := &Running{Lab: l, Gateway: gw, Engine: eng, Socket: sock, Metrics: st.Metrics, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	var gerr, serr, merr error
	go func() {
		defer wg.Done()
		gerr = gw.Run(ctx)
		cancel()
	}()
	go func() {
		defer wg.Done()
		serr = gw.serve(ctx, ln, gw.handler())
		cancel()
	}()
	if mln != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			merr = gw.ServeMetrics(ctx, mln)
			cancel()
		}()
	}
	go func() {
		wg.Wait()
		r.err = errors.Join(gerr, serr, merr)
		close(r.done)
	}()
	st.Version = version.Get().Version
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(l.RunDir, StateFile), append(b, '\n'), 0o600)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("write the lab's state file: %w", err), r.Stop())
	}
	return r, nil
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
		r.stopErr = errors.Join(r.err, r.Lab.Down())
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

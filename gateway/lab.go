package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// Files in a lab's run directory besides the pid file.
const (
	SocketFile = "control.sock" // the control API, mode 0600
	StateFile  = "lab.json"     // what `idlegate lab show` prints
	LogFile    = "gateway.log"  // the detached gateway's log
)

// LabOptions tune StartLab.
type LabOptions struct {
	Pcap       string // record a pcapng file from the start (a new file, see Gateway.SetPcap)
	PcapForce  bool   // overwrite Pcap if it exists
	PolicyFile string // shown by `lab show`
	Log        *slog.Logger
	Now        func() time.Time
}

// Running is a lab whose gateway runs in this process.
type Running struct {
	Lab     *lab.Lab
	Gateway *Gateway
	Engine  *policy.Engine
	Socket  string

	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	stopOnce sync.Once
	stopErr  error
}

// State is the lab's description written to its run directory.
type State struct {
	Name       string        `json:"name"`
	PID        int           `json:"pid"`
	RunDir     string        `json:"run_dir"`
	Socket     string        `json:"socket"`
	Log        string        `json:"log,omitempty"`
	PolicyFile string        `json:"policy_file,omitempty"`
	Started    time.Time     `json:"started"`
	MTU        int           `json:"mtu"`
	Device     string        `json:"device"`
	Client     SideState     `json:"client"`
	Server     SideState     `json:"server"`
	NAT        []string      `json:"nat_outside"`
	Policy     policy.Policy `json:"policy"`
}

// SideState describes one namespace.
type SideState struct {
	Namespace string `json:"namespace"`
	Link      string `json:"link"`
	Addr4     string `json:"addr4"`
	Addr6     string `json:"addr6"`
}

// LabNetworks are the networks on each side of every lab, for the engine to route by:
// the client's prefixes inside, the server's outside, and the NAT addresses as the
// gateway's own (nothing answers on them when NAT is off).
func LabNetworks() policy.Networks {
	return policy.Networks{
		Inside:  []netip.Prefix{lab.InsideNet4, lab.InsideNet6},
		Outside: []netip.Prefix{lab.OutsideNet4, lab.OutsideNet6},
		Gateway: []netip.Addr{lab.NATAddr4, lab.NATAddr6},
	}
}

// StartLab builds the lab's namespaces, starts its gateway with the policy and serves
// the control API, which answers as soon as StartLab returns. Stop tears everything
// down; so does a failure of StartLab itself. The engine routes by LabNetworks.
func StartLab(ctx context.Context, cfg lab.Config, pol policy.Policy, opts LabOptions) (*Running, error) {
	eng, err := policy.NewEngine(pol)
	if err != nil {
		return nil, err
	}
	if err := eng.SetNetworks(LabNetworks()); err != nil {
		return nil, err
	}
	l, err := lab.Up(cfg)
	if err != nil {
		return nil, err
	}
	gw, err := New(Config{Inside: l.Client.Dev, Outside: l.Server.Dev, Engine: eng, Log: opts.Log, Now: opts.Now})
	if err != nil {
		l.Down()
		return nil, err
	}
	sock := filepath.Join(l.RunDir, SocketFile)
	// Listening here, before anything runs, means the API answers once StartLab returns.
	ln, err := listenControl(sock)
	if err != nil {
		l.Down()
		return nil, err
	}
	if opts.Pcap != "" {
		if _, err := gw.SetPcap(opts.Pcap, opts.PcapForce); err != nil {
			ln.Close()
			l.Down()
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Running{Lab: l, Gateway: gw, Engine: eng, Socket: sock, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	var gerr, serr error
	go func() {
		defer wg.Done()
		gerr = gw.Run(ctx)
		cancel()
	}()
	go func() {
		defer wg.Done()
		serr = gw.serve(ctx, ln)
		cancel()
	}()
	go func() {
		wg.Wait()
		r.err = errors.Join(gerr, serr)
		close(r.done)
	}()
	st := State{
		Name: l.Name, PID: os.Getpid(), RunDir: l.RunDir, Socket: r.Socket,
		PolicyFile: opts.PolicyFile, Started: gw.Started(), MTU: l.Client.Dev.MTU(), Device: l.Device,
		Client: SideState{l.Client.Namespace, lab.LinkName, l.Client.Addr4.String(), l.Client.Addr6.String()},
		Server: SideState{l.Server.Namespace, lab.LinkName, l.Server.Addr4.String(), l.Server.Addr6.String()},
		NAT:    []string{lab.NATAddr4.String(), lab.NATAddr6.String()},
		Policy: pol,
	}
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

// ReadState reads the description of a running lab from its run directory.
func ReadState(name, runBase string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(lab.RunDir(name, runBase), StateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return st, lab.NoSuchLab(name)
	case errors.Is(err, fs.ErrPermission):
		return st, lab.ErrNotRoot
	case err != nil:
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("lab %q state file is damaged (%v); run `idlegate lab down --name %s`", name, err, name)
	}
	return st, nil
}

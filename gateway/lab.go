package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
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

// Running is a lab or a wedge whose gateway runs in this process.
type Running struct {
	Lab     *lab.Lab   // the lab, or nil for a wedge
	Wedge   *lab.Wedge // the wedge, or nil for a lab
	Gateway *Gateway
	Engine  *policy.Engine
	Socket  string

	wedge    *wedgeRun    // a wedge's own state, nil for a lab
	down     func() error // removes the lab or takes the wedge out
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	stopOnce sync.Once
	stopErr  error
}

// State is the lab's or wedge's description written to its run directory.
type State struct {
	// Kind is KindLab or KindWedge ("" in a state file written before wedges: a lab).
	Kind       string        `json:"kind,omitempty"`
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
	Wedge      *WedgeState   `json:"wedge,omitempty"` // Kind "wedge" only
}

// SideState describes one namespace.
type SideState struct {
	Namespace string `json:"namespace"`
	Link      string `json:"link"`
	Addr4     string `json:"addr4"`
	Addr6     string `json:"addr6"`
}

// StartLab builds the lab's namespaces, starts its gateway with the policy and serves
// the control API, which answers as soon as StartLab returns. Stop tears everything
// down; so does a failure of StartLab itself.
func StartLab(ctx context.Context, cfg lab.Config, pol policy.Policy, opts LabOptions) (*Running, error) {
	eng, err := policy.NewEngine(pol)
	if err != nil {
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
	r := &Running{Lab: l, Gateway: gw, Engine: eng, Socket: sock, down: l.Down}
	r.launch(ctx, ln)
	st := State{
		Kind: KindLab, Name: l.Name, PID: os.Getpid(), RunDir: l.RunDir, Socket: r.Socket,
		PolicyFile: opts.PolicyFile, Started: gw.Started(), MTU: l.Client.Dev.MTU(), Device: l.Device,
		Client: SideState{l.Client.Namespace, lab.LinkName, l.Client.Addr4.String(), l.Client.Addr6.String()},
		Server: SideState{l.Server.Namespace, lab.LinkName, l.Server.Addr4.String(), l.Server.Addr6.String()},
		NAT:    []string{lab.NATAddr4.String(), lab.NATAddr6.String()},
		Policy: pol,
	}
	if err := writeState(l.RunDir, st); err != nil {
		return nil, errors.Join(err, r.Stop())
	}
	return r, nil
}

// launch runs the gateway and serves the control API on ln until ctx is done or
// either stops; Done is closed when both have.
func (r *Running) launch(ctx context.Context, ln net.Listener) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	var gerr, serr error
	go func() {
		defer wg.Done()
		gerr = r.Gateway.Run(ctx)
		r.cancel()
	}()
	go func() {
		defer wg.Done()
		serr = r.Gateway.serve(ctx, ln)
		r.cancel()
	}()
	go func() {
		wg.Wait()
		r.err = errors.Join(gerr, serr)
		close(r.done)
	}()
}

// writeState writes what `lab show` prints to the run directory.
func writeState(runDir string, st State) error {
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

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// Kinds of run directory, control.Lab.Kind.
const (
	KindLab   = control.KindLab
	KindWedge = control.KindWedge
)

// WedgeNetworks are the networks of wedge w whose NAT addresses are nat, for the
// engine to route by: the one place they are computed, at start and after each
// re-attach. Each side's addresses are host prefixes (/32, /128), on purpose: two
// containers on one bridge share a subnet, so their subnets say nothing of which
// side an address is on. The NAT addresses are the gateway's own.
func WedgeNetworks(w *lab.Wedge, nat []netip.Addr) policy.Networks {
	in, out := w.Networks()
	return policy.Networks{Inside: in, Outside: out, Gateway: append([]netip.Addr(nil), nat...)}
}

// WedgeOptions tune StartWedge.
type WedgeOptions struct {
	LabOptions
	// Follow re-attaches a side whose namespace went away (a container that
	// restarted) as soon as its target resolves again; without it the wedge ends.
	Follow bool
	// Say, if not nil, gets one line for people each time a side goes away or
	// comes back; if nil, the log gets it as a warning.
	Say func(string)
	// FollowEvery is how often a side that went away is looked for; 0 means 250 ms.
	FollowEvery time.Duration
	// WatchEvery is how often each side is checked to be still there
	// (lab.Wedge.Present); 0 means 250 ms.
	WatchEvery time.Duration
}

// wedgeRun is the part of Running that only a wedge has.
type wedgeRun struct {
	w      *lab.Wedge
	eng    *policy.Engine
	devs   [2]*sideDevice
	opts   WedgeOptions
	natOff string
	nat    []netip.Addr

	mu      sync.Mutex // guards gone, ended
	gone    [2]bool
	ended   string // why the wedge ended by itself, "" if it did not
	adopted int
}

// StartWedge puts a gateway with policy pol (in real units, scaled by
// opts.TimeScale as StartLab does) between two existing namespaces and serves the
// same control API as a lab's. A NAT policy translates to the addresses cfg.NAT
// gives (B routes them back through the wedge); with none, it runs with NAT off,
// and control.Wedge.NATOff says so. TCP connections open between A and B before
// the wedge are adopted (policy.Engine.Adopt). The engine routes by
// WedgeNetworks. Stop takes the wedge out; so does a failure of StartWedge
// itself, and so does a side whose namespace goes away, unless opts.Follow (see
// Running.Ended).
func StartWedge(ctx context.Context, cfg lab.WedgeConfig, pol policy.Policy, opts WedgeOptions) (*Running, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.FollowEvery <= 0 {
		opts.FollowEvery = 250 * time.Millisecond
	}
	if opts.WatchEvery <= 0 {
		opts.WatchEvery = 250 * time.Millisecond
	}
	wr := &wedgeRun{opts: opts}
	switch {
	case len(cfg.NAT) > 0:
		pol.NAT.Enabled = true
		pol.NAT.Outside = append([]netip.Addr(nil), cfg.NAT...)
		wr.nat = pol.NAT.Outside
	case pol.NAT.Enabled:
		pol.NAT.Enabled = false
		wr.natOff = "the policy translates addresses, and no --nat-addr was given: NAT is off; give --nat-addr ADDR (an address neither side uses; B routes it back through the wedge) to turn it on"
	}
	eng, run, scale, err := newEngine(pol, &opts.LabOptions)
	if err != nil {
		return nil, err
	}
	wr.eng = eng
	mln, err := listenMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	w, err := lab.UpWedge(cfg)
	if err != nil {
		closeListener(mln)
		return nil, err
	}
	wr.w = w
	fail := func(err error) (*Running, error) {
		closeListener(mln)
		return nil, errors.Join(err, w.Down())
	}
	keys := make([]conntrack.Key, 0, len(w.Open))
	for _, f := range w.Open {
		keys = append(keys, conntrack.MakeKey(conntrack.ProtoTCP, f.Local, f.Remote))
	}
	wr.adopted = eng.Adopt(keys)
	for i := range wr.devs {
		wr.devs[i] = newSideDevice(policy.Side(i), w.Sides[i].Dev, nil)
	}
	gw, err := New(Config{Inside: wr.devs[0], Outside: wr.devs[1], Engine: eng, Log: opts.Log, Now: opts.Now})
	if err != nil {
		return fail(err)
	}
	sock := filepath.Join(w.RunDir, SocketFile)
	st := control.Lab{
		Kind: KindWedge, Name: w.Name, PID: os.Getpid(), RunDir: w.RunDir, Socket: sock,
		PolicyFile: opts.PolicyFile, Started: gw.Started(), Device: w.Device, NAT: []string{},
		PolicyView: control.PolicyView{Profile: opts.Profile, TimeScale: scale, Policy: pol},
	}
	if mln != nil {
		st.Metrics = mln.Addr().String()
	}
	if scale != 1 {
		st.InForce = run
	}
	for _, a := range wr.nat {
		st.NAT = append(st.NAT, a.String())
	}
	if err := wr.apply(&st); err != nil {
		return fail(err)
	}
	// The state file goes first: whoever sees the control socket (a helper
	// container's caller waits for it) can read the wedge's description.
	if err := writeState(w.RunDir, st); err != nil {
		return fail(err)
	}
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
	gw.setLab(st)
	r := &Running{Gateway: gw, Engine: eng, Socket: sock, Metrics: st.Metrics, Wedge: w, wedge: wr, down: w.Down}
	for i := range wr.devs {
		wr.devs[i].gone = r.sideGone
	}
	r.launch(ctx, ln, mln)
	go r.watch()
	return r, nil
}

// apply brings the description l and the engine's networks up to date with the
// wedge's sides, at start and after each re-attach.
func (wr *wedgeRun) apply(l *control.Lab) error {
	l.MTU = wr.w.Side(0).MTU
	nets := WedgeNetworks(wr.w, wr.nat)
	ws := &control.Wedge{Follow: wr.opts.Follow, Adopted: wr.adopted, NATOff: wr.natOff, Networks: control.NetworksOf(nets)}
	for i := range ws.Sides {
		s := wr.w.Side(i)
		ss := control.WedgeSide{Target: s.Target.String(), NetnsID: s.NetnsID, Link: s.Link, MTU: s.MTU, Via: s.Via,
			Addrs: strs(s.Addrs), Peers: strs(s.Peers), Routes: strs(s.Routes)}
		ws.Sides[i] = ss
		side := control.Side{Namespace: ss.Target, Link: s.Link}
		for _, a := range s.Addrs {
			if a.Is4() {
				side.Addr4 = a.String()
			} else {
				side.Addr6 = a.String()
			}
		}
		if i == 0 {
			l.Client = side
		} else {
			l.Server = side
		}
	}
	l.Wedge = ws
	if err := wr.eng.SetNetworks(nets); err != nil {
		return fmt.Errorf("route by the wedge's addresses: %w", err)
	}
	return nil
}

func strs[T fmt.Stringer](l []T) []string {
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = x.String()
	}
	return out
}

// sideGone is called once by a side's device when the kernel took its TUN away.
func (r *Running) sideGone(side policy.Side, err error) {
	wr := r.wedge
	i := int(side)
	s := wr.w.Side(i)
	name := string(rune('A' + i))
	wr.mu.Lock()
	wr.gone[i] = true
	both := wr.gone[0] && wr.gone[1]
	wr.mu.Unlock()
	var msg string
	var v vanished
	if errors.As(err, &v) {
		msg = fmt.Sprintf("side %s (%s) is gone: %s", name, s.Target, v.why)
	} else {
		msg = fmt.Sprintf("side %s (%s) is gone: its network namespace went away, and the kernel removed the TUN in it (%s); "+
			"the container stopped or restarted, or the namespace was deleted", name, s.Target, readError(err))
	}
	follow := wr.opts.Follow && !both
	switch {
	case follow:
		msg += fmt.Sprintf("; waiting for %s to come back (--follow)", s.Target)
	case both:
		msg += "; both sides are gone, so the wedge ends"
	default:
		msg += "; the wedge ends (with --follow it would wait for the side to come back)"
	}
	r.Gateway.Notice(control.Event{Type: control.EventGone, Side: name, Target: s.Target.String(), Message: msg})
	wr.say(msg)
	if follow {
		go r.follow(i)
		return
	}
	wr.mu.Lock()
	wr.ended = msg
	wr.mu.Unlock()
	r.cancel()
}

func (wr *wedgeRun) say(msg string) {
	if wr.opts.Say != nil {
		wr.opts.Say(msg)
		return
	}
	wr.opts.Log.Warn(msg)
}

// follow looks for side i's target until it resolves to a namespace again, then
// attaches the side there and hands the new TUN to its device.
func (r *Running) follow(i int) {
	wr := r.wedge
	t := time.NewTicker(wr.opts.FollowEvery)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		dev, err := wr.w.Reattach(i)
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			if !errors.Is(err, lab.ErrNoSuchNamespace) && err.Error() != last {
				wr.opts.Log.Info("side not back yet", "side", i, "err", err)
			}
			last = err.Error()
			continue
		}
		s := wr.w.Side(i)
		name := string(rune('A' + i))
		// The engine routes by the side's new addresses before its first packet.
		var aerr error
		st := r.Gateway.updateLab(func(l *control.Lab) { aerr = wr.apply(l) })
		if aerr != nil {
			dev.Close()
			msg := fmt.Sprintf("side %s (%s) is back, but the gateway cannot route by its addresses (%v); the wedge ends", name, s.Target, aerr)
			wr.say(msg)
			wr.mu.Lock()
			wr.ended = msg
			wr.mu.Unlock()
			r.cancel()
			return
		}
		wr.devs[i].swap(dev)
		msg := fmt.Sprintf("side %s (%s) is back: the wedge is in its new network namespace net:[%d] (%s, MTU %d)",
			name, s.Target, s.NetnsID, joinAddrs(s.Addrs), s.MTU)
		wr.mu.Lock()
		wr.gone[i] = false
		wr.mu.Unlock()
		if err := writeState(wr.w.RunDir, st); err != nil {
			wr.opts.Log.Error("update the state file", "err", err)
		}
		r.Gateway.Notice(control.Event{Type: control.EventAttach, Side: name, Target: s.Target.String(), Message: msg})
		wr.say(msg)
		return
	}
}

func joinAddrs(l []netip.Addr) string {
	s := ""
	for i, a := range l {
		if i > 0 {
			s += ", "
		}
		s += a.String()
	}
	return s
}

// Ended says why a wedge ended by itself (a side's namespace went away without
// --follow), after Done is closed; "" if it did not (Stop, or a failure: Err).
func (r *Running) Ended() string {
	if r.wedge == nil {
		return ""
	}
	r.wedge.mu.Lock()
	defer r.wedge.mu.Unlock()
	return r.wedge.ended
}

// WedgeState returns the wedge's description as GET /v1/lab answers it, or nil
// for a lab.
func (r *Running) WedgeState() *control.Lab {
	if r.wedge == nil {
		return nil
	}
	l := r.Gateway.Lab()
	return &l
}

// readError names what a read of a TUN the kernel removed returned: EBADFD, which
// the tun package reports as os.ErrClosed.
func readError(err error) string {
	if errors.Is(err, os.ErrClosed) {
		return "its reads fail with EBADFD"
	}
	return "reading it: " + err.Error()
}

// vanished is why watch found a side gone.
type vanished struct{ why string }

func (v vanished) Error() string { return v.why }

// watch asks, every WatchEvery, whether each side is still where the wedge put
// it (lab.Wedge.Present), and takes a side away that is not: its namespace may
// outlive the container for as long as orphaned TCP sockets hold it, and the TUN
// in it would never fail.
func (r *Running) watch() {
	wr := r.wedge
	t := time.NewTicker(wr.opts.WatchEvery)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		for i, d := range wr.devs {
			if d.isAway() {
				continue
			}
			if ok, why := wr.w.Present(i); !ok {
				d.takeAway(vanished{why})
			}
		}
	}
}

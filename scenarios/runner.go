package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/tun"
)

// Options tune one run.
type Options struct {
	// LabName names the lab; "" picks one unique to this process and run, so that
	// runs in parallel never collide.
	LabName string
	// Binary is the idlegate executable that runs the built-in agents
	// (`idlegate agent KIND`); "" means this process's own executable.
	Binary string
	// Pcap records what crosses the gateway to this new pcapng file; PcapForce
	// overwrites it if it exists (gateway.LabOptions).
	Pcap      string
	PcapForce bool
	// Capture keeps what crossed the gateway in the report (Report.Capture, an
	// idlegate pcapng) for a picture of the run, recorded to a temporary file when
	// Pcap is empty.
	Capture bool
}

// DefaultTimeout bounds a story whose file gives no timeout.
const DefaultTimeout = 60 * time.Second

// settle is how long the runner waits after the last step for the last events.
const settle = 300 * time.Millisecond

var labSeq atomic.Int64

// NewLabName returns a lab name unique to this process and call ("sc" + pid + n),
// within lab.MaxNameLen.
func NewLabName() string {
	return fmt.Sprintf("sc%d-%d", os.Getpid()%100000, labSeq.Add(1))
}

// runner is the state of one run.
type runner struct {
	sc    *Scenario
	opts  Options
	dir   string
	lab   *lab.Lab
	run   *gateway.Running
	tl    *timeline
	gw    *gwRecorder
	rep   *Report
	procs map[string]*proc
	vars  map[string]string
}

// Run plays the scenario in a fresh lab and checks its expectations. The lab, its
// namespaces and every process the story started are gone when Run returns, also
// when ctx is cancelled (Ctrl-C). The error is for a machine that cannot run a lab
// (not root, no /dev/net/tun) or a lab that cannot start; what went wrong in the
// story itself is in the report, whose Pass is then false.
func Run(ctx context.Context, sc *Scenario, opts Options) (*Report, error) {
	if opts.LabName == "" {
		opts.LabName = NewLabName()
	}
	if opts.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the idlegate binary for the agents: %w", err)
		}
		opts.Binary = exe
	}
	rep := &Report{Name: sc.Name, Title: sc.Title, File: sc.File, Lab: opts.LabName, Started: time.Now(), Policy: sc.Policy(), Profile: sc.Profile, Scale: sc.Scale}
	r := &runner{sc: sc, opts: opts, procs: map[string]*proc{}, tl: &timeline{start: time.Now()}}
	dir, err := os.MkdirTemp("", "idlegate-"+sc.Name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r.dir = dir

	pol := sc.Policy()
	pol.VerdictEvents = true // the timeline shows drops, resets and keepalive probes
	capPath := opts.Pcap
	if opts.Capture && capPath == "" {
		capPath = filepath.Join(dir, "run.pcapng")
	}
	run, err := gateway.StartLab(ctx, lab.Config{Name: opts.LabName}, pol, gateway.LabOptions{Pcap: capPath, PcapForce: opts.PcapForce})
	if err != nil {
		return nil, fmt.Errorf("scenario %s: start lab %s: %w", sc.Name, opts.LabName, err)
	}
	r.run, r.lab, r.rep = run, run.Lab, rep
	r.gw = &gwRecorder{tl: r.tl, pol: run.Engine.Policy}
	sub := run.Engine.Subscribe(1 << 16)
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		for ev := range sub.C {
			r.gw.record(ev)
		}
	}()
	// stopEvents ends the subscription and waits until the recorder has taken every
	// event the gateway sent before.
	stopEvents := func() {
		sub.Close()
		<-evDone
	}
	// Every exit path below ends here: processes, namespaces, lab.
	defer func() {
		r.cleanup()
		stopEvents()
		run.Stop()
	}()

	r.vars = map[string]string{
		"dir": dir, "lab": opts.LabName, "bin": opts.Binary,
		"client4": lab.ClientAddr4.String(), "server4": lab.ServerAddr4.String(),
		"client6": lab.ClientAddr6.String(), "server6": lab.ServerAddr6.String(),
		"nat4": lab.NATAddr4.String(), "nat6": lab.NATAddr6.String(),
	}
	r.prepare()

	var storyErr error
	if err := r.setup(ctx); err != nil {
		storyErr = err
	} else {
		r.tl.start = time.Now()
		storyErr = r.steps(ctx)
	}
	if storyErr == nil {
		time.Sleep(settle)
	}
	end := time.Now()
	rep.Duration = end.Sub(r.tl.start).Seconds()
	// What the expectations look at is taken now, before the cleanup's signals.
	stats := run.Engine.Stats()
	running := map[string]bool{}
	for name, p := range r.procs {
		running[name] = p.running()
	}
	if storyErr != nil {
		rep.Error = storyErr.Error()
		r.tl.add(end, colGateway, "STORY ABORTED: "+storyErr.Error())
	}
	if err := r.cleanup(); err != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("cleanup: %v", err))
	}
	// The processes are gone: no event the expectations count is still on its way.
	stopEvents()
	if opts.Capture {
		r.keepCapture(rep, capPath)
	}
	rep.Origin = r.tl.start
	rep.Timeline = r.tl.Rows(end)
	r.evaluate(rep, stats, running, end)
	if d := sub.Dropped(); d > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d gateway events were lost to a full buffer; port-filtered counts may be low", d))
	}
	rep.Pass = rep.Error == "" && rep.failed() == 0
	rep.Verdict = "PASS"
	if !rep.Pass {
		rep.Verdict = "FAIL"
	}
	return rep, nil
}

// prepare builds the processes of the story, their command lines with the variables
// expanded. The scenario itself is left as it is: it may be cached and run again, or
// run in parallel.
func (r *runner) prepare() {
	for _, p := range r.sc.Processes {
		col := colClient
		if p.Side == "server" {
			col = colServer
		}
		var argv []string
		if p.Agent != "" {
			argv = append([]string{r.opts.Binary, "agent", p.Agent, "--name", p.Name}, p.Args...)
		} else {
			argv = p.Command.argv()
		}
		r.procs[p.Name] = &proc{spec: p, argv: expandAll(argv, r.vars), done: make(chan struct{}), tl: r.tl, col: col}
	}
}

// setup writes the files and runs the setup commands.
func (r *runner) setup(ctx context.Context) error {
	for name, text := range r.sc.Files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(expand(text, r.vars)), 0o600); err != nil {
			return fmt.Errorf("write file %s: %w", name, err)
		}
	}
	for i, c := range r.sc.Setup {
		argv := expandAll(c.argv(), r.vars)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
		cmd.Dir = r.dir
		cmd.Env = append(os.Environ(), "HOME="+r.dir)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				return fmt.Errorf("setup[%d] (line %d): %s is not installed (run ./deps.sh as root): %w", i, c.Line, argv[0], err)
			}
			return fmt.Errorf("setup[%d] (line %d) %q failed: %v: %s", i, c.Line, c.String(), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// steps runs the story's steps within its timeout.
func (r *runner) steps(ctx context.Context) error {
	limit := time.Duration(r.sc.Timeout)
	if limit == 0 {
		limit = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for i, st := range r.sc.Steps {
		if err := r.step(ctx, st); err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("the story did not finish within its timeout %s (at step %d, line %d)", limit, i, st.Line)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted at step %d (line %d)", i, st.Line)
			}
			return fmt.Errorf("step %d (line %d): %w", i, st.Line, err)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *runner) step(ctx context.Context, st *Step) error {
	if st.At != nil {
		if err := sleep(ctx, time.Until(r.tl.start.Add(time.Duration(*st.At)))); err != nil {
			return err
		}
	}
	now := time.Now
	switch {
	case len(st.Start) > 0:
		for _, name := range st.Start {
			p := r.procs[name]
			r.tl.add(now(), p.col, "start "+name+": "+p.shortCommand(r.dir))
			if err := r.startProc(p); err != nil {
				r.tl.add(now(), p.col, "cannot start "+name+": "+err.Error())
				if errors.Is(err, exec.ErrNotFound) {
					return fmt.Errorf("%s is not installed (run ./deps.sh as root): %w", p.argv[0], err)
				}
				return err
			}
		}
	case st.Wait != nil:
		return sleep(ctx, time.Duration(*st.Wait))
	case st.Idle != nil:
		r.tl.add(now(), colGateway, fmt.Sprintf("(the story idles %s)", time.Duration(*st.Idle)))
		return sleep(ctx, time.Duration(*st.Idle))
	case st.Send != nil:
		p := r.procs[st.Send.To]
		text := st.Send.Text
		if !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		r.tl.add(now(), p.col, fmt.Sprintf("stdin of %s <- %q", p.spec.Name, strings.TrimSuffix(text, "\n")))
		if _, err := p.stdin.Write([]byte(text)); err != nil {
			r.tl.add(now(), p.col, fmt.Sprintf("stdin of %s: %v", p.spec.Name, err))
		}
	case len(st.CloseStdin) > 0:
		for _, name := range st.CloseStdin {
			p := r.procs[name]
			r.tl.add(now(), p.col, "stdin of "+name+" closed")
			p.stdin.Close()
		}
	case len(st.WaitExit) > 0:
		limit := defaultWaitExit
		if st.Timeout != nil {
			limit = time.Duration(*st.Timeout)
		}
		deadline := time.NewTimer(limit)
		defer deadline.Stop()
		for _, name := range st.WaitExit {
			p := r.procs[name]
			if p.cmd == nil {
				continue
			}
			select {
			case <-p.done:
			case <-deadline.C:
				r.tl.add(now(), p.col, fmt.Sprintf("%s still running after %s", name, limit))
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	case len(st.Kill) > 0:
		sig, name := syscall.SIGTERM, "TERM"
		if st.Signal != "" {
			sig, name = signals[st.Signal], st.Signal
		}
		for _, n := range st.Kill {
			p := r.procs[n]
			r.tl.add(now(), p.col, fmt.Sprintf("kill %s (SIG%s)", n, name))
			p.signal(sig, name)
		}
	case st.Blackhole != "":
		side := r.side(st.Blackhole)
		if err := linkSetDown(side.Namespace); err != nil {
			return err
		}
		r.tl.add(now(), sideCol(st.Blackhole), fmt.Sprintf("BLACKHOLE: %s link gw0 down, its packets vanish", st.Blackhole))
	case st.Restore != "":
		if err := linkRestore(r.side(st.Restore), st.Restore); err != nil {
			return err
		}
		r.tl.add(now(), sideCol(st.Restore), fmt.Sprintf("RESTORE: %s link gw0 up again", st.Restore))
	case st.Flush:
		at := now()
		n := r.run.Engine.Flush(at)
		r.rep.Actions = append(r.rep.Actions, Action{At: at, Flush: true})
		r.tl.add(at, colGateway, fmt.Sprintf("FLUSH: the gateway reboots and forgets %d entries", n))
	case len(st.Set) > 0:
		p := r.run.Engine.Policy()
		var kv []string
		for _, s := range st.Set {
			if err := p.Set(s.Key, s.Value); err != nil {
				return fmt.Errorf("set %s: %w", s.Key, err)
			}
			kv = append(kv, s.Key+"="+s.Value)
		}
		at := now()
		if err := r.run.Engine.SetPolicy(p); err != nil {
			return err
		}
		r.rep.Actions = append(r.rep.Actions, Action{At: at, Policy: &p, Set: kv})
		r.tl.add(at, colGateway, "POLICY "+strings.Join(kv, " "))
	case st.Note != "":
		r.tl.add(now(), colGateway, "# "+st.Note)
	}
	return nil
}

// keepCapture stops the gateway's recording and reads what it holds into the report.
func (r *runner) keepCapture(rep *Report, path string) {
	ended, err := r.run.Gateway.SetPcap("", false, control.Filter{})
	if err == nil && ended.Error != "" {
		rep.Warnings = append(rep.Warnings, "capture: "+ended.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("capture for the report: %v", err))
		return
	}
	rep.Capture = b
}

// shortCommand is the command line without the binary's directory, the scenario's
// temporary directory written ${dir}.
func (p *proc) shortCommand(dir string) string {
	argv := append([]string{filepath.Base(p.argv[0])}, p.argv[1:]...)
	if p.spec.Agent != "" {
		argv = append(argv[2:3:3], argv[5:]...) // KIND FLAGS: "agent" and --name NAME are implied
	}
	return strings.ReplaceAll(strings.Join(argv, " "), dir, "${dir}")
}

func (r *runner) side(name string) *lab.Side {
	if name == "server" {
		return &r.lab.Server
	}
	return &r.lab.Client
}

func sideCol(name string) int {
	if name == "server" {
		return colServer
	}
	return colClient
}

// cleanup stops every process (SIGTERM to its group, SIGKILL after a grace period)
// and kills whatever is left in the lab's namespaces. Idempotent. The error says
// what could not be killed.
func (r *runner) cleanup() error {
	var wg sync.WaitGroup
	for _, p := range r.procs {
		if p.cmd == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(2 * time.Second)
		}()
	}
	wg.Wait()
	var err error
	if r.lab != nil {
		err = errors.Join(reap(r.lab.Client.Namespace), reap(r.lab.Server.Namespace))
	}
	for _, p := range r.procs {
		if p.cmd != nil {
			p.closeOutput(500 * time.Millisecond)
		}
	}
	return err
}

// linkSetDown sets gw0 down inside namespace: nothing enters or leaves that side.
// The kernel also drops the link's routes; linkRestore puts them back.
func linkSetDown(namespace string) error {
	ns, err := lab.OpenNetns(namespace)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := ns.Netlink()
	if err != nil {
		return fmt.Errorf("blackhole %s: %w", namespace, err)
	}
	l, err := h.LinkByName(lab.LinkName)
	if err != nil {
		return fmt.Errorf("blackhole %s: %w", namespace, err)
	}
	if err := h.LinkSetDown(l); err != nil {
		return fmt.Errorf("blackhole %s: set %s down: %w", namespace, lab.LinkName, err)
	}
	return nil
}

// linkRestore sets gw0 up again with the side's addresses and routes.
func linkRestore(s *lab.Side, name string) error {
	ns, err := lab.OpenNetns(s.Namespace)
	if err != nil {
		return err
	}
	defer ns.Close()
	routes := []netip.Prefix{lab.InsideNet4, lab.InsideNet6}
	if name == "client" {
		routes = []netip.Prefix{lab.OutsideNet4, lab.OutsideNet6}
	}
	return tun.Configure(ns.Handle(), lab.LinkName, tun.LinkConfig{
		Addrs:  []netip.Prefix{netip.PrefixFrom(s.Addr4, 24), netip.PrefixFrom(s.Addr6, 64)},
		Routes: routes,
	})
}

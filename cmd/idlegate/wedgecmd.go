package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

type wedgeOpts struct {
	name, config, pcap, profile string
	metrics                     string
	scale                       float64
	detach, force, follow       bool
	sets                        []string
	peerA, peerB, nat           []string
}

func newWedgeCmd() *cobra.Command {
	o := wedgeOpts{name: wedgeName()}
	c := &cobra.Command{
		Use:   "wedge A B",
		Short: "Put the gateway between two namespaces or containers that already run",
		Long: `Put the gateway between two network namespaces that already exist: A, the inside
(client) side, and B, the outside (server) side, each written as

  netns:NAME        a named namespace (/run/netns/NAME: ip netns add, CNI)
  pid:PID           the namespace of process PID
  path:PATH         a namespace file (/proc/PID/ns/net, /run/docker/netns/ID)
  docker:CONTAINER  a running docker container (its CLI, else its API: DOCKER_HOST)
  podman:CONTAINER  a running podman container (its CLI, else its API: CONTAINER_HOST)
  ip:ADDR           the namespace with ADDR on an interface (a pod, by its pod IP)

Each side gets a TUN whose other end the gateway holds, with the MTU of the interface
that carries the peer today, and a host route (/32, /128) to the peer's address through
it, with the side's own address as source: only traffic between A and B crosses the
gateway. The addresses are the ones the kernel uses today, or --peer-a/--peer-b.
TCP connections open before the wedge keep going: the gateway picks them up mid-stream
(as Linux's nf_conntrack_tcp_loose does), whatever the policy says for connections it
forgets later. A NAT policy needs --nat-addr (B routes that address back through the
wedge); without it NAT is off, and the wedge says so.

The wedge comes out, leaving both routing tables exactly as they were, on
'idlegate wedge down', Ctrl-C, SIGTERM, an error, or when its process dies (the next
wedge or lab of the name removes what is left). A side whose namespace goes away (a
container stopped or restarted) ends the wedge, or with --follow is attached again in
its new namespace. The control socket, ct, policy, pcap, events and metrics are a lab's:
pass --name to them, and to 'idlegate lab show' (or set $IDLEGATE_LAB, the default --name
of every command, this one included, which otherwise names its wedge "wedge"); 'idlegate
lab list' lists wedges too. --metrics ADDR also serves GET /metrics over TCP, as lab up's.

Exit codes: 2 bad usage, A and B the same namespace, an address given that a side
lacks; 3 not root, no /dev/net/tun, no
docker or podman CLI or socket; 4 no such container, namespace or process, a container
not running, no route from A to B, a wedge already on the pair or the name in use.`,
		Example: `  sudo idlegate wedge docker:app docker:db --profile aws-nat-gateway --time-scale 0.01
  sudo idlegate wedge netns:client netns:server --set timeouts.tcp.established=3s --set orphan=reset --detach
  sudo idlegate wedge pid:4242 podman:db --follow --pcap /tmp/wedge.pcapng
  sudo idlegate wedge ip:10.244.1.7 ip:10.244.1.9 --name pods
  sudo idlegate wedge down`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && !strings.Contains(args[0], ":") {
				// Not a target: a subcommand mistyped.
				msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
				cmd.SuggestionsMinimumDistance = 2
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf(" (did you mean %q?)", s[0])
				}
				return usagef("%s; its commands are down and standby, or give two namespaces A and B, e.g. idlegate wedge docker:app docker:db", msg)
			}
			if len(args) != 2 {
				return usagef("wedge takes two namespaces, A (inside) and B (outside), e.g. idlegate wedge docker:app docker:db; got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return wedgeUp(cmd, args, o) },
	}
	nameFlag(c, &o.name)
	c.Flags().StringVar(&o.profile, "profile", "", "start from the built-in middlebox profile `NAME` (idlegate profiles lists them)")
	c.Flags().StringVar(&o.config, "config", "", "policy YAML `FILE` (over --profile, if both)")
	scaleFlag(c, &o.scale)
	c.Flags().StringArrayVar(&o.sets, "set", nil, "override one policy key, `KEY=VALUE` (repeatable)")
	c.Flags().StringVar(&o.pcap, "pcap", "", "record what crosses the gateway to this new pcapng `FILE` (mode 0600)")
	c.Flags().BoolVar(&o.force, "force", false, "with --pcap: overwrite the file if it exists")
	c.Flags().StringVar(&o.metrics, "metrics", "", "also serve GET /metrics over TCP at `ADDR`, e.g. 127.0.0.1:9477")
	c.Flags().BoolVar(&o.detach, "detach", false, "run the gateway in the background")
	c.Flags().BoolVar(&o.follow, "follow", false, "when a side's namespace goes away (a container restarts), wait for it and attach again")
	c.Flags().StringArrayVar(&o.peerA, "peer-a", nil, "the address of A the wedge carries, `ADDR` (one IPv4, one IPv6; default: discovered)")
	c.Flags().StringArrayVar(&o.peerB, "peer-b", nil, "the address of B the wedge carries, `ADDR` (one IPv4, one IPv6; default: discovered)")
	c.Flags().StringArrayVar(&o.nat, "nat-addr", nil, "NAT A's connections to `ADDR`, which B routes back through the wedge (one per family)")
	c.AddCommand(newWedgeDownCmd(), newWedgeStandbyCmd())
	return c
}

// wedgeName is the default --name of the wedge commands: $IDLEGATE_LAB, as for
// every command, else lab.DefaultWedgeName.
func wedgeName() string {
	if n := os.Getenv(labEnv); n != "" {
		return n
	}
	return lab.DefaultWedgeName
}

// kindWord names a lab's kind for messages: "lab" or "wedge".
func kindWord(kind string) string {
	if kind == control.KindWedge {
		return "wedge"
	}
	return "lab"
}

func newWedgeStandbyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "standby",
		Short: "Wait for SIGTERM, then take out every wedge of this machine",
		Long: `Do nothing until SIGTERM or Ctrl-C, then take out every wedge whose run directory is in
/run/idlegate, as 'idlegate wedge down' would. It is the command of a helper container
that stays up for wedges started in it later (a Kubernetes DaemonSet, docs/kubernetes.md):
when the helper is stopped, the wedges come out first.`,
		Example: "  idlegate wedge standby",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckHost(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintln(cmd.OutOrStdout(), "idlegate: standing by; SIGTERM takes out every wedge in "+lab.DefaultRunBase)
			<-ctx.Done()
			ents, _ := os.ReadDir(lab.DefaultRunBase)
			var errs []error
			for _, e := range ents {
				if e.IsDir() && lab.IsWedge(lab.RunDir(e.Name(), "")) {
					errs = append(errs, wedgeDown(cmd, e.Name()))
				}
			}
			return errors.Join(errs...)
		},
	}
}

func newWedgeDownCmd() *cobra.Command {
	name := wedgeName()
	c := &cobra.Command{
		Use:   "down",
		Short: "Take the wedge out: both routing tables as they were",
		Long: `Stop the wedge's gateway (SIGTERM, then SIGKILL after 5 s): its TUNs and their routes
leave both namespaces, and their routing tables are checked to be as before the wedge.
Leftovers of a wedge whose process was killed are removed too.`,
		Example: "  sudo idlegate wedge down\n  sudo idlegate wedge down --name pods",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return wedgeDown(cmd, name) },
	}
	nameFlag(c, &name)
	return c
}

// wedgeDown stops wedge name's gateway, removes what is left of it and checks
// that both routing tables are as before the wedge.
func wedgeDown(cmd *cobra.Command, name string) error {
	if err := lab.CheckName(name); err != nil {
		return usageError{err}
	}
	if err := lab.CheckHost(); err != nil {
		return err
	}
	rec, err := lab.ReadWedgeRecord(name, "")
	if err != nil {
		if lab.Exists(name, "") {
			return stateError{fmt.Sprintf("%q is a lab, not a wedge: run `idlegate lab down --name %s`", name, name), lab.ErrNoSuchLab}
		}
		return stateError{fmt.Sprintf("no wedge named %q is running; start one with `idlegate wedge A B --name %s`", name, name), lab.ErrNoSuchLab}
	}
	stopped := false
	if pid, ok := lab.Owner(name, ""); ok && pid != os.Getpid() {
		stopped = stopProcess(pid)
	}
	if err := lab.Cleanup(name, ""); err != nil && !(errors.Is(err, lab.ErrNoSuchLab) && stopped) {
		return err
	}
	if err := rec.Verify(); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wedge %q is out: %s and %s have their routing tables as before it\n", name, rec.Sides[0].Target, rec.Sides[1].Target)
	return nil
}

func parseAddrs(flag string, l []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range l {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, usagef("%s %q: give an IPv4 or IPv6 address", flag, s)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

func wedgeUp(cmd *cobra.Command, args []string, o wedgeOpts) error {
	if err := lab.CheckName(o.name); err != nil {
		return usageError{err}
	}
	if err := checkScale(o.scale); err != nil {
		return err
	}
	if o.metrics != "" {
		if _, _, err := net.SplitHostPort(o.metrics); err != nil {
			return usagef("--metrics %q: give HOST:PORT, e.g. 127.0.0.1:9477", o.metrics)
		}
	}
	var cfg lab.WedgeConfig
	cfg.Name = o.name
	for i, a := range args {
		t, err := lab.ParseTarget(a)
		if err != nil {
			return usageError{err}
		}
		if i == 0 {
			cfg.A = t
		} else {
			cfg.B = t
		}
	}
	var err error
	if cfg.PeerA, err = parseAddrs("--peer-a", o.peerA); err != nil {
		return err
	}
	if cfg.PeerB, err = parseAddrs("--peer-b", o.peerB); err != nil {
		return err
	}
	if cfg.NAT, err = parseAddrs("--nat-addr", o.nat); err != nil {
		return err
	}
	realPol, err := loadPolicyFrom(o.profile, o.config, o.sets)
	if err != nil {
		return err
	}
	if _, err := realPol.Scale(o.scale); err != nil {
		return usageError{err}
	}
	if o.detach {
		return wedgeDetached(cmd, args, o)
	}
	ready := readyPipe()
	fail := func(err error) error {
		err = wedgeError(err)
		if ready != nil {
			fmt.Fprintf(ready, "error %d %s\n", exitCode(err), err)
			ready.Close()
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The log goes to stderr until a detached gateway is up, then to its log file.
	logTo := &switchWriter{w: os.Stderr}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if ready != nil {
		signal.Ignore(syscall.SIGHUP)
	}
	out := cmd.OutOrStdout()
	opts := gateway.WedgeOptions{
		LabOptions: gateway.LabOptions{
			Pcap: absPath(o.pcap), PcapForce: o.force, PolicyFile: absPath(o.config), Log: log,
			Profile: strings.TrimSpace(o.profile), TimeScale: o.scale, Metrics: o.metrics,
		},
		Follow: o.follow,
	}
	if ready == nil {
		// In the foreground, a side going or coming is said on stdout.
		opts.Say = func(s string) { fmt.Fprintln(out, "idlegate:", s) }
	}
	run, err := gateway.StartWedge(ctx, cfg, realPol, opts)
	if err != nil {
		return fail(err)
	}
	if ready != nil {
		if f, err := os.OpenFile(filepath.Join(run.Wedge.RunDir, gateway.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			defer f.Close()
			logTo.set(f)
			os.Stdout, os.Stderr = f, f
		}
		fmt.Fprintln(ready, "ready")
		ready.Close()
	} else {
		printWedgeState(out, *run.WedgeState(), os.Getpid(), "")
		fmt.Fprintf(out, "gateway running; Ctrl-C or `idlegate wedge down --name %s` takes the wedge out\n", o.name)
	}
	log.Info("wedge running", "wedge", o.name, "pid", os.Getpid())
	select {
	case <-ctx.Done():
		log.Info("stopping", "wedge", o.name)
	case <-run.Done():
		if err := run.Err(); err != nil {
			log.Error("gateway stopped", "err", err)
		}
	}
	if err := run.Stop(); err != nil {
		return err
	}
	if ready == nil {
		fmt.Fprintf(out, "wedge %q is out: %s and %s have their routing tables as before it\n", o.name, cfg.A, cfg.B)
	}
	return nil
}

// wedgeError gives the wedge's errors the exit codes main.go documents.
func wedgeError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, lab.ErrSameNamespace), errors.Is(err, lab.ErrBadAddress):
		return usageError{err}
	case errors.Is(err, lab.ErrNoEngine):
		return stateError{msg, lab.ErrNotRoot} // the machine lacks what the command needs: exit 3
	case errors.Is(err, lab.ErrNoSuchNamespace), errors.Is(err, lab.ErrNoRoute), errors.Is(err, lab.ErrWedged):
		return stateError{msg, lab.ErrNoSuchLab} // exit 4
	}
	return err
}

// wedgeDetached starts `idlegate wedge` in its own session, waits until its
// gateway is up or it fails, and prints what it found from its state file.
func wedgeDetached(cmd *cobra.Command, args []string, o wedgeOpts) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	child := exec.Command(exe, append([]string{"wedge", args[0], args[1]}, flagArgs(cmd)...)...)
	child.Env = append(os.Environ(), readyFDEnv+"=3")
	child.ExtraFiles = []*os.File{w}
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start background gateway: %w", err)
	}
	w.Close()
	line, _ := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ready":
		pid := child.Process.Pid
		child.Process.Release()
		st, err := gateway.ReadState(o.name, "")
		if err != nil {
			return err
		}
		printWedgeState(cmd.OutOrStdout(), st, pid, "")
		fmt.Fprintf(cmd.OutOrStdout(), "gateway running in the background (pid %d); take the wedge out with `idlegate wedge down --name %s`\n", pid, o.name)
		return nil
	case strings.HasPrefix(line, "error "):
		child.Wait()
		code, msg, _ := strings.Cut(strings.TrimPrefix(line, "error "), " ")
		return detachedError{msg: msg, code: atoiOr(code, exitFailure)}
	default:
		child.Wait()
		return fmt.Errorf("the background gateway exited before it was ready; run without --detach to see why")
	}
}

// printWedgeState prints a wedge's sides, what it did with NAT and with the
// connections open before it, and its policy (in real units, st.TimeScale the
// scale it runs at). pid is its gateway's; status, if not "" (lab show), is how
// that gateway is: "running, up 5s" or "dead".
func printWedgeState(w io.Writer, st control.Lab, pid int, status string) {
	ws := st.Wedge
	if ws == nil {
		fmt.Fprintf(w, "wedge %s: gateway pid %d %s; its state file has no wedge description\n", st.Name, pid, status)
		return
	}
	if status == "" || strings.HasPrefix(status, "running") {
		up := ""
		if _, u, ok := strings.Cut(status, ", "); ok {
			up = ", " + u
		}
		fmt.Fprintf(w, "wedge %q is up between %s (A, inside) and %s (B, outside); gateway pid %d%s, %s TUN devices\n",
			st.Name, ws.Sides[0].Target, ws.Sides[1].Target, pid, up, st.Device)
	} else {
		fmt.Fprintf(w, "wedge %q between %s (A, inside) and %s (B, outside): gateway pid %d %s, %s TUN devices\n",
			st.Name, ws.Sides[0].Target, ws.Sides[1].Target, pid, status, st.Device)
	}
	for i, s := range ws.Sides {
		fmt.Fprintf(w, "  %c  %-22s net:[%d]  %s  MTU %d (as %s)  %s -> routes %s via the gateway\n",
			'A'+i, s.Target, s.NetnsID, s.Link, s.MTU, strings.Join(s.Via, ", "), strings.Join(s.Addrs, ", "), strings.Join(s.Routes, ", "))
	}
	fmt.Fprintf(w, "  open before the wedge: %d TCP connection(s), picked up mid-stream on their next packet as Linux's nf_conntrack_tcp_loose does, whatever the policy says for connections the gateway forgets later (orphan: %s)\n",
		ws.Adopted, st.Policy.Orphan)
	switch {
	case ws.NATOff != "":
		fmt.Fprintf(w, "  NAT     %s\n", ws.NATOff)
	case st.Policy.NAT.Enabled:
		fmt.Fprintf(w, "  NAT     A's connections leave as %s, which B routes back through the wedge\n", strings.Join(st.NAT, ", "))
	}
	pol, scale := &st.Policy, st.Scale()
	fmt.Fprintf(w, "  policy  tcp established %s, orphan %s, capacity %d (%s), refresh %s\n",
		policy.FormatScaled(time.Duration(pol.Timeouts.TCP.Established), scale), pol.Orphan, pol.Capacity, pol.OnFull, pol.Refresh)
	if scale != 1 {
		fmt.Fprintf(w, "  time scale %g: every timeout runs scaled\n", scale)
	}
	if st.Metrics != "" && status == "" {
		fmt.Fprintf(w, "  metrics http://%s/metrics\n", st.Metrics)
	}
	fmt.Fprintf(w, "  run dir %s (ct, policy, pcap, events: --name %s)\n", st.RunDir, st.Name)
}

// switchWriter is an io.Writer whose destination can change while loggers use it.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

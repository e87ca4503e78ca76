package idlegatetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/tun"
)

// Lab is a running lab: a client and a server network namespace with idlegate's
// gateway between them, in this process. Its methods are safe for concurrent use.
type Lab struct {
	run            *gateway.Running
	client, server *lab.Netns
	rec            recorder

	// Fixed at start: the name, each side's namespace (as ClientNamespace says)
	// and addresses, IPv4 and IPv6 (zero if the side has none), client first.
	name  string
	ns    [2]string
	addr4 [2]netip.Addr
	addr6 [2]netip.Addr

	mu      sync.Mutex // guards real, profile, scale, closers, closed
	real    policy.Policy
	profile string
	scale   float64
	closers []io.Closer
	closed  bool

	stopRec   chan struct{}
	recDone   chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var labSeq atomic.Int64

// newName is a lab name unique to this process and call, within lab.MaxNameLen:
// "igt" + pid + "-" + n.
func newName() string { return fmt.Sprintf("igt%d-%d", os.Getpid(), labSeq.Add(1)) }

// New starts a lab for test t and removes it, with everything in it, when the test
// and its subtests end (t.Cleanup). A machine that cannot run a lab (not root, no
// /dev/net/tun) skips t with a message saying so, except in CI (the environment
// variable CI is "true", as GitHub Actions and GitLab CI set it), where a test that
// cannot run fails instead of passing unseen. Any other error fails t.
//
// When t fails, the cleanup logs the gateway's connection table and its last events
// before it removes the lab.
func New(t testing.TB, opts ...Option) *Lab {
	t.Helper()
	return forTest(t, func() (*Lab, error) { return Start(opts...) })
}

// forTest starts a lab or wedge with start for test t and closes it when the test
// ends: a machine that cannot run one skips t, except in CI, where it fails t; a
// test that failed gets the table and the last events in its log.
func forTest(t testing.TB, start func() (*Lab, error)) *Lab {
	t.Helper()
	if err := lab.CheckHost(); err != nil {
		msg := hostMessage(err)
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI=true, so this test fails instead of skipping", msg)
		}
		t.Skipf("%s (with CI=true this fails instead)", msg)
	}
	l, err := start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			l.logState(t)
		}
		if err := l.Close(); err != nil {
			t.Errorf("idlegatetest: %v", err)
		}
	})
	return l
}

// hostMessage says why this machine cannot run a lab and what to do.
func hostMessage(err error) string {
	if errors.Is(err, lab.ErrNotRoot) {
		return "idlegatetest: a lab needs root to create network namespaces and TUN devices: run the tests as root, e.g. go test -exec sudo ./..."
	}
	return "idlegatetest: " + err.Error()
}

// Start starts a lab outside a test (in TestMain, an example or a program); the
// caller must Close it. Its error says what went wrong in one sentence; it matches
// lab.ErrNotRoot or tun.ErrNoTUN when the machine cannot run a lab at all.
func Start(opts ...Option) (*Lab, error) {
	if c, err := collect(opts); err != nil {
		return nil, err
	} else if len(c.nat) > 0 {
		return nil, errors.New("idlegatetest: NATAddr is for a wedge: a lab translates to its own address, 198.19.0.1, with Set(\"nat.enabled\", \"true\")")
	}
	real, profile, scale, err := build(opts)
	if err != nil {
		return nil, err
	}
	run, err := startGateway(real, profile, scale)
	if err != nil {
		return nil, startError("start a lab", err)
	}
	l := &Lab{run: run, name: run.Lab.Name}
	for i, s := range []lab.Side{run.Lab.Client, run.Lab.Server} {
		l.ns[i], l.addr4[i], l.addr6[i] = s.Namespace, s.Addr4, s.Addr6
	}
	return l.begin(real, profile, scale, run.Lab.Client.Namespace, run.Lab.Server.Namespace, lab.OpenNetns)
}

// startError is the error of a gateway that did not start: the host's sentence
// when the machine cannot run one at all.
func startError(what string, err error) error {
	if errors.Is(err, lab.ErrNotRoot) || errors.Is(err, tun.ErrNoTUN) {
		return hostError{hostMessage(err), err}
	}
	return fmt.Errorf("idlegatetest: %s: %w", what, err)
}

// begin opens l's two namespaces by open(client) and open(server) and starts the
// event recorder; on error it takes l down again.
func (l *Lab) begin(real policy.Policy, profile string, scale float64, client, server string, open func(string) (*lab.Netns, error)) (*Lab, error) {
	l.real, l.profile, l.scale = real, profile, scale
	l.stopRec, l.recDone = make(chan struct{}), make(chan struct{})
	var err error
	if l.client, err = open(client); err == nil {
		l.server, err = open(server)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("idlegatetest: %w", err), l.Close())
	}
	l.rec.sub = l.run.Engine.Subscribe(recorderBuffer)
	go l.rec.run(l.stopRec, l.recDone)
	return l, nil
}

// hostError is hostMessage's sentence, matching the sentinel it says in other words.
type hostError struct {
	msg string
	err error
}

func (e hostError) Error() string { return e.msg }
func (e hostError) Unwrap() error { return e.err }

func startGateway(real policy.Policy, profile string, scale float64) (*gateway.Running, error) {
	return gateway.StartLab(context.Background(), lab.Config{Name: newName()}, real, gateway.LabOptions{Profile: profile, TimeScale: scale})
}

// Close stops the gateway and removes the lab: the sockets Dial, DialWith, Listen,
// ListenWith and ListenPacket made are closed, the recording (Pcap) ends, and the
// namespaces, links and run directory are removed. Sockets made any other way in the
// lab's namespaces (connections accepted from a listener, sockets made in InClient or
// InServer) are the caller's to close: once the lab is gone they reach nothing. Calls
// after the first return the first one's error.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		closers := l.closers
		l.closers = nil
		l.mu.Unlock()
		var errs []error
		for _, c := range closers {
			c.Close() // the test may have closed it already
		}
		if l.rec.sub != nil {
			close(l.stopRec)
			<-l.recDone
		}
		if ended, err := l.run.Gateway.SetPcap("", false, control.Filter{}); err != nil {
			errs = append(errs, err)
		} else if ended.Error != "" {
			errs = append(errs, fmt.Errorf("the pcap recording failed: %s", ended))
		}
		for _, ns := range []*lab.Netns{l.client, l.server} {
			if ns != nil {
				errs = append(errs, ns.Close())
			}
		}
		errs = append(errs, l.run.Stop())
		if n := l.rec.lost(); n > 0 {
			errs = append(errs, fmt.Errorf("lab %s: %d gateway events were lost (more than %d, or the recorder fell behind); Events() missed them", l.Name(), n, maxEvents))
		}
		if err := errors.Join(errs...); err != nil {
			l.closeErr = fmt.Errorf("close lab %s: %w", l.Name(), err)
		}
	})
	return l.closeErr
}

// Name is the lab's name, unique to this process and lab: the namespaces are
// NAME-client and NAME-server, and the control API's socket is
// /run/idlegate/NAME/control.sock, for `idlegate ct list --name NAME` and any
// program that speaks the control API.
func (l *Lab) Name() string { return l.name }

// ClientNamespace and ServerNamespace name the lab's network namespaces, as
// `ip netns exec NAME ...` takes them, to run real programs in the lab. A wedge's
// side given as netns:NAME is NAME too; any other side (docker:, pid:, path:, ip:)
// is its namespace file, /proc/PID/ns/net or a bind mount, as `nsenter --net=FILE`
// takes it.
func (l *Lab) ClientNamespace() string { return l.ns[0] }

// ServerNamespace names the server's network namespace (see ClientNamespace).
func (l *Lab) ServerNamespace() string { return l.ns[1] }

// ServerAddr is the server's IPv4 address, 198.19.0.2; ServerAddr6 its IPv6
// address, fd00:19::2. Servers in the server namespace listen on them. On a
// wedge they are B's addresses the wedge carries, and the zero Addr for a family
// it does not.
func (l *Lab) ServerAddr() netip.Addr { return l.addr4[1] }

// ServerAddr6 is the server's IPv6 address (see ServerAddr).
func (l *Lab) ServerAddr6() netip.Addr { return l.addr6[1] }

// ClientAddr is the client's IPv4 address, 198.18.0.2; with NAT on, the server
// sees connections come from 198.19.0.1 instead. On a wedge it is A's address,
// and with NATAddr the server sees that one.
func (l *Lab) ClientAddr() netip.Addr { return l.addr4[0] }

// ClientAddr6 is the client's IPv6 address, fd00:18::2 (see ClientAddr).
func (l *Lab) ClientAddr6() netip.Addr { return l.addr6[0] }

// InClient runs fn on an OS thread in the client namespace and returns its error.
// Sockets fn creates stay in the client namespace for their whole life and may be
// used from any goroutine afterwards; goroutines fn starts do not run in the
// namespace. fn runs on another goroutine: it must not call t.Fatal.
func (l *Lab) InClient(fn func() error) error { return l.client.Run(fn) }

// InServer runs fn in the server namespace, as InClient does in the client's.
func (l *Lab) InServer(fn func() error) error { return l.server.Run(fn) }

// Dial connects to address from the client namespace, with TCP keepalive off: only
// what a test sets keeps an idle connection alive (DialWith takes a net.Dialer).
// net.Dial itself turns keepalive on with Go's default of 15 s, which hides the
// failure behind any box whose timeout is longer. The host must be an IP address,
// such as the server's: no DNS runs in the lab.
func (l *Lab) Dial(network, address string) (net.Conn, error) {
	return l.DialWith(context.Background(), &net.Dialer{KeepAlive: -1}, network, address)
}

// DialWith connects to address from the client namespace with d, which says
// everything else: its KeepAliveConfig, Timeout, LocalAddr, Control. A zero
// net.Dialer has Go's default keepalive (15 s). The connection is closed with the
// lab if the test has not closed it.
func (l *Lab) DialWith(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	if err := checkLiteral("Dial", address); err != nil {
		return nil, err
	}
	var c net.Conn
	err := l.client.Run(func() (err error) {
		// With an IP address Dial tries it on this goroutine: the socket is made on
		// this thread, in the client namespace.
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, l.track(c)
}

// Listen listens on address (":7000" for every address of the server) in the
// server namespace, with TCP keepalive off on the connections it accepts (net.Listen
// turns on Go's default of 15 s; ListenWith takes a net.ListenConfig). The listener
// is closed with the lab; the connections it accepts are the caller's.
func (l *Lab) Listen(network, address string) (net.Listener, error) {
	return l.ListenWith(context.Background(), &net.ListenConfig{KeepAlive: -1}, network, address)
}

// ListenWith listens on address in the server namespace with lc.
func (l *Lab) ListenWith(ctx context.Context, lc *net.ListenConfig, network, address string) (net.Listener, error) {
	if err := checkLiteral("Listen", address); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := l.server.Run(func() (err error) {
		ln, err = lc.Listen(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ln, l.track(ln)
}

// ListenPacket opens a UDP (or other packet) socket on address in the server
// namespace; it is closed with the lab.
func (l *Lab) ListenPacket(network, address string) (net.PacketConn, error) {
	if err := checkLiteral("ListenPacket", address); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err := l.server.Run(func() (err error) {
		var lc net.ListenConfig
		pc, err = lc.ListenPacket(context.Background(), network, address)
		return err
	})
	if err != nil {
		return nil, err
	}
	return pc, l.track(pc)
}

// track keeps c to close with the lab, or closes it if the lab is already closed.
func (l *Lab) track(c io.Closer) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return fmt.Errorf("lab %s is closed", l.Name())
	}
	l.closers = append(l.closers, c)
	return nil
}

// checkLiteral refuses a host name: it would be resolved (perhaps on other
// goroutines, outside the namespace), and nothing in a lab answers DNS.
func checkLiteral(what, address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("idlegatetest: %s %q: want HOST:PORT, e.g. 198.19.0.2:7000", what, address)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("idlegatetest: %s %q: give an IP address (the server is %s or [%s]); no DNS runs in the lab", what, address, lab.ServerAddr4, lab.ServerAddr6)
	}
	return nil
}

// now reads the gateway's clock, the one its engine runs on.
func (l *Lab) now() time.Time { return l.run.Gateway.Now() }

// Table is a snapshot of the gateway's live connections, as `idlegate ct list`
// shows them (conntrack -L): tuples, state, time left, counters. The order is
// unspecified.
func (l *Lab) Table() []conntrack.EntryInfo { return l.run.Engine.List(l.now(), nil) }

// Stats are the gateway's counters: packets per verdict and reason, and the
// table's (entries created, destroyed per reason, keepalive probes seen).
func (l *Lab) Stats() policy.Stats { return l.run.Engine.Stats() }

// Flush forgets every connection and NAT mapping, as a middlebox reboot does, and
// returns how many connections it forgot (each gets a DESTROY event, reason
// flushed). Their next packets are orphans: the policy's orphan rule answers them.
func (l *Lab) Flush() int { return l.run.Engine.Flush(l.now()) }

// expireWait bounds how long Expire waits for the gateway's sweep.
const expireWait = 2 * time.Second

// Expire makes the live connections f picks (the zero Filter: every one) expire now, as
// their idle timeout would have ended them, and returns how many it expired. It is
// the fast-forward of an idle period: the next packet of each is an orphan. The
// gateway's sweep (every 20 ms) destroys them: Expire returns once their DESTROY
// events (reason expired) are in Events, and the RSTs of reset_on_expire, if the
// policy has it, are sent at once after those.
func (l *Lab) Expire(f control.Filter) int {
	match := f.Match()
	var keys []conntrack.Key
	pick := func(e *conntrack.EntryInfo) bool {
		if match != nil && !match(e) {
			return false
		}
		keys = append(keys, e.Orig)
		return true
	}
	since := l.rec.len()
	n := l.run.Engine.SetTimeLeft(l.now(), pick, 0)
	l.rec.awaitDestroyed(since, keys, expireWait)
	return n
}

// Policy is the policy in force, in real (unscaled) units: the base, with every
// Set applied. The gateway runs it at TimeScale.
func (l *Lab) Policy() policy.Policy {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.real
}

// TimeScale is the factor every timeout of the policy runs at (1: none).
func (l *Lab) TimeScale() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.scale
}

// SetPolicy changes keys of the running gateway's policy, as `idlegate policy set`
// does: each option is a Set, in real units, and they apply all or none. Open
// connections keep their entries: the new timeouts apply to them at once, counted
// from each one's last packet, so that a shorter timeout can end one at once.
// Capacity and NAT cannot change while a lab runs, nor can the profile, base policy
// or time scale it started from (start another lab for another box): such a change
// is refused with a sentence saying so, and nothing changes.
func (l *Lab) SetPolicy(sets ...Option) error {
	c, err := collect(sets)
	if err != nil {
		return err
	}
	if c.base != nil || c.scale != 0 || len(c.nat) > 0 {
		return fmt.Errorf("idlegatetest: SetPolicy takes Set options only: the profile, base policy, time scale and NAT address are fixed when the lab starts; start another lab for another box")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := c.applySets(l.real); err != nil {
		return err // the key or value, said as Set gave it
	}
	var kvs []string
	for _, kv := range c.sets {
		kvs = append(kvs, kv[0]+"="+kv[1])
	}
	view, err := l.run.Gateway.SetPolicy(kvs)
	if err != nil {
		return fmt.Errorf("idlegatetest: %w", err)
	}
	l.real = view.Policy
	return nil
}

// Advice is `idlegate advise` for the policy in force: one set of TCP keepalive
// settings (Advice.Keepalive) that keeps a connection alive through the box at its
// time scale, the same rule written out for Go, libpq, Redis, nginx and the rest
// (Advice.Items), and what the settings are in production (Advice.RealKeepalive)
// when the lab runs scaled. Advice.TooShort says why no TCP setting fits a box
// whose scaled timeout is below 3 s.
func (l *Lab) Advice() policy.Advice {
	l.mu.Lock()
	real, profile, scale := l.real, l.profile, l.scale
	l.mu.Unlock()
	a := policy.Advise(real, scale)
	a.Source, a.Profile = "lab "+l.Name(), profile
	return a
}

// Pcap records what crosses the gateway to a new pcapng file at path (mode 0600;
// an existing file is refused), each packet with its verdict as a comment, until
// the next Pcap call or Close; Pcap("") stops recording. `idlegate replay` reads
// the file, and so does Wireshark.
func (l *Lab) Pcap(path string) error {
	ended, err := l.run.Gateway.SetPcap(path, false, control.Filter{})
	if err != nil {
		return fmt.Errorf("idlegatetest: %w", err)
	}
	if ended.Error != "" {
		return fmt.Errorf("idlegatetest: the previous recording failed: %s", ended)
	}
	return nil
}

// Events returns, in order, every event the gateway published since the lab
// started: NEW, UPDATE and DESTROY of connections (with Set("verdict_events",
// "true"), one VERDICT per packet too), as typed values. Each call returns a new
// slice that includes everything published before the call.
func (l *Lab) Events() []policy.Event { return l.rec.snapshot() }

// logState logs the table and the last events, for a test that failed.
func (l *Lab) logState(t testing.TB) {
	t.Helper()
	rows := l.Table()
	slices.SortFunc(rows, func(a, b conntrack.EntryInfo) int { return a.Created.Compare(b.Created) })
	t.Logf("idlegatetest: lab %s, policy %s at time scale %g; %d connections:", l.Name(), l.summary(), l.TimeScale(), len(rows))
	for _, e := range rows {
		t.Logf("  %s %s, %s left", e.Orig, e.State, e.TimeLeft.Round(time.Millisecond))
	}
	evs := l.Events()
	const last = 50
	if len(evs) > last {
		t.Logf("idlegatetest: the last %d of %d events:", last, len(evs))
		evs = evs[len(evs)-last:]
	} else {
		t.Logf("idlegatetest: %d events:", len(evs))
	}
	start := l.run.Gateway.Started()
	for _, ev := range evs {
		t.Logf("  %8.3fs %s", ev.Time.Sub(start).Seconds(), ev)
	}
}

func (l *Lab) summary() string {
	l.mu.Lock()
	p, profile := l.real, l.profile
	l.mu.Unlock()
	s := fmt.Sprintf("tcp established %s, orphan %s", p.Timeouts.TCP.Established, p.Orphan)
	if profile != "" {
		s = "profile " + profile + ", " + s
	}
	return s
}

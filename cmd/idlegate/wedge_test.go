package main_test

// The wedge's checks from the command line (issue 10): two namespaces joined the
// way docker joins two containers, with the gateway put between them by `idlegate
// wedge` and taken out again.
//
//	                 NAME-h ("the host")
//	          br0 198.18.N.1/24  fd00:N::1/64
//	            |                      |
//	          vx (veth)              vy (veth)
//	            |                      |
//	  A: eth0 198.18.N.2/24     B: eth0 198.18.N.3/24
//	     fd00:N::2/64              fd00:N::3/64
//	     default via .1            default via .1
//
// With the wedge in, A has 198.18.N.3/32 and fd00:N::3/128 through its TUN, B
// the reverse, so A and B talk through the gateway and nothing else changes.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
)

// nsSide is one end of a test pair: a named namespace, or a process's.
type nsSide struct {
	name string // /run/netns name, or ""
	pid  int    // with name "": the process whose namespace it is
	addr netip.Addr
	ip6  netip.Addr
}

func (s nsSide) target() string {
	if s.name != "" {
		return "netns:" + s.name
	}
	return "pid:" + strconv.Itoa(s.pid)
}

func (s nsSide) open(t *testing.T) *lab.Netns {
	t.Helper()
	var n *lab.Netns
	var err error
	if s.name != "" {
		n, err = lab.OpenNetns(s.name)
	} else {
		n, err = lab.OpenNetnsPID(s.pid)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ip runs ip(8) in the side's namespace.
func (s nsSide) ip(t *testing.T, args ...string) string {
	t.Helper()
	var cmd *exec.Cmd
	if s.name != "" {
		cmd = exec.Command("ip", append([]string{"-n", s.name}, args...)...)
	} else {
		cmd = exec.Command("nsenter", append([]string{"-t", strconv.Itoa(s.pid), "-n", "ip"}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	return string(out)
}

// routes is the side's routing table as `ip -j route` and `ip -j -6 route` show it.
func (s nsSide) routes(t *testing.T) string {
	t.Helper()
	return s.ip(t, "-j", "route") + s.ip(t, "-j", "-6", "route")
}

// links lists the side's links, by name.
func (s nsSide) links(t *testing.T) []string {
	t.Helper()
	var l []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(s.ip(t, "-j", "link")), &l); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range l {
		names = append(names, x.Name)
	}
	return names
}

// dockerPair is A and B on a bridge in a third namespace.
type dockerPair struct {
	host string
	net  int
	a, b nsSide
}

var pairNets sync.Map // third octets in use by this test binary

// newPair builds the topology drawn at the top of this file; with pidA, side A
// is the namespace of a process started in a new network namespace (unshare -n)
// instead of a named one. Everything is removed at cleanup.
func newPair(t *testing.T, n int, pidA bool) *dockerPair {
	t.Helper()
	if _, dup := pairNets.LoadOrStore(n, true); dup {
		t.Fatalf("subnet 198.18.%d.0/24 used by two tests", n)
	}
	id := uniqueName("")
	p := &dockerPair{host: "wh-" + id, net: n}
	p.a = nsSide{name: "wa-" + id, addr: p.addr(2), ip6: p.addr6(2)}
	p.b = nsSide{name: "wb-" + id, addr: p.addr(3), ip6: p.addr6(3)}
	t.Cleanup(func() {
		for _, ns := range []string{p.a.name, p.b.name, p.host} {
			if ns != "" {
				exec.Command("ip", "netns", "delete", ns).Run()
			}
		}
	})
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", p.host)
	if pidA {
		cmd := exec.Command("unshare", "-n", "sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatalf("unshare -n: %v", err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		// unshare(1) unshares, then execs sleep: wait until the process is sleep,
		// in its own namespace.
		self, _ := os.Readlink("/proc/self/ns/net")
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
			ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
			if strings.HasSuffix(exe, "/sleep") && ns != self {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("unshare -n sleep 600 did not get to sleep in a namespace of its own")
			}
		}
		p.a.name, p.a.pid = "", cmd.Process.Pid
	} else {
		run("ip", "netns", "add", p.a.name)
	}
	run("ip", "netns", "add", p.b.name)
	h := nsSide{name: p.host}
	h.ip(t, "link", "add", "br0", "type", "bridge")
	h.ip(t, "link", "set", "br0", "up")
	h.ip(t, "addr", "add", p.addr(1).String()+"/24", "dev", "br0")
	h.ip(t, "addr", "add", p.addr6(1).String()+"/64", "dev", "br0", "nodad")
	p.plug(t, "vx", p.a)
	p.plug(t, "vy", p.b)
	return p
}

func (p *dockerPair) addr(host int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(p.net), byte(host)})
}

func (p *dockerPair) addr6(host int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:%x::%d", p.net, host))
}

// plug joins side s to the bridge through veth hostEnd, as docker does.
func (p *dockerPair) plug(t *testing.T, hostEnd string, s nsSide) {
	t.Helper()
	h := nsSide{name: p.host}
	where := s.name
	if where == "" {
		where = strconv.Itoa(s.pid)
	}
	h.ip(t, "link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", where)
	h.ip(t, "link", "set", hostEnd, "master", "br0", "up")
	s.ip(t, "link", "set", "lo", "up")
	s.ip(t, "link", "set", "eth0", "up")
	s.ip(t, "addr", "add", s.addr.String()+"/24", "dev", "eth0")
	s.ip(t, "addr", "add", s.ip6.String()+"/64", "dev", "eth0", "nodad")
	s.ip(t, "route", "add", "default", "via", p.addr(1).String())
}

// nsEchoServer is a TCP echo server listening in a namespace.
type nsEchoServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func serveEcho(t *testing.T, n *lab.Netns, at netip.Addr) *nsEchoServer {
	t.Helper()
	e := &nsEchoServer{}
	if err := n.Run(func() (err error) {
		e.ln, err = net.Listen("tcp", netip.AddrPortFrom(at, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := e.ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *nsEchoServer) port() uint16 { return uint16(e.ln.Addr().(*net.TCPAddr).Port) }

// close ends the server and its connections, so that its namespace holds no
// socket of this process.
func (e *nsEchoServer) close() {
	e.ln.Close()
	e.mu.Lock()
	for _, c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
}

// dialFrom opens a TCP connection from namespace n; with keepalive, probes go
// out after 1 s idle, every second.
func nsDial(t *testing.T, n *lab.Netns, to netip.AddrPort, keepalive bool) *net.TCPConn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
	if keepalive {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 9}
	}
	var c net.Conn
	if err := n.Run(func() (err error) {
		c, err = d.Dial("tcp", to.String())
		return err
	}); err != nil {
		t.Fatalf("dial %s: %v", to, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// echo sends msg on c and reads it back.
func nsEcho(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q came back as %q", msg, buf)
	}
	return nil
}

// cleanupWedge takes wedge name out at the end of the test whatever happened.
func cleanupWedge(t *testing.T, name string) {
	t.Cleanup(func() {
		idlegate(t, "wedge", "down", "--name", name)
		if pid, err := lab.ReadPID(name, ""); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
			waitDead(pid, 5*time.Second)
		}
		lab.Cleanup(name, "")
	})
}

// ctRows is `ct list -o json` of lab or wedge name.
func ctRows(t *testing.T, name string) []control.Conn {
	t.Helper()
	r := want(t, 0, "ct", "list", "--name", name, "-o", "json")
	var rows []control.Conn
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("ct list -o json does not parse: %v\n%s", err, r.stdout)
	}
	return rows
}

// hasRow reports whether rows hold the TCP connection whose client end is local.
func hasRow(rows []control.Conn, local *net.TCPAddr) bool {
	for _, r := range rows {
		for _, tu := range []control.Tuple{r.Orig, r.Reply} {
			if r.Proto == "tcp" && tu.Src == local.IP.String() && tu.SrcPort == uint16(local.Port) {
				return true
			}
		}
	}
	return false
}

func wedgeState(t *testing.T, name string) control.Lab {
	t.Helper()
	st, err := gateway.ReadState(name, "")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func wantNoWedgeLinks(t *testing.T, sides ...nsSide) {
	t.Helper()
	for _, s := range sides {
		for _, l := range s.links(t) {
			if strings.HasPrefix(l, "ig") {
				t.Errorf("%s still has link %s", s.target(), l)
			}
		}
	}
}

// TestWedgeIdleAndKeepalive is check 1 of issue 10: `wedge netns:A netns:B` with
// a 3 s timeout and orphan reset between two namespaces built as docker builds
// them. A connection opened after the wedge and left idle gets ECONNRESET; one
// with TCP keepalive survives; ct list shows both; after `wedge down` both
// routing tables are as before and a connection works without the gateway.
func TestWedgeIdleAndKeepalive(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := newPair(t, 201, false)
	name := uniqueName("w-")
	cleanupWedge(t, name)
	beforeA, beforeB := p.a.routes(t), p.b.routes(t)
	na, nb := p.a.open(t), p.b.open(t)
	defer na.Close()
	defer nb.Close()
	srv := serveEcho(t, nb, p.b.addr)
	srv6 := serveEcho(t, nb, p.b.ip6)

	r := want(t, 0, "wedge", p.a.target(), p.b.target(), "--name", name,
		"--set", "timeouts.tcp.established=3s", "--set", "orphan=reset", "--detach")
	for _, w := range []string{"is up between " + p.a.target(), p.b.addr.String() + "/32", p.a.ip6.String() + "/128", "MTU 1500 (as eth0)"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("wedge output lacks %q:\n%s", w, r.stdout)
		}
	}
	st := wedgeState(t, name)
	if st.Kind != control.KindWedge || st.Wedge == nil || st.Wedge.Sides[0].NetnsID != na.ID() || st.Wedge.Sides[1].NetnsID != nb.ID() {
		t.Fatalf("state file: kind %q, wedge %+v; want a wedge on net:[%d] and net:[%d]", st.Kind, st.Wedge, na.ID(), nb.ID())
	}
	// The networks the engine is to route by: each side's host prefixes.
	nets := st.Wedge.Networks
	wantNets := [2][]netip.Prefix{
		{netip.PrefixFrom(p.a.addr, 32), netip.PrefixFrom(p.a.ip6, 128)},
		{netip.PrefixFrom(p.b.addr, 32), netip.PrefixFrom(p.b.ip6, 128)},
	}
	if fmt.Sprint(nets.Inside) != fmt.Sprint(wantNets[0]) || fmt.Sprint(nets.Outside) != fmt.Sprint(wantNets[1]) {
		t.Errorf("networks %v / %v, want %v / %v", nets.Inside, nets.Outside, wantNets[0], wantNets[1])
	}
	if got := p.a.ip(t, "route", "get", p.b.addr.String()); !strings.Contains(got, "dev "+st.Wedge.Sides[0].Link) || !strings.Contains(got, "src "+p.a.addr.String()) {
		t.Errorf("A's route to B after the wedge: %q; want it through %s with src %s", got, st.Wedge.Sides[0].Link, p.a.addr)
	}

	to := netip.AddrPortFrom(p.b.addr, srv.port())
	idle := nsDial(t, na, to, false)
	ka := nsDial(t, na, to, true)
	v6 := nsDial(t, na, netip.AddrPortFrom(p.b.ip6, srv6.port()), false)
	for _, c := range []net.Conn{idle, ka, v6} {
		if err := nsEcho(c, "hello"); err != nil {
			t.Fatalf("echo through the wedge: %v", err)
		}
	}
	rows := ctRows(t, name)
	for _, c := range []*net.TCPConn{idle, ka, v6} {
		if !hasRow(rows, c.LocalAddr().(*net.TCPAddr)) {
			t.Errorf("ct list has no row for %v (so it did not cross the gateway): %+v", c.LocalAddr(), rows)
		}
	}

	time.Sleep(5 * time.Second) // past the 3 s timeout, keepalive probes every second
	err := nsEcho(idle, "still there?")
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the idle connection after 5 s: %v; want ECONNRESET from the gateway's orphan reset", err)
	}
	if err := nsEcho(ka, "still there?"); err != nil {
		t.Errorf("the keepalive connection after 5 s: %v; want it alive", err)
	}

	r = want(t, 0, "wedge", "down", "--name", name)
	if !strings.Contains(r.stdout, "routing tables as before") {
		t.Errorf("wedge down said %q", r.stdout)
	}
	if got := p.a.routes(t); got != beforeA {
		t.Errorf("A's routes after wedge down:\n%s\nbefore:\n%s", got, beforeA)
	}
	if got := p.b.routes(t); got != beforeB {
		t.Errorf("B's routes after wedge down:\n%s\nbefore:\n%s", got, beforeB)
	}
	wantNoWedgeLinks(t, p.a, p.b)
	if err := nsEcho(ka, "after"); err != nil {
		t.Errorf("the keepalive connection after wedge down: %v", err)
	}
	direct := nsDial(t, na, to, false)
	if err := nsEcho(direct, "direct"); err != nil {
		t.Errorf("a new connection without the gateway: %v", err)
	}
	if exists(lab.RunDir(name, "")) {
		t.Errorf("run directory %s left after wedge down", lab.RunDir(name, ""))
	}
}

// TestWedgeOpenBefore is check 2: a connection opened before the wedge keeps
// working through it (picked up mid-stream although the policy resets orphans)
// and after it is taken out.
func TestWedgeOpenBefore(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := newPair(t, 202, false)
	name := uniqueName("w-")
	cleanupWedge(t, name)
	na, nb := p.a.open(t), p.b.open(t)
	defer na.Close()
	defer nb.Close()
	srv := serveEcho(t, nb, p.b.addr)
	early := nsDial(t, na, netip.AddrPortFrom(p.b.addr, srv.port()), false)
	if err := nsEcho(early, "before"); err != nil {
		t.Fatal(err)
	}

	r := want(t, 0, "wedge", p.a.target(), p.b.target(), "--name", name, "--set", "orphan=reset", "--time-scale", "2", "--metrics", "127.0.0.1:0", "--detach")
	if !strings.Contains(r.stdout, "open before the wedge: 1 TCP connection(s), picked up mid-stream") {
		t.Errorf("wedge output does not say it picks up the open connection:\n%s", r.stdout)
	}
	if err := nsEcho(early, "through the wedge"); err != nil {
		t.Fatalf("the connection opened before the wedge, through it: %v", err)
	}
	if !hasRow(ctRows(t, name), early.LocalAddr().(*net.TCPAddr)) {
		t.Errorf("ct list has no row for the connection opened before the wedge")
	}
	var stats control.Stats
	if err := json.Unmarshal([]byte(want(t, 0, "ct", "stats", "--name", name, "-o", "json").stdout), &stats); err != nil {
		t.Fatal(err)
	}
	if stats.Reasons["pickup"] == 0 || stats.Verdicts["reset"] != 0 {
		t.Errorf("stats: reasons %v verdicts %v; want a pickup and no reset", stats.Reasons, stats.Verdicts)
	}
	// A wedge is a lab whose sides already exist: lab show and lab down work on it.
	if r := want(t, 0, "lab", "show", "--name", name); !strings.Contains(r.stdout, "is up between "+p.a.target()) {
		t.Errorf("lab show on a wedge:\n%s", r.stdout)
	}
	// lab list lists it as a wedge, with its sides and its time scale.
	list := want(t, 0, "lab", "list").stdout
	var line string
	for _, l := range strings.Split(list, "\n") {
		if strings.HasPrefix(l, name+" ") {
			line = l
		}
	}
	if f := strings.Fields(line); len(f) != 7 || f[1] != "wedge" || f[3] != "running" || f[5] != "2" {
		t.Errorf("lab list line %q: want name, kind wedge, pid, running, -, 2, uptime\n%s", line, list)
	}
	if sides := fmt.Sprintf("wedge %s: %s (A, inside) <-> %s (B, outside)", name, p.a.target(), p.b.target()); !strings.Contains(list, sides) {
		t.Errorf("lab list does not say %q:\n%s", sides, list)
	}
	// lab show -o json: the kind, the scale, what the engine routes by, the metrics.
	var st struct {
		control.Lab
		Alive bool `json:"alive"`
	}
	if err := json.Unmarshal([]byte(want(t, 0, "lab", "show", "--name", name, "-o", "json").stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Kind != control.KindWedge || !st.Alive || st.Scale() != 2 || st.Wedge == nil ||
		!slices.Contains(st.Wedge.Networks.Inside, p.a.addr.String()+"/32") || !slices.Contains(st.Wedge.Networks.Outside, p.b.addr.String()+"/32") {
		t.Errorf("lab show -o json of a wedge: %+v, wedge %+v", st.Lab, st.Wedge)
	}
	if st.Metrics == "" {
		t.Errorf("lab show -o json of a wedge with --metrics has no metrics address")
	} else if resp, err := http.Get("http://" + st.Metrics + "/metrics"); err != nil {
		t.Errorf("GET /metrics of the wedge: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "idlegate_build_info") {
			t.Errorf("GET /metrics of the wedge: %d, no idlegate_build_info", resp.StatusCode)
		}
	}
	// policy set on a scaled wedge takes real units, as on a scaled lab.
	if r := want(t, 0, "policy", "set", "--name", name, "timeouts.udp=10s"); !strings.Contains(r.stdout, "timeouts.udp=20s (real 10s)") {
		t.Errorf("policy set on a scaled wedge: %q, want both values", r.stdout)
	}
	if r := want(t, 0, "lab", "down", "--name", name); !strings.Contains(r.stdout, "routing tables as before") {
		t.Errorf("lab down on a wedge said %q", r.stdout)
	}
	if err := nsEcho(early, "after the wedge"); err != nil {
		t.Errorf("the connection opened before the wedge, after it: %v", err)
	}
}

// TestWedgePID is check 3: a pid: side, a process started in a network
// namespace of its own (unshare -n), resolved to that namespace. On the way: each
// TUN gets the MTU of its side's path (A's eth0 is 1400 here), --peer-b with
// only an IPv4 address carries only IPv4, a NAT profile without --nat-addr runs
// with NAT off and says so, and --pcap records.
func TestWedgePID(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := newPair(t, 203, true)
	p.a.ip(t, "link", "set", "eth0", "mtu", "1400")
	name := uniqueName("w-")
	cleanupWedge(t, name)
	na, nb := p.a.open(t), p.b.open(t)
	defer na.Close()
	defer nb.Close()
	srv := serveEcho(t, nb, p.b.addr)
	before := p.a.routes(t)
	pcap := filepath.Join(t.TempDir(), "wedge.pcapng")
	r := want(t, 0, "wedge", p.a.target(), p.b.target(), "--name", name, "--pcap", pcap, "--detach",
		"--peer-b", p.b.addr.String(), "--profile", "aws-nat-gateway")
	if !strings.Contains(r.stdout, "no --nat-addr was given: NAT is off") {
		t.Errorf("a NAT profile without --nat-addr: the output does not say NAT is off:\n%s", r.stdout)
	}
	st := wedgeState(t, name)
	if got := st.Wedge.Sides[0]; got.NetnsID != na.ID() || got.Target != p.a.target() {
		t.Errorf("side A is %s net:[%d]; want %s, the namespace of pid %d, net:[%d]", got.Target, got.NetnsID, p.a.target(), p.a.pid, na.ID())
	}
	if a, b := st.Wedge.Sides[0], st.Wedge.Sides[1]; a.MTU != 1400 || b.MTU != 1500 {
		t.Errorf("TUN MTUs %d and %d; want 1400 (A's eth0) and 1500 (B's)", a.MTU, b.MTU)
	}
	if got := strings.Join(st.Wedge.Sides[0].Routes, " "); got != p.b.addr.String()+"/32" {
		t.Errorf("A's routes through the wedge: %s; want only B's IPv4 /32 (--peer-b named IPv4 only)", got)
	}
	if st.Policy.NAT.Enabled {
		t.Errorf("the policy in force has NAT on without --nat-addr")
	}
	c := nsDial(t, na, netip.AddrPortFrom(p.b.addr, srv.port()), false)
	if err := nsEcho(c, "pid"); err != nil {
		t.Fatal(err)
	}
	if !hasRow(ctRows(t, name), c.LocalAddr().(*net.TCPAddr)) {
		t.Errorf("ct list has no row for a connection from pid %d's namespace", p.a.pid)
	}
	want(t, 0, "wedge", "down", "--name", name)
	if got := p.a.routes(t); got != before {
		t.Errorf("pid %d's routes after wedge down:\n%s\nbefore:\n%s", p.a.pid, got, before)
	}
	// --pcap records what crossed, as a lab's does: the echo's packets at least.
	if b, err := os.ReadFile(pcap); err != nil || len(b) < 512 || string(b[:4]) != "\x0a\x0d\x0d\x0a" {
		t.Errorf("the wedge's pcapng: %d bytes, %v; want a pcapng with the echo in it", len(b), err)
	}
}

// TestWedgeKilled is check 5: a detached wedge killed with SIGKILL, then `wedge`
// again on the same pair: nothing of the first is left, and the second comes in
// and out cleanly; `lab up` of the name after a killed wedge works too.
func TestWedgeKilled(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := newPair(t, 204, false)
	name := uniqueName("w-")
	cleanupWedge(t, name)
	cleanupLab(t, name)
	beforeA, beforeB := p.a.routes(t), p.b.routes(t)
	for round := range 2 {
		want(t, 0, "wedge", p.a.target(), p.b.target(), "--name", name, "--detach")
		pid := gatewayPID(t, name)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if !waitDead(pid, 5*time.Second) {
			t.Fatalf("wedge pid %d survived SIGKILL", pid)
		}
		if !exists(lab.RunDir(name, "")) {
			t.Fatalf("the killed wedge's run directory is gone: the test of leftovers proves nothing")
		}
		if round == 1 {
			// The kernel removes the TUNs, and their routes, once the last thread
			// of the killed process has closed its descriptors (the pid is a
			// zombie before that).
			waitFor(t, "TUN gone after SIGKILL", func() bool {
				return !strings.Contains(strings.Join(append(p.a.links(t), p.b.links(t)...), " "), "ig")
			})
			if got := p.a.routes(t); got != beforeA {
				t.Errorf("A's routes after SIGKILL:\n%s\nbefore:\n%s", got, beforeA)
			}
		}
		// Round 0 goes on at once, racing the kernel: the next wedge removes what
		// is still there.
		if round == 0 {
			want(t, 0, "wedge", p.a.target(), p.b.target(), "--name", name, "--detach")
			want(t, 0, "wedge", "down", "--name", name)
		} else {
			want(t, 0, "lab", "up", "--name", name, "--detach")
			want(t, 0, "lab", "down", "--name", name)
		}
		if got := p.a.routes(t) + p.b.routes(t); got != beforeA+beforeB {
			t.Errorf("round %d: routes at the end:\n%s\nbefore:\n%s", round, got, beforeA+beforeB)
		}
		if exists(lab.RunDir(name, "")) {
			t.Errorf("round %d: run directory left", round)
		}
	}
}

// TestWedgeSideGone: B's namespace goes away under a running wedge (as a
// container's does when it stops). Without --follow the wedge says so in one
// line and in a GONE event, ends with exit 0 and leaves A's routes as they were;
// with --follow it attaches again once B is back (ATTACH) and carries traffic.
func TestWedgeSideGone(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := newPair(t, 205, false)
	beforeA := p.a.routes(t)
	na := p.a.open(t)
	defer na.Close()

	t.Run("ends", func(t *testing.T) {
		name := uniqueName("w-")
		cleanupWedge(t, name)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fg := exec.CommandContext(ctx, bin, "wedge", p.a.target(), p.b.target(), "--name", name)
		var out strings.Builder
		fg.Stdout, fg.Stderr = &out, &out
		if err := fg.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the wedge's control socket", func() bool { return exists(filepath.Join(lab.RunDir(name, ""), gateway.SocketFile)) })
		events := followEvents(t, name)
		if err := exec.Command("ip", "netns", "delete", p.b.name).Run(); err != nil {
			t.Fatal(err)
		}
		err := fg.Wait()
		if err != nil {
			t.Fatalf("the wedge ended with %v; want exit 0:\n%s", err, out.String())
		}
		gone := "side B (" + p.b.target() + ") is gone: its network namespace went away"
		if n := strings.Count(out.String(), gone); n != 1 {
			t.Errorf("the wedge's output says %d times %q:\n%s", n, gone, out.String())
		}
		if ev := events.wait(t, control.EventGone); ev.Side != "B" || ev.Target != p.b.target() {
			t.Errorf("GONE event %+v; want side B, %s", ev, p.b.target())
		}
		if got := p.a.routes(t); got != beforeA {
			t.Errorf("A's routes after the wedge ended:\n%s\nbefore:\n%s", got, beforeA)
		}
		wantNoWedgeLinks(t, p.a)
		if exists(lab.RunDir(name, "")) {
			t.Errorf("run directory left after the wedge ended")
		}
	})

	t.Run("follow", func(t *testing.T) {
		// B comes back: a new namespace of the same name, plugged in as before.
		if err := exec.Command("ip", "netns", "add", p.b.name).Run(); err != nil {
			t.Fatal(err)
		}
		exec.Command("ip", "-n", p.host, "link", "del", "vy").Run()
		p.plug(t, "vy", p.b)
		name := uniqueName("w-")
		cleanupWedge(t, name)
		want(t, 0, "wedge", p.a.target(), p.b.target(), "--name", name, "--follow", "--detach")
		events := followEvents(t, name)
		if err := exec.Command("ip", "netns", "delete", p.b.name).Run(); err != nil {
			t.Fatal(err)
		}
		if ev := events.wait(t, control.EventGone); !strings.Contains(ev.Message, "waiting for "+p.b.target()+" to come back") {
			t.Errorf("GONE under --follow: %q", ev.Message)
		}
		if err := exec.Command("ip", "netns", "add", p.b.name).Run(); err != nil {
			t.Fatal(err)
		}
		exec.Command("ip", "-n", p.host, "link", "del", "vy").Run()
		p.plug(t, "vy", p.b)
		ev := events.wait(t, control.EventAttach)
		if ev.Side != "B" {
			t.Errorf("ATTACH event %+v; want side B", ev)
		}
		nb := p.b.open(t)
		defer nb.Close()
		if st := wedgeState(t, name); st.Wedge.Sides[1].NetnsID != nb.ID() {
			t.Errorf("after ATTACH the state has B in net:[%d]; B is net:[%d]", st.Wedge.Sides[1].NetnsID, nb.ID())
		}
		srv := serveEcho(t, nb, p.b.addr)
		c := nsDial(t, na, netip.AddrPortFrom(p.b.addr, srv.port()), false)
		if err := nsEcho(c, "back"); err != nil {
			t.Fatalf("echo through the re-attached wedge: %v", err)
		}
		if !hasRow(ctRows(t, name), c.LocalAddr().(*net.TCPAddr)) {
			t.Errorf("the connection to the new B did not cross the gateway")
		}
		want(t, 0, "wedge", "down", "--name", name)
		if got := p.a.routes(t); got != beforeA {
			t.Errorf("A's routes after wedge down:\n%s\nbefore:\n%s", got, beforeA)
		}
		wantNoWedgeLinks(t, p.a, p.b)
	})
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 20 s", what)
		}
	}
}

// eventStream is `ct events -o json` of a lab or wedge, running.
type eventStream struct {
	name string
	c    chan control.Event
}

func followEvents(t *testing.T, name string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "ct", "events", "--name", name, "-o", "json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	e := &eventStream{name: name, c: make(chan control.Event, 64)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev control.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				e.c <- ev
			}
		}
		close(e.c)
	}()
	// The stream is open once the gateway answers: wait for the API to serve it.
	time.Sleep(300 * time.Millisecond)
	return e
}

func (e *eventStream) wait(t *testing.T, typ string) control.Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-e.c:
			if !ok {
				t.Fatalf("the event stream ended before a %s event", typ)
			}
			if ev.Type == typ {
				return ev
			}
		case <-timeout:
			log, _ := os.ReadFile(filepath.Join(lab.RunDir(e.name, ""), gateway.LogFile))
			t.Fatalf("no %s event within 20 s; the gateway's log:\n%s", typ, log)
		}
	}
}

// TestWedgeErrors is check 6: each mistake gets one sentence and its exit code,
// and changes nothing.
func TestWedgeErrors(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := newPair(t, 206, false)
	// An island: a namespace whose only address is on a veth of its own, in another
	// network, with no default route: it has no route to B.
	island := nsSide{name: "wi-" + uniqueName("")}
	if err := exec.Command("ip", "netns", "add", island.name).Run(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", island.name).Run() })
	island.ip(t, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	island.ip(t, "link", "set", "d0", "up")
	island.ip(t, "addr", "add", "198.18.207.2/24", "dev", "d0")
	beforeA, beforeB := p.a.routes(t), p.b.routes(t)

	held := uniqueName("w-")
	cleanupWedge(t, held)
	want(t, 0, "wedge", p.a.target(), p.b.target(), "--name", held, "--detach")

	noEngine := []string{"PATH=/nonexistent", "DOCKER_HOST=unix:///nonexistent/docker.sock", "CONTAINER_HOST=unix:///nonexistent/podman.sock"}
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"no such netns", nil, []string{"netns:nosuch-wedge-ns", p.b.target()}, 4, `no network namespace named "nosuch-wedge-ns"`},
		{"no such pid", nil, []string{"pid:999999999", p.b.target()}, 4, "no process with pid 999999999"},
		{"no such path", nil, []string{"path:/nonexistent/ns/net", p.b.target()}, 4, "no network namespace at /nonexistent/ns/net"},
		{"no such address", nil, []string{"ip:198.18.206.99", p.b.target()}, 4, "no network namespace on this machine has 198.18.206.99"},
		{"no docker", noEngine, []string{"docker:app", p.b.target()}, 3, "docker"},
		{"no podman", noEngine, []string{"podman:app", p.b.target()}, 3, "podman"},
		{"same namespace", nil, []string{p.a.target(), "path:/run/netns/" + p.a.name}, 2, "are one network namespace"},
		{"no route", nil, []string{island.target(), p.b.target()}, 4, "no route"},
		{"wedged pair", nil, []string{p.b.target(), p.a.target()}, 4, fmt.Sprintf("wedge %q is already between", held)},
		{"bad target", nil, []string{"container-a", p.b.target()}, 2, "is not a namespace"},
		{"NAT address of A", nil, []string{island.target(), p.b.target(), "--peer-a", "198.18.207.2", "--peer-b", p.b.addr.String(), "--nat-addr", p.b.addr.String()}, 2, "is an address of"},
		{"peer not on B", nil, []string{island.target(), p.b.target(), "--peer-b", "10.96.0.1"}, 2, "has no such address"},
		{"name in use", nil, []string{island.target(), p.b.target(), "--name", held}, 4, "already"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"wedge"}, tt.args...)
			if !strings.Contains(strings.Join(tt.args, " "), "--name") {
				args = append(args, "--name", uniqueName("w-"))
			}
			r := runEnv(t, tt.env, args...)
			if r.code != tt.code {
				t.Errorf("idlegate %s: %v; want exit %d", strings.Join(args, " "), r, tt.code)
			}
			msg := strings.TrimSpace(r.stderr)
			if !strings.HasPrefix(msg, "idlegate: ") || strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) {
				t.Errorf("stderr %q: want one line containing %q", r.stderr, tt.want)
			}
		})
	}

	t.Run("not root", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "idlegate-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		exe := filepath.Join(dir, "idlegate")
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exe, b, 0o755); err != nil {
			t.Fatal(err)
		}
		var out []byte
		for try := 0; ; try++ {
			cmd := exec.Command(exe, "wedge", p.a.target(), p.b.target(), "--name", uniqueName("w-"))
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err = cmd.CombinedOutput()
			// A child forked meanwhile by a parallel test can hold the new file
			// open for writing until it execs: ETXTBSY, for a moment.
			if !errors.Is(err, syscall.ETXTBSY) || try == 20 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "root") {
			t.Errorf("wedge as nobody: %v, %q; want exit 3 saying it needs root", err, out)
		}
	})

	// The pair is free again for the last two.
	want(t, 0, "wedge", "down", "--name", held)

	t.Run("error after the TUNs are in", func(t *testing.T) {
		// The pcap file exists: the gateway refuses it after the wedge is in, and
		// takes the wedge out again.
		pcap := filepath.Join(t.TempDir(), "x.pcapng")
		os.WriteFile(pcap, []byte("keep"), 0o600)
		r := idlegate(t, "wedge", p.a.target(), p.b.target(), "--name", uniqueName("w-"), "--pcap", pcap)
		if r.code != 2 || !strings.Contains(r.stderr, "--force") {
			t.Errorf("wedge with an existing --pcap file: %v; want exit 2 naming --force", r)
		}
		if got := p.a.routes(t) + p.b.routes(t); got != beforeA+beforeB {
			t.Errorf("routes after the refused pcap:\n%s\nbefore:\n%s", got, beforeA+beforeB)
		}
	})

	t.Run("ctrl-c", func(t *testing.T) {
		name := uniqueName("w-")
		cleanupWedge(t, name)
		fg := exec.Command(bin, "wedge", p.a.target(), p.b.target(), "--name", name)
		var out strings.Builder
		fg.Stdout, fg.Stderr = &out, &out
		if err := fg.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the wedge's control socket", func() bool { return exists(filepath.Join(lab.RunDir(name, ""), gateway.SocketFile)) })
		fg.Process.Signal(os.Interrupt)
		if err := fg.Wait(); err != nil || !strings.Contains(out.String(), "routing tables as before") {
			t.Errorf("wedge after Ctrl-C: %v:\n%s", err, out.String())
		}
		if got := p.a.routes(t) + p.b.routes(t); got != beforeA+beforeB {
			t.Errorf("routes after Ctrl-C:\n%s\nbefore:\n%s", got, beforeA+beforeB)
		}
	})

	if got := p.a.routes(t) + p.b.routes(t); got != beforeA+beforeB {
		t.Errorf("routes after the refused wedges and wedge down:\n%s\nbefore:\n%s", got, beforeA+beforeB)
	}
	wantNoWedgeLinks(t, p.a, p.b, island)
}

// runEnv is idlegate with env added to its environment.
func runEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	if len(env) == 0 {
		return idlegate(t, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// isReset reports whether err is the peer's (here: the gateway's) RST.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// TestWedgeByAddressAndStandby: ip: sides, found by the address on one of their
// interfaces (a pod by its pod IP), and `wedge standby`, which takes every wedge
// out when it gets SIGTERM (the DaemonSet of docs/kubernetes.md).
//
// Not parallel: standby takes out every wedge of the machine, and the parallel
// tests of this package wait until the sequential ones are done.
func TestWedgeByAddressAndStandby(t *testing.T) {
	needRoot(t)
	p := newPair(t, 208, false)
	before := p.a.routes(t) + p.b.routes(t)
	na, nb := p.a.open(t), p.b.open(t)
	defer na.Close()
	defer nb.Close()
	srv := serveEcho(t, nb, p.b.addr)

	standby := exec.Command(bin, "wedge", "standby")
	var out strings.Builder
	standby.Stdout, standby.Stderr = &out, &out
	if err := standby.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Process.Kill(); standby.Wait() })
	name := uniqueName("w-")
	cleanupWedge(t, name)
	want(t, 0, "wedge", "ip:"+p.a.addr.String(), "ip:"+p.b.addr.String(), "--name", name, "--detach")
	st := wedgeState(t, name)
	if st.Wedge.Sides[0].NetnsID != na.ID() || st.Wedge.Sides[1].NetnsID != nb.ID() {
		t.Fatalf("ip: sides in net:[%d] and net:[%d]; want net:[%d] and net:[%d]", st.Wedge.Sides[0].NetnsID, st.Wedge.Sides[1].NetnsID, na.ID(), nb.ID())
	}
	c := nsDial(t, na, netip.AddrPortFrom(p.b.addr, srv.port()), false)
	if err := nsEcho(c, "by address"); err != nil {
		t.Fatal(err)
	}
	if !hasRow(ctRows(t, name), c.LocalAddr().(*net.TCPAddr)) {
		t.Errorf("the connection did not cross the gateway")
	}
	pid := gatewayPID(t, name)
	standby.Process.Signal(syscall.SIGTERM)
	if err := standby.Wait(); err != nil {
		t.Fatalf("wedge standby after SIGTERM: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("wedge %q is out", name)) || !waitDead(pid, 5*time.Second) {
		t.Errorf("wedge standby did not take the wedge out:\n%s", out.String())
	}
	if got := p.a.routes(t) + p.b.routes(t); got != before {
		t.Errorf("routes after standby ended:\n%s\nbefore:\n%s", got, before)
	}
}

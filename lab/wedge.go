package lab

// A wedge puts the gateway between two network namespaces that already exist
// (two containers, two pods, two `ip netns` namespaces), without changing them
// otherwise:
//
//	       A (inside, client)                 gateway process                 B (outside, server)
//	+-----------------------------+    +--------------------------+    +-----------------------------+
//	| eth0 198.18.5.2/24 ---------+----+---- the path they had ---+----+--------- eth0 198.18.5.3/24 |
//	| igXXXXXXXXa (TUN) <--- fd --+--->| TUN A   policy.Engine    |<---+-- fd ---> igXXXXXXXXb (TUN) |
//	|  198.18.5.3/32 src .2       |    |                   TUN B  |    |  198.18.5.2/32 src .3       |
//	|  (and /128 for IPv6)        |    +--------------------------+    |  (and --nat-addr /32)       |
//	+-----------------------------+                                    +-----------------------------+
//
// Per side a TUN, opened in the gateway's namespace with the MTU of the
// interface that carries the peer today, is moved into the side's namespace
// and brought up with no address, and one host route to each of the peer's
// addresses goes through it with the side's own address as its source. The
// more specific route wins, so only traffic between A and B crosses the
// gateway; everything else keeps its path. The addresses are the ones the
// kernel would use today (route lookups), or the ones given.
//
// Taking the TUNs out restores each routing table exactly: the routes go with
// their link, and the kernel removes a TUN when its last descriptor closes. So
// a wedge comes out when its process ends, however it ends, SIGKILL included.
// The run directory's wedge record (WedgeFile) lets the next wedge or lab of
// that name remove whatever might still be there.
//
// A wedge keeps no descriptor on either namespace once it is up: a container
// that stops or restarts takes its namespace, and the TUN in it, away, and the
// gateway's reads of that TUN fail (EBADFD), which is how it notices.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/tun"
)

// Errors of a wedge callers branch on with errors.Is; each message names the fix.
var (
	ErrSameNamespace = errors.New("the two sides are the same network namespace: name two different namespaces")
	ErrNoRoute       = errors.New("no route between the two sides: check that A reaches B without the wedge (ping), or give --peer-a/--peer-b")
	ErrWedged        = errors.New("a wedge is already on that pair: take it out with `idlegate wedge down --name NAME`")
	// ErrBadAddress: an address given for a side (--peer-a, --peer-b, --nat-addr)
	// that the wedge cannot use.
	ErrBadAddress = errors.New("an address given for the wedge cannot be used")
)

// badAddress is ErrBadAddress in one sentence.
type badAddress struct{ msg string }

func (e *badAddress) Error() string { return e.msg }
func (e *badAddress) Unwrap() error { return ErrBadAddress }

func badAddressf(format string, a ...any) error { return &badAddress{fmt.Sprintf(format, a...)} }

// WedgeConfig says which two namespaces a wedge goes between.
type WedgeConfig struct {
	Name    string // as a lab's; "" means DefaultWedgeName
	RunBase string // "" means DefaultRunBase
	A, B    Target // A is the inside (client) side, B the outside (server) side
	// PeerA and PeerB are A's and B's own addresses, at most one per IP family.
	// A family given for either side carries only that pair; a family given
	// for neither is discovered: B's addresses, the first A routes to, and A's
	// source address for it.
	PeerA, PeerB []netip.Addr
	// NAT are the gateway's NAT outside addresses (at most one per family): B
	// routes each back through the wedge.
	NAT    []netip.Addr
	Device string // as Config.Device
}

// DefaultWedgeName is the name of a wedge when none is given.
const DefaultWedgeName = "wedge"

// Wedge is a wedge this process owns.
type Wedge struct {
	Name   string
	RunDir string
	Device string // DeviceFast or DeviceWater
	// Sides are A (index 0, inside) and B (index 1, outside).
	Sides [2]WedgeSide
	// Open are the TCP connections open between A and B when the wedge went in,
	// as A's sockets see them (Local on A's side).
	Open []Flow

	cfg     WedgeConfig
	runBase string

	mu   sync.Mutex // guards down, Sides and the record
	down bool
}

// WedgeSide is one namespace of a wedge and the gateway's TUN in it.
type WedgeSide struct {
	Target  Target
	NetnsID uint64 // the namespace's inode, as Netns.ID
	Path    string // the namespace file it was opened by (/proc/PID/ns/net, /run/netns/NAME)
	Link    string // the TUN's name, the same in the namespace and here
	MTU     int    // the TUN's MTU: the least of the interfaces in Via
	// Addrs are the side's own addresses the wedge carries, one per family,
	// IPv4 first; Peers are the other side's, in the same order.
	Addrs, Peers []netip.Addr
	Via          []string       // the interfaces that carried the peer before the wedge
	Routes       []netip.Prefix // the host routes through Link: the peers (and, on B, the NAT addresses)
	Dev          tun.Device     // the gateway's end of Link

	before routeTable // the main routing table before the wedge
	// The process the namespace was found by (Path is /proc/PID/ns/net) and when
	// it started, to tell that it ended: see Present.
	pid      int
	pidStart time.Time
}

// Flow is one TCP connection, by its two endpoints.
type Flow struct {
	Local, Remote netip.AddrPort
}

// Side names for messages: A is the inside, B the outside.
func sideName(i int) string { return string(rune('A' + i)) }

// UpWedge puts a wedge between cfg.A and cfg.B and records this process in the
// run directory. It fails before changing anything with ErrBadName, ErrNotRoot,
// tun.ErrNoTUN, a target error (ErrNoSuchNamespace, ErrNotRunning, ErrNoEngine),
// ErrSameNamespace, ErrWedged, ErrInUse or ErrNoRoute. Leftovers of an earlier
// lab or wedge of that name whose process died are removed first. If UpWedge
// fails part way, both namespaces are as they were when it returns.
func UpWedge(cfg WedgeConfig) (_ *Wedge, err error) {
	if cfg.Name == "" {
		cfg.Name = DefaultWedgeName
	}
	if cfg.RunBase == "" {
		cfg.RunBase = DefaultRunBase
	}
	if err := CheckName(cfg.Name); err != nil {
		return nil, err
	}
	if err := checkFamilies(cfg); err != nil {
		return nil, err
	}
	device, err := resolveDevice(orAuto(cfg.Device))
	if err != nil {
		return nil, err
	}
	if err := CheckHost(); err != nil {
		return nil, err
	}
	var ns [2]*Netns
	defer func() {
		for _, n := range ns {
			if n != nil {
				n.Close()
			}
		}
	}()
	for i, t := range []Target{cfg.A, cfg.B} {
		if ns[i], err = t.Open(); err != nil {
			return nil, fmt.Errorf("side %s (%s): %w", sideName(i), t, err)
		}
	}
	if ns[0].ID() == ns[1].ID() {
		return nil, fmt.Errorf("%s and %s are one network namespace (net:[%d]): %w", cfg.A, cfg.B, ns[0].ID(), ErrSameNamespace)
	}

	unlock, err := lockRunBase(cfg.RunBase)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if other, ok := wedgeOnPair(cfg.RunBase, ns[0].ID(), ns[1].ID()); ok {
		return nil, &wedgedError{a: cfg.A, b: cfg.B, name: other}
	}
	runDir := RunDir(cfg.Name, cfg.RunBase)
	if pid, err := readPIDFile(runDir); err == nil && alive(pid) {
		return nil, &inUseError{name: cfg.Name, pid: pid, wedge: true}
	}
	if _, err := cleanupLocked(cfg.Name, runDir); err != nil {
		return nil, fmt.Errorf("remove leftovers of %q: %w", cfg.Name, err)
	}

	plan, err := discover(ns, cfg)
	if err != nil {
		return nil, err
	}
	w := &Wedge{Name: cfg.Name, RunDir: runDir, Device: device, cfg: cfg, runBase: cfg.RunBase}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.teardown())
		}
	}()
	if err := os.Mkdir(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	if err := writePID(runDir, os.Getpid()); err != nil {
		return nil, err
	}
	for i := range w.Sides {
		s := &w.Sides[i]
		*s = plan[i]
		s.Target = []Target{cfg.A, cfg.B}[i]
		s.NetnsID, s.Path = ns[i].ID(), nsPath(ns[i])
		s.Link = tunName(cfg.Name, "ab"[i])
		s.watchProcess()
		if s.before, err = readRoutes(ns[i]); err != nil {
			return nil, err
		}
	}
	// Recorded before anything changes, so that the next wedge or lab of this
	// name can undo what a killed process left.
	if err := w.writeRecord(); err != nil {
		return nil, err
	}
	for i := range w.Sides {
		if err := w.Sides[i].attach(ns[i], device); err != nil {
			return nil, fmt.Errorf("side %s (%s): %w", sideName(i), w.Sides[i].Target, err)
		}
	}
	// Connections open now keep going: their packets already queue in the TUNs.
	w.Open, err = openFlows(ns[0], w.Sides[0].Addrs, w.Sides[0].Peers)
	if err != nil {
		return nil, fmt.Errorf("list the connections open in %s: %w", cfg.A, err)
	}
	return w, nil
}

// watchProcess notes the process whose namespace file s.Path is, if it is one.
func (s *WedgeSide) watchProcess() {
	s.pid, s.pidStart = 0, time.Time{}
	var pid int
	if _, err := fmt.Sscanf(s.Path, "/proc/%d/ns/net", &pid); err != nil || s.Path != fmt.Sprintf("/proc/%d/ns/net", pid) {
		return
	}
	if t, err := processStart(pid); err == nil {
		s.pid, s.pidStart = pid, t
	}
}

// Present reports whether side i is still where the wedge put it, the cheap way
// (a stat, or a look at /proc), and if not, why, in a few words. A container
// that stops or restarts can leave its old namespace alive for a while (its
// orphaned TCP sockets hold it until they time out), so the gateway cannot wait
// for the TUN in it to go: it asks this. A side found by a process (docker,
// podman, pid, and most ip targets) is gone when that process ended; a side
// found by a file (netns, path) when the file no longer holds the namespace.
// An ip: side whose process ended is looked up again by its address.
func (w *Wedge) Present(i int) (bool, string) {
	w.mu.Lock()
	s := w.Sides[i]
	w.mu.Unlock()
	if s.pid > 0 {
		if t, err := processStart(s.pid); err == nil && t.Equal(s.pidStart) && alive(s.pid) {
			return true, ""
		}
		if s.Target.Kind == "ip" {
			if n, err := s.Target.Open(); err == nil {
				same := n.ID() == s.NetnsID
				path := nsPath(n)
				n.Close()
				if same {
					w.mu.Lock()
					w.Sides[i].Path = path
					w.Sides[i].watchProcess()
					w.mu.Unlock()
					return true, ""
				}
			}
			return false, fmt.Sprintf("no process of its namespace net:[%d] has %s any more", s.NetnsID, s.Target.Value)
		}
		return false, fmt.Sprintf("the process it was found by (pid %d) ended: the container stopped or restarted", s.pid)
	}
	var st unix.Stat_t
	if err := unix.Stat(s.Path, &st); err != nil || st.Ino != s.NetnsID {
		return false, fmt.Sprintf("%s no longer holds its namespace net:[%d] (deleted, or a new one in its place)", s.Path, s.NetnsID)
	}
	return true, ""
}

// nsPath is the file n was opened by.
func nsPath(n *Netns) string {
	if filepath.IsAbs(n.Name()) {
		return n.Name()
	}
	return filepath.Join(netnsDir, n.Name())
}

func orAuto(d string) string {
	if d == "" {
		return DeviceAuto
	}
	return d
}

// checkFamilies refuses more than one address per family on a side, and NAT
// addresses that are not plain unicast.
func checkFamilies(cfg WedgeConfig) error {
	for _, l := range []struct {
		flag  string
		addrs []netip.Addr
	}{{"--peer-a", cfg.PeerA}, {"--peer-b", cfg.PeerB}, {"--nat-addr", cfg.NAT}} {
		var seen [2]bool
		for _, a := range l.addrs {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() {
				return badAddressf("%s %s: give a unicast IPv4 or IPv6 address", l.flag, a)
			}
			f := family(a)
			if seen[f] {
				return badAddressf("%s: give at most one IPv4 and one IPv6 address", l.flag)
			}
			seen[f] = true
		}
	}
	return nil
}

// family is 0 for IPv4, 1 for IPv6: the index into per-family pairs.
func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func ofFamily(addrs []netip.Addr, fam int) (netip.Addr, bool) {
	for _, a := range addrs {
		if family(a) == fam {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// wedgedError is ErrWedged about one pair.
type wedgedError struct {
	a, b Target
	name string // the wedge on it, "" if only its TUN was seen
	link string
}

func (e *wedgedError) Error() string {
	if e.name != "" {
		return fmt.Sprintf("wedge %q is already between %s and %s: take it out with `idlegate wedge down --name %s`", e.name, e.a, e.b, e.name)
	}
	return fmt.Sprintf("the route from %s to %s already goes through TUN link %s (a wedge of another run directory, or a VPN): take that out first", e.a, e.b, e.link)
}

func (e *wedgedError) Unwrap() error { return ErrWedged }

// ifAddr is an address on an interface.
type ifAddr struct {
	addr  netip.Addr
	link  int
	flags int
}

// ownAddrs lists n's unicast addresses that can talk to another namespace:
// global scope, not loopback, not tentative or failed DAD.
func ownAddrs(n *Netns) ([]ifAddr, error) {
	h, err := n.Netlink()
	if err != nil {
		return nil, err
	}
	list, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses in %s: %w", n.Name(), err)
	}
	var out []ifAddr
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if a.Scope != int(netlink.SCOPE_UNIVERSE) || ip.IsLoopback() || ip.IsLinkLocalUnicast() ||
			a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		out = append(out, ifAddr{addr: ip, link: a.LinkIndex, flags: a.Flags})
	}
	return out, nil
}

// path is how one namespace reaches an address today.
type path struct {
	src  netip.Addr
	link int
	via  string // the link's name
	mtu  int    // the least of the link's MTU and the route's
	gw   bool   // through a gateway, not on-link
	tun  bool   // the link is a TUN (another wedge, a VPN)
}

// lookup asks n's kernel how it reaches dst (ip route get).
func lookup(n *Netns, dst netip.Addr) (path, error) {
	h, err := n.Netlink()
	if err != nil {
		return path{}, err
	}
	rs, err := h.RouteGet(dst.AsSlice())
	if err != nil || len(rs) == 0 {
		return path{}, fmt.Errorf("no route to %s: %v", dst, err)
	}
	r := rs[0]
	if r.Type != unix.RTN_UNICAST {
		return path{}, fmt.Errorf("%s is not routed out (route type %d)", dst, r.Type)
	}
	p := path{link: r.LinkIndex, gw: r.Gw != nil}
	p.src, _ = netip.AddrFromSlice(r.Src)
	p.src = p.src.Unmap()
	l, err := h.LinkByIndex(r.LinkIndex)
	if err != nil {
		return path{}, fmt.Errorf("the link of the route to %s: %w", dst, err)
	}
	p.via, p.mtu, p.tun = l.Attrs().Name, l.Attrs().MTU, l.Type() == "tuntap"
	if r.MTU > 0 && r.MTU < p.mtu {
		p.mtu = r.MTU
	}
	return p, nil
}

// pair is one family's addresses: a on side A, b on side B.
type pair struct{ a, b netip.Addr }

// discover finds, per family, the pair of addresses the wedge carries and each
// side's path to the other, and plans the sides: addresses, peers, MTU, via,
// routes. ns are A and B, open.
func discover(ns [2]*Netns, cfg WedgeConfig) ([2]WedgeSide, error) {
	var plan [2]WedgeSide
	var own [2][]ifAddr
	for i := range ns {
		var err error
		if own[i], err = ownAddrs(ns[i]); err != nil {
			return plan, err
		}
	}
	targets := [2]Target{cfg.A, cfg.B}
	has := func(i int, a netip.Addr) bool {
		return slices.ContainsFunc(own[i], func(x ifAddr) bool { return x.addr == a })
	}
	for _, a := range cfg.NAT {
		if has(0, a) || has(1, a) {
			return plan, badAddressf("--nat-addr %s is an address of %s or %s: give one neither side uses", a, cfg.A, cfg.B)
		}
	}
	given := len(cfg.PeerA) > 0 || len(cfg.PeerB) > 0
	var lastErr error
	var pairs []pair
	var paths [][2]path
	for fam := 0; fam < 2; fam++ {
		pa, okA := ofFamily(cfg.PeerA, fam)
		pb, okB := ofFamily(cfg.PeerB, fam)
		if given && !okA && !okB {
			continue // the addresses given name the families to carry
		}
		for i, a := range []struct {
			ok   bool
			addr netip.Addr
			flag string
		}{{okA, pa, "--peer-a"}, {okB, pb, "--peer-b"}} {
			if a.ok && !has(i, a.addr) {
				return plan, badAddressf("%s %s: %s has no such address on an interface; give the side's own address (a Kubernetes ClusterIP or a load balancer's address is translated before it reaches the pod: give the pod IP)", a.flag, a.addr, targets[i])
			}
		}
		// Candidates for B's address: the one given, else B's own, on-link paths first.
		var cands []netip.Addr
		switch {
		case okB:
			cands = []netip.Addr{pb}
		case okA:
			// Only A's address is given: B's is its source toward A.
			p, err := lookup(ns[1], pa)
			if err != nil {
				return plan, fmt.Errorf("%s cannot reach --peer-a %s (%v): %w", cfg.B, pa, err, ErrNoRoute)
			}
			cands = []netip.Addr{p.src}
		default:
			for _, x := range own[1] {
				if family(x.addr) == fam {
					cands = append(cands, x.addr)
				}
			}
		}
		type cand struct {
			p     pair
			paths [2]path
		}
		var found []cand
		for _, b := range cands {
			toB, err := lookup(ns[0], b)
			if err != nil {
				lastErr = fmt.Errorf("%s has no route to %s (%v)", cfg.A, b, err)
				continue
			}
			a := pa
			if !okA {
				a = toB.src
			}
			if !a.IsValid() || !has(0, a) {
				lastErr = fmt.Errorf("%s reaches %s from no address of its own", cfg.A, b)
				continue
			}
			toA, err := lookup(ns[1], a)
			if err != nil {
				lastErr = fmt.Errorf("%s has no route back to %s (%v)", cfg.B, a, err)
				continue
			}
			for i, p := range []path{toB, toA} {
				if p.tun {
					return plan, &wedgedError{a: cfg.A, b: cfg.B, link: fmt.Sprintf("%s in %s", p.via, targets[i])}
				}
			}
			found = append(found, cand{pair{a, b}, [2]path{toB, toA}})
		}
		if len(found) == 0 {
			if okA || okB {
				return plan, fmt.Errorf("%v: %w", lastErr, ErrNoRoute)
			}
			continue
		}
		// On-link first: the peer on a network A is on, as on one docker network.
		sort.SliceStable(found, func(i, j int) bool { return !found[i].paths[0].gw && found[j].paths[0].gw })
		pairs = append(pairs, found[0].p)
		paths = append(paths, found[0].paths)
	}
	if len(pairs) == 0 {
		if lastErr == nil {
			lastErr = fmt.Errorf("%s has no address A could talk to", cfg.B)
		}
		return plan, fmt.Errorf("from %s to %s: %v: %w", cfg.A, cfg.B, lastErr, ErrNoRoute)
	}
	for k, pr := range pairs {
		for i := range plan {
			s := &plan[i]
			me, peer := pr.a, pr.b
			if i == 1 {
				me, peer = pr.b, pr.a
			}
			s.Addrs = append(s.Addrs, me)
			s.Peers = append(s.Peers, peer)
			s.Routes = append(s.Routes, netip.PrefixFrom(peer, peer.BitLen()))
			p := paths[k][i]
			if !slices.Contains(s.Via, p.via) {
				s.Via = append(s.Via, p.via)
			}
			if s.MTU == 0 || p.mtu < s.MTU {
				s.MTU = p.mtu
			}
		}
	}
	for _, a := range cfg.NAT {
		f := family(a)
		if _, ok := ofFamily(plan[1].Addrs, f); !ok {
			return plan, badAddressf("--nat-addr %s: the wedge carries no IPv%d between %s and %s", a, 4+2*f, cfg.A, cfg.B)
		}
		plan[1].Routes = append(plan[1].Routes, netip.PrefixFrom(a, a.BitLen()))
	}
	for i := range plan {
		if plan[i].MTU < 68 {
			plan[i].MTU = tun.DefaultMTU
		}
	}
	return plan, nil
}

// attach opens the side's TUN here, moves it into ns, and routes the peers
// through it with the side's own addresses as sources. On error the caller's teardown closes s.Dev, which takes
// the link and its routes away.
func (s *WedgeSide) attach(ns *Netns, device string) error {
	var err error
	if device == DeviceFast {
		var d *tun.FastDevice
		if d, err = tun.OpenFast(s.Link, tun.FastConfig{MTU: s.MTU}); err == nil {
			s.Dev = d
		}
	} else {
		s.Dev, err = tun.OpenWater(s.Link, s.MTU)
	}
	if err != nil {
		return err
	}
	if err := tun.MoveToNamespace(s.Link, ns.Handle()); err != nil {
		return err
	}
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	l, err := h.LinkByName(s.Link)
	if err != nil {
		return fmt.Errorf("find link %s after moving it in: %w", s.Link, err)
	}
	// No IPv6 link-local address on it, so no router solicitation or MLD
	// report goes out, and the namespace's IPv6 state is not changed. A
	// namespace without IPv6 refuses; then there is nothing to change.
	h.LinkSetIP6AddrGenMode(l, 1) // IN6_ADDR_GEN_MODE_NONE
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set link %s up: %w", s.Link, err)
	}
	return s.route(h, l.Attrs().Index, s.Routes)
}

// route adds host routes to dsts through link index idx, each with the side's
// address of its family as source.
func (s *WedgeSide) route(h *netlink.Handle, idx int, dsts []netip.Prefix) error {
	for _, d := range dsts {
		src, _ := ofFamily(s.Addrs, family(d.Addr()))
		r := &netlink.Route{
			LinkIndex: idx,
			Dst:       &net.IPNet{IP: d.Addr().AsSlice(), Mask: net.CIDRMask(d.Bits(), d.Addr().BitLen())},
			Src:       src.AsSlice(),
		}
		if d.Addr().Is4() {
			r.Scope = netlink.SCOPE_LINK
		}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("add route %s dev %s src %s: %w", d, s.Link, src, err)
		}
	}
	return nil
}

// Networks are the addresses on each side of the wedge as host prefixes, for an
// engine that routes by the networks of its sides: A's inside, B's outside. The
// NAT addresses are the gateway's own.
func (w *Wedge) Networks() (inside, outside []netip.Prefix) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.Sides[0].Addrs {
		inside = append(inside, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, a := range w.Sides[1].Addrs {
		outside = append(outside, netip.PrefixFrom(a, a.BitLen()))
	}
	return inside, outside
}

// Side returns a copy of side i (0 is A, 1 is B) as it is now.
func (w *Wedge) Side(i int) WedgeSide {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Sides[i]
}

// openFlows lists the TCP connections in n between one of addrs and one of
// peers that are past the handshake and not yet closed (sock_diag).
func openFlows(n *Netns, addrs, peers []netip.Addr) ([]Flow, error) {
	var out []Flow
	err := n.Run(func() error {
		for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
			socks, err := netlink.SocketDiagTCP(fam)
			if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
				return err
			}
			for _, s := range socks {
				switch s.State {
				case tcpListen, tcpTimeWait, tcpClose, tcpSynSent, tcpSynRecv:
					continue
				}
				l, ok1 := netip.AddrFromSlice(s.ID.Source)
				r, ok2 := netip.AddrFromSlice(s.ID.Destination)
				if !ok1 || !ok2 {
					continue
				}
				l, r = l.Unmap(), r.Unmap()
				if slices.Contains(addrs, l) && slices.Contains(peers, r) {
					out = append(out, Flow{netip.AddrPortFrom(l, s.ID.SourcePort), netip.AddrPortFrom(r, s.ID.DestinationPort)})
				}
			}
		}
		return nil
	})
	return out, err
}

// TCP states as sock_diag reports them (include/net/tcp_states.h).
const (
	tcpSynSent  = 2
	tcpSynRecv  = 3
	tcpTimeWait = 6
	tcpClose    = 7
	tcpListen   = 10
)

// routeTable is a namespace's main routing table, both families, one line per
// route in a fixed order, for telling whether it is as it was.
type routeTable []string

func readRoutes(n *Netns) (routeTable, error) {
	h, err := n.Netlink()
	if err != nil {
		return nil, err
	}
	var out routeTable
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes in %s: %w", n.Name(), err)
		}
		for _, r := range rs {
			out = append(out, routeLine(h, r))
		}
	}
	sort.Strings(out)
	return out, nil
}

func routeLine(h *netlink.Handle, r netlink.Route) string {
	dev := fmt.Sprint(r.LinkIndex)
	if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
		dev = l.Attrs().Name
	}
	dst := "default"
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s dev %s", dst, dev)
	if r.Gw != nil {
		fmt.Fprintf(&b, " via %s", r.Gw)
	}
	if r.Src != nil {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	fmt.Fprintf(&b, " proto %d scope %d type %d metric %d", r.Protocol, r.Scope, r.Type, r.Priority)
	if r.MTU != 0 {
		fmt.Fprintf(&b, " mtu %d", r.MTU)
	}
	for _, nh := range r.MultiPath {
		fmt.Fprintf(&b, " nexthop %d via %s", nh.LinkIndex, nh.Gw)
	}
	return b.String()
}

// diff says how t differs from before: the lines gone and the lines new.
func (t routeTable) diff(before []string) string {
	var gone, added []string
	for _, l := range before {
		if !slices.Contains(t, l) {
			gone = append(gone, l)
		}
	}
	for _, l := range t {
		if !slices.Contains(before, l) {
			added = append(added, l)
		}
	}
	var parts []string
	if len(gone) > 0 {
		parts = append(parts, "missing "+strings.Join(gone, "; "))
	}
	if len(added) > 0 {
		parts = append(parts, "new "+strings.Join(added, "; "))
	}
	return strings.Join(parts, ", ")
}

// Down takes the wedge out: it closes both TUNs (the kernel removes each link
// and its routes), checks that each namespace still there has its routing
// table as before the wedge, and removes the run directory. Calls after the
// first return nil. Down does not stop goroutines reading the devices; their
// Reads fail with os.ErrClosed.
func (w *Wedge) Down() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return nil
	}
	w.down = true
	return w.teardownLocked()
}

func (w *Wedge) teardown() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.teardownLocked()
}

func (w *Wedge) teardownLocked() error {
	var errs []error
	for i := range w.Sides {
		if d := w.Sides[i].Dev; d != nil {
			errs = append(errs, d.Close())
		}
	}
	for i, s := range w.Sides {
		errs = append(errs, s.record().verify(sideName(i)))
	}
	if w.RunDir != "" {
		if err := os.RemoveAll(w.RunDir); err != nil {
			errs = append(errs, fmt.Errorf("remove run directory: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("take wedge %q out: %w", w.Name, err)
	}
	return nil
}

func (s *WedgeSide) record() SideRecord {
	return SideRecord{Target: s.Target.String(), Path: s.Path, NetnsID: s.NetnsID, Link: s.Link, Before: s.before}
}

// removeLink deletes the TUN link named link in n, if there is one.
func removeLink(n *Netns, link string) error {
	h, err := n.Netlink()
	if err != nil {
		return err
	}
	l, err := h.LinkByName(link)
	if err != nil {
		return nil
	}
	if l.Type() != "tuntap" {
		return nil // not ours
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("remove TUN %s from %s: %w", link, n.Name(), err)
	}
	return nil
}

// Reattach puts side i back after its namespace went away (a container that
// restarted): it resolves the side's target again, finds the addresses again,
// opens a new TUN in the new namespace and, if the side's address changed,
// moves the other side's routes to the new one. It returns the new device; the
// old one is closed. A target that is not back yet matches ErrNoSuchNamespace.
func (w *Wedge) Reattach(i int) (tun.Device, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return nil, os.ErrClosed
	}
	var ns [2]*Netns
	defer func() {
		for _, n := range ns {
			if n != nil {
				n.Close()
			}
		}
	}()
	var err error
	if ns[i], err = w.Sides[i].Target.Open(); err != nil {
		return nil, err
	}
	o := 1 - i
	if ns[o], err = OpenNetnsPath(w.Sides[o].Path); err != nil || ns[o].ID() != w.Sides[o].NetnsID {
		if ns[o] != nil {
			ns[o].Close()
			ns[o] = nil
		}
		return nil, fmt.Errorf("side %s (%s) is gone too: %w", sideName(o), w.Sides[o].Target, errBothGone)
	}
	if ns[i].ID() == ns[o].ID() {
		return nil, fmt.Errorf("%s is now the namespace of side %s: %w", w.Sides[i].Target, sideName(o), ErrSameNamespace)
	}
	// Discovery sees the other side's TUN routes: ask for the pair it carries.
	cfg := w.cfg
	cfg.PeerA, cfg.PeerB = w.cfg.PeerA, w.cfg.PeerB
	if len(cfg.PeerA)+len(cfg.PeerB) == 0 {
		if i == 0 {
			cfg.PeerB = w.Sides[1].Addrs
		} else {
			cfg.PeerA = w.Sides[0].Addrs
		}
	}
	plan, err := discoverPast(ns, cfg, o, w.Sides[o].Link)
	if err != nil {
		return nil, err
	}
	old := w.Sides[i]
	s := &w.Sides[i]
	*s = plan[i]
	s.Target, s.NetnsID, s.Path, s.Link = old.Target, ns[i].ID(), nsPath(ns[i]), old.Link
	s.watchProcess()
	if s.before, err = readRoutes(ns[i]); err != nil {
		return nil, err
	}
	if err := w.writeRecord(); err != nil {
		return nil, err
	}
	if err := s.attach(ns[i], w.Device); err != nil {
		if s.Dev != nil {
			s.Dev.Close()
		}
		s.Dev = nil
		return nil, err
	}
	// The other side's routes lead to the old addresses; move them if they changed.
	other := &w.Sides[o]
	if !slices.Equal(other.Routes, plan[o].Routes) {
		h, err := ns[o].Netlink()
		if err != nil {
			return nil, err
		}
		l, err := h.LinkByName(other.Link)
		if err != nil {
			return nil, fmt.Errorf("side %s lost its TUN %s: %w", sideName(o), other.Link, err)
		}
		for _, r := range other.Routes {
			if !slices.Contains(plan[o].Routes, r) {
				h.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: r.Addr().AsSlice(), Mask: net.CIDRMask(r.Bits(), r.Addr().BitLen())}})
			}
		}
		var add []netip.Prefix
		for _, r := range plan[o].Routes {
			if !slices.Contains(other.Routes, r) {
				add = append(add, r)
			}
		}
		other.Addrs, other.Peers = plan[o].Addrs, plan[o].Peers
		if err := other.route(h, l.Attrs().Index, add); err != nil {
			return nil, err
		}
		other.Routes = plan[o].Routes
	}
	return s.Dev, nil
}

var errBothGone = errors.New("both namespaces went away")

// discoverPast is discover for a re-attach: the other side (index o) still has
// the wedge's TUN link, whose routes lead to the old addresses; they are taken
// out of its kernel's answers by deleting nothing, only by asking for the path
// the other side had before (its Via) when a lookup ends on the TUN.
func discoverPast(ns [2]*Netns, cfg WedgeConfig, o int, link string) ([2]WedgeSide, error) {
	h, err := ns[o].Netlink()
	if err != nil {
		return [2]WedgeSide{}, err
	}
	l, err := h.LinkByName(link)
	if err != nil {
		return [2]WedgeSide{}, fmt.Errorf("side %s lost its TUN %s: %w", sideName(o), link, err)
	}
	// Take the host routes down for the lookups and put them back after: the
	// traffic they carry has nowhere to go while the other side is away anyway.
	rs, err := h.RouteList(l, netlink.FAMILY_ALL)
	if err != nil {
		return [2]WedgeSide{}, err
	}
	for i := range rs {
		h.RouteDel(&rs[i])
	}
	plan, derr := discover(ns, cfg)
	for i := range rs {
		if err := h.RouteAdd(&rs[i]); err != nil && !errors.Is(err, unix.EEXIST) {
			derr = errors.Join(derr, fmt.Errorf("put route %s back: %w", rs[i].Dst, err))
		}
	}
	return plan, derr
}

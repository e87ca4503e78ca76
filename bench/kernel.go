package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/idlegate/idlegate/lab"
)

// The kernel reference topology: the lab's address plan, with a router
// namespace doing what idlegate does in user space.
//
//	 PREFIX-client netns          PREFIX-router netns                      PREFIX-server netns
//	+--------------------+      +----------------------------------+      +--------------------+
//	| veth0 198.18.0.2/24|<---->| c0 198.18.0.1/24  s0 198.19.0.1/24|<---->| veth0 198.19.0.2/24|
//	| route 198.19.0.0/24|      | ip_forward=1                      |      | route 198.18.0.0/24|
//	|   via 198.18.0.1   |      | nft forward: ct state             |      |   via 198.19.0.1   |
//	+--------------------+      |   established,related accept;     |      +--------------------+
//	                            |   ct state new accept; policy drop|
//	                            +----------------------------------+
//
// Nothing is routed anywhere else: no namespace has a default route, and the
// veth pairs are created inside the namespaces, never in the root namespace.

// KernelLink is the name of the client's and the server's link.
const KernelLink = "veth0"

// Router-side addresses of the two veth pairs.
var (
	RouterInside4  = netip.MustParseAddr("198.18.0.1")
	RouterOutside4 = netip.MustParseAddr("198.19.0.1")
)

// kernelRuleset is the router's nftables ruleset: a stateful forward filter as
// a plain Linux firewall has it. Invalid packets fall to the drop policy, as
// idlegate drops them.
const kernelRuleset = `table inet bench {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state new accept
	}
}
`

// KernelConfig says which kernel topology to build.
type KernelConfig struct {
	// Prefix names the namespaces PREFIX-client, PREFIX-router and PREFIX-server.
	Prefix string
	// MTU of every veth link; 0 means 1500.
	MTU int
	// UDPTimeout sets the router's nf_conntrack_udp_timeout; 0 keeps the kernel's.
	UDPTimeout time.Duration
	// Ruleset replaces the router's nftables ruleset (kernelRuleset) when not empty.
	Ruleset string
	// Sysctls are written in the router namespace, each name under
	// /proc/sys/net/netfilter (nf_conntrack_tcp_timeout_established, ...).
	Sysctls map[string]string
}

// Kernel is a running kernel topology. Down removes it.
type Kernel struct {
	Client, Router, Server string // namespace names
	MTU                    int
}

// KernelNamespaces lists the namespaces of the topology named by prefix.
func KernelNamespaces(prefix string) []string {
	return []string{prefix + "-client", prefix + "-router", prefix + "-server"}
}

// CleanupKernel removes the namespaces a killed run left behind for prefix.
func CleanupKernel(prefix string) error {
	var errs []error
	for _, ns := range KernelNamespaces(prefix) {
		errs = append(errs, lab.DeleteNamespace(ns))
	}
	return errors.Join(errs...)
}

// UpKernel builds the topology. Leftovers of an earlier run with the same
// prefix are removed first; if UpKernel fails part way it removes what it built.
// It needs root and the nft command.
func UpKernel(cfg KernelConfig) (_ *Kernel, err error) {
	if cfg.Prefix == "" {
		return nil, errors.New("kernel topology: empty namespace prefix")
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, errors.New("kernel topology: the nft command is missing; install nftables (bash deps.sh)")
	}
	if err := CleanupKernel(cfg.Prefix); err != nil {
		return nil, err
	}
	names := KernelNamespaces(cfg.Prefix)
	k := &Kernel{Client: names[0], Router: names[1], Server: names[2], MTU: cfg.MTU}
	defer func() {
		if err != nil {
			err = errors.Join(err, k.Down())
		}
	}()
	var nss [3]*lab.Netns
	for i, name := range names {
		if nss[i], err = lab.CreateNamespace(name); err != nil {
			return nil, err
		}
		defer nss[i].Close()
	}
	client, router, server := nss[0], nss[1], nss[2]

	rh, err := router.Netlink()
	if err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name string
		peer *lab.Netns
	}{{"c0", client}, {"s0", server}} {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: p.name, MTU: cfg.MTU},
			PeerName:      KernelLink,
			PeerNamespace: netlink.NsFd(int(p.peer.Handle())),
			PeerMTU:       uint32(cfg.MTU),
		}
		if err := rh.LinkAdd(veth); err != nil {
			return nil, fmt.Errorf("add veth %s in %s: %w", p.name, k.Router, err)
		}
	}
	if err := configure(rh, k.Router, "c0", netip.PrefixFrom(RouterInside4, 24), nil); err != nil {
		return nil, err
	}
	if err := configure(rh, k.Router, "s0", netip.PrefixFrom(RouterOutside4, 24), nil); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		ns    *lab.Netns
		name  string
		addr  netip.Addr
		route netip.Prefix
		via   netip.Addr
	}{
		{client, k.Client, lab.ClientAddr4, lab.OutsideNet4, RouterInside4},
		{server, k.Server, lab.ServerAddr4, lab.InsideNet4, RouterOutside4},
	} {
		h, err := s.ns.Netlink()
		if err != nil {
			return nil, err
		}
		err = configure(h, s.name, KernelLink, netip.PrefixFrom(s.addr, 24), &netlink.Route{
			Dst: prefixNet(s.route), Gw: net.IP(s.via.AsSlice()),
		})
		if err != nil {
			return nil, err
		}
	}

	if err := router.Run(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0)
	}); err != nil {
		return nil, fmt.Errorf("enable ip_forward in %s: %w", k.Router, err)
	}
	ruleset := kernelRuleset
	if cfg.Ruleset != "" {
		ruleset = cfg.Ruleset
	}
	if err := k.nft(ruleset); err != nil {
		return nil, err
	}
	for name, v := range cfg.Sysctls {
		path := "/proc/sys/net/netfilter/" + name
		if err := lab.Do(k.Router, func() error { return os.WriteFile(path, []byte(v+"\n"), 0) }); err != nil {
			return nil, fmt.Errorf("set %s=%s in %s: %w", name, v, k.Router, err)
		}
	}
	if cfg.UDPTimeout > 0 {
		secs := strconv.Itoa(int(cfg.UDPTimeout / time.Second))
		if err := router.Run(func() error {
			return os.WriteFile("/proc/sys/net/netfilter/nf_conntrack_udp_timeout", []byte(secs+"\n"), 0)
		}); err != nil {
			return nil, fmt.Errorf("set nf_conntrack_udp_timeout in %s: %w", k.Router, err)
		}
	}
	return k, nil
}

// configure gives link in the namespace behind h an address, brings it and
// loopback up, and adds route if not nil.
func configure(h *netlink.Handle, ns, link string, addr netip.Prefix, route *netlink.Route) error {
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", link, ns, err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(addr)}); err != nil {
		return fmt.Errorf("address %s on %s in %s: %w", addr, link, ns, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up in %s: %w", link, ns, err)
	}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bring lo up in %s: %w", ns, err)
	}
	if route != nil {
		route.LinkIndex = l.Attrs().Index
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("route %s in %s: %w", route.Dst, ns, err)
		}
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// nft loads ruleset into the router namespace with nft -f -.
func (k *Kernel) nft(ruleset string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := lab.StartIn(k.Router, cmd); err != nil {
		return fmt.Errorf("nft in %s: %w", k.Router, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", k.Router, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Down removes the three namespaces and with them the veth pairs and the
// router's ruleset and conntrack table. Processes still running in them keep
// a namespace alive until they exit; stop them first. Down is idempotent.
func (k *Kernel) Down() error {
	var errs []error
	for _, ns := range []string{k.Client, k.Router, k.Server} {
		errs = append(errs, lab.DeleteNamespace(ns))
	}
	return errors.Join(errs...)
}

// sysctlPath is a per-namespace sysctl file of the router's conntrack.
const (
	ctCountPath = "/proc/sys/net/netfilter/nf_conntrack_count"
	ctMaxPath   = "/proc/sys/net/netfilter/nf_conntrack_max"
)

// ConntrackCounter opens the router's nf_conntrack_count. A net sysctl file
// stays bound to the namespace it was opened in, so the returned function reads
// the router's count from any thread, in a few microseconds. Close the file
// when done.
func (k *Kernel) ConntrackCounter() (read func() (int, error), f *os.File, err error) {
	err = lab.Do(k.Router, func() error {
		f, err = os.Open(ctCountPath)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("open %s in %s: %w", ctCountPath, k.Router, err)
	}
	var buf [32]byte
	read = func() (int, error) {
		n, err := f.ReadAt(buf[:], 0)
		if n == 0 && err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	}
	return read, f, nil
}

// ConntrackMax is the router's nf_conntrack_max (global on Linux ≥ 4.x: a
// namespace cannot raise it).
func (k *Kernel) ConntrackMax() (int, error) {
	var n int
	err := lab.Do(k.Router, func() error {
		b, err := os.ReadFile(ctMaxPath)
		if err != nil {
			return err
		}
		n, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	return n, err
}

// FlushConntrack forgets every connection in the router's table
// (conntrack -F).
func (k *Kernel) FlushConntrack() error {
	ns, err := lab.OpenNetns(k.Router)
	if err != nil {
		return err
	}
	defer ns.Close()
	// A NETLINK_NETFILTER socket made inside the router's namespace.
	if err := ns.Run(func() error { return netlink.ConntrackTableFlush(netlink.ConntrackTable) }); err != nil {
		return fmt.Errorf("flush conntrack in %s: %w", k.Router, err)
	}
	return nil
}

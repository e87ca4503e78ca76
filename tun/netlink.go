package tun

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LinkConfig is what Configure applies to a link. Zero fields are left alone.
type LinkConfig struct {
	Rename string         // new interface name; "" keeps the current one
	MTU    int            // bytes; 0 keeps the current MTU
	Addrs  []netip.Prefix // interface addresses with their on-link prefix length, e.g. 198.18.0.2/24
	Routes []netip.Prefix // destinations routed straight out of the link (no gateway)
}

// MoveToNamespace moves the link named link from the calling thread's network
// namespace into ns. The link keeps its name, is down afterwards, and loses its
// addresses; an open TUN descriptor stays usable.
func MoveToNamespace(link string, ns netns.NsHandle) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("move link %q: %w", link, err)
	}
	if err := netlink.LinkSetNsFd(l, int(ns)); err != nil {
		return fmt.Errorf("move link %q to namespace %v: %w", link, ns, err)
	}
	return nil
}

// Configure sets up the link named link inside the network namespace ns (the
// calling thread is not switched). In order it renames the link, sets the MTU,
// brings the link and lo up, adds the addresses and adds the routes. IPv6
// addresses get IFA_F_NODAD so that they are usable at once instead of after
// duplicate address detection (about a second). Addresses and routes are
// replaced if present, so Configure may be repeated.
func Configure(ns netns.NsHandle, link string, cfg LinkConfig) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("configure link %q: netlink in namespace %v: %w", link, ns, err)
	}
	defer h.Close()

	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("configure link %q: %w", link, err)
	}
	if cfg.Rename != "" && cfg.Rename != link {
		if len(cfg.Rename) > maxInterfaceName {
			return fmt.Errorf("rename link %q to %q: interface names are at most %d bytes", link, cfg.Rename, maxInterfaceName)
		}
		if err := h.LinkSetName(l, cfg.Rename); err != nil {
			return fmt.Errorf("rename link %q to %q: %w", link, cfg.Rename, err)
		}
		link = cfg.Rename
	}
	if cfg.MTU != 0 {
		if err := h.LinkSetMTU(l, cfg.MTU); err != nil {
			return fmt.Errorf("set MTU %d on link %q: %w", cfg.MTU, link, err)
		}
	}
	// Up before routes: the kernel refuses a device route on a down link.
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set link %q up: %w", link, err)
	}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	for _, p := range cfg.Addrs {
		if !p.IsValid() || p.Addr().Is4In6() {
			return fmt.Errorf("add address %v to link %q: want a plain IPv4 or IPv6 prefix", p, link)
		}
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(l, a); err != nil {
			return fmt.Errorf("add address %v to link %q: %w", p, link, err)
		}
	}
	for _, p := range cfg.Routes {
		if !p.IsValid() || p.Addr().Is4In6() {
			return fmt.Errorf("add route %v via link %q: want a plain IPv4 or IPv6 prefix", p, link)
		}
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(p.Masked())}
		if p.Addr().Is4() {
			r.Scope = netlink.SCOPE_LINK
		}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("add route %v via link %q: %w", p, link, err)
		}
	}
	return nil
}

// ipNet converts p, keeping its host bits (an interface address is
// 198.18.0.2/24, not 198.18.0.0/24).
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

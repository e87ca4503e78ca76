// Package lab builds the two-namespace topology the gateway sits in:
//
//	  NAME-client netns              gateway process (root netns)          NAME-server netns
//	+-------------------+          +----------------------------+       +-------------------+
//	| gw0 198.18.0.2/24 |<-- fd -->| client TUN      server TUN |<-fd-->| gw0 198.19.0.2/24 |
//	|     fd00:18::2/64 |          |        policy.Engine       |       |     fd00:19::2/64 |
//	| routes via gw0:   |          +----------------------------+       | routes via gw0:   |
//	|   198.19.0.0/24   |                                               |   198.18.0.0/24   |
//	|   fd00:19::/64    |                                               |   fd00:18::/64    |
//	+-------------------+                                               +-------------------+
//
// Each side is a named network namespace (/run/netns/NAME-client and
// /run/netns/NAME-server) holding one TUN link, gw0, whose descriptor stays in
// the process that called Up. Nothing is routed anywhere else: neither
// namespace has a default route, and the TUN descriptors only reach the
// process holding them.
//
// Both TUN devices are of one kind (Config.Device): the fast Linux device
// (tun.OpenFast: virtio_net_hdr with TCP and UDP segmentation offload, so that
// the kernel hands the gateway 64 KiB super-packets) wherever the kernel has it,
// else the portable water device. The links' MTU is 1500 by default, the
// Ethernet MTU of the paths the modelled middleboxes sit on; with offloads the
// cost per byte stays low at that MTU (see BENCHMARKS.md, "Data path").
//
// The lab's run directory, RunBase/NAME, holds the pid file of the process
// that owns the TUN descriptors; it tells a live lab from the leftovers of a
// killed one. Every operation needs root.
package lab

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"sync"

	"github.com/idlegate/idlegate/tun"
)

// The fixed addresses of every lab: RFC 2544 benchmarking ranges for IPv4 and
// unique local addresses (RFC 4193) for IPv6.
var (
	InsideNet4  = netip.MustParsePrefix("198.18.0.0/24") // the client's network
	InsideNet6  = netip.MustParsePrefix("fd00:18::/64")
	OutsideNet4 = netip.MustParsePrefix("198.19.0.0/24") // the server's network
	OutsideNet6 = netip.MustParsePrefix("fd00:19::/64")

	ClientAddr4 = netip.MustParseAddr("198.18.0.2")
	ClientAddr6 = netip.MustParseAddr("fd00:18::2")
	ServerAddr4 = netip.MustParseAddr("198.19.0.2")
	ServerAddr6 = netip.MustParseAddr("fd00:19::2")

	// NATAddr4 and NATAddr6 are the gateway's outside addresses for NAT. They
	// are on no interface: the server reaches them through its on-link route
	// for OutsideNet4/OutsideNet6, which leads into the gateway.
	NATAddr4 = netip.MustParseAddr("198.19.0.1")
	NATAddr6 = netip.MustParseAddr("fd00:19::1")

	// RouterAddr4 and RouterAddr6 are the gateway's addresses toward the client,
	// as a router hop: the ICMP time exceeded it sends the client comes from
	// them (toward the server, from NATAddr4/NATAddr6). Like the NAT addresses
	// they are on no interface; the kernel router of `make bench` has the same.
	RouterAddr4 = netip.MustParseAddr("198.18.0.1")
	RouterAddr6 = netip.MustParseAddr("fd00:18::1")
)

const (
	DefaultName    = "idlegate"
	DefaultMTU     = 1500
	DefaultRunBase = "/run/idlegate"

	// LinkName is the TUN link's name inside both namespaces.
	LinkName = "gw0"
	// PIDFile is the name of the pid file in the run directory.
	PIDFile = "gateway.pid"
	// MaxNameLen bounds a lab name so that NAME-client and NAME-server stay
	// short.
	MaxNameLen = 20
	// minMTU is the IPv6 minimum link MTU (RFC 8200 section 5); below it the
	// kernel disables IPv6 on the link and the IPv6 addresses cannot be added.
	minMTU = 1280
)

// Config says which lab to build. The zero value is the default lab.
type Config struct {
	Name    string // [a-z0-9-], starts with a letter or digit, at most MaxNameLen; "" means DefaultName
	MTU     int    // of both gw0 links, 1280..65535; 0 means DefaultMTU
	RunBase string // parent of the run directory; "" means DefaultRunBase
	// Device is the kind of TUN device the gateway holds, the same on both
	// sides: DeviceFast (tun.OpenFast: IFF_VNET_HDR, segmentation offload,
	// batched reads), DeviceWater (tun.OpenWater: one plain packet per read,
	// portable), or DeviceAuto ("" too): the value of the environment
	// variable DeviceEnv if set, else fast when tun.FastAvailable says it
	// works here, else water.
	Device string
}

// Device kinds for Config.Device.
const (
	DeviceAuto  = "auto"
	DeviceFast  = "fast"
	DeviceWater = "water"
	// DeviceEnv names the environment variable that picks the device of a
	// lab whose Config.Device is auto: fast or water. It lets a benchmark or
	// CI run compare both without a flag.
	DeviceEnv = "IDLEGATE_DEVICE"
)

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.RunBase == "" {
		c.RunBase = DefaultRunBase
	}
	if c.Device == "" {
		c.Device = DeviceAuto
	}
	return c
}

// resolveDevice turns DeviceAuto into the device this machine gets.
func resolveDevice(device string) (string, error) {
	if device == DeviceAuto {
		device = os.Getenv(DeviceEnv)
		if device == "" || device == DeviceAuto {
			if tun.FastAvailable() == nil {
				return DeviceFast, nil
			}
			return DeviceWater, nil
		}
	}
	switch device {
	case DeviceFast, DeviceWater:
		return device, nil
	}
	return "", fmt.Errorf("lab device %q: want %s, %s or %s", device, DeviceAuto, DeviceFast, DeviceWater)
}

// Lab is a running topology owned by this process.
type Lab struct {
	Name   string
	RunDir string // RunBase/Name, mode 0700
	Client Side   // inside: NAME-client
	Server Side   // outside: NAME-server
	Device string // the device kind both sides got: DeviceFast or DeviceWater

	mu   sync.Mutex // guards down
	down bool
}

// Side is one namespace of the lab and the gateway's end of its TUN link.
type Side struct {
	Namespace string     // the named network namespace, NAME-client or NAME-server
	Addr4     netip.Addr // gw0's IPv4 address inside Namespace
	Addr6     netip.Addr // gw0's IPv6 address inside Namespace
	Dev       tun.Device // the gateway's end: what Namespace sends via gw0 is read here
}

// ClientNamespace and ServerNamespace name the namespaces of lab name.
func ClientNamespace(name string) string { return name + "-client" }

// ServerNamespace names the outside namespace of lab name.
func ServerNamespace(name string) string { return name + "-server" }

// Up builds the lab cfg describes and records this process in its pid file.
//
// It fails with ErrBadName, ErrNotRoot or tun.ErrNoTUN before touching anything,
// and with ErrInUse if the pid file names a live process. Leftovers of a
// previous lab of that name whose process died (its namespaces and run
// directory) are removed first. If Up fails part way, everything it created is
// removed before it returns.
func Up(cfg Config) (_ *Lab, err error) {
	cfg = cfg.withDefaults()
	if err := CheckName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.MTU < minMTU || cfg.MTU > 65535 {
		return nil, fmt.Errorf("lab MTU %d: IPv6 needs at least %d; pick an MTU from %d to 65535", cfg.MTU, minMTU, minMTU)
	}
	device, err := resolveDevice(cfg.Device)
	if err != nil {
		return nil, err
	}
	if err := CheckHost(); err != nil {
		return nil, err
	}

	unlock, err := lockRunBase(cfg.RunBase)
	if err != nil {
		return nil, err
	}
	defer unlock()

	runDir := RunDir(cfg.Name, cfg.RunBase)
	if pid, err := readPIDFile(runDir); err == nil && alive(pid) {
		return nil, &inUseError{name: cfg.Name, pid: pid}
	}
	if _, err := cleanupLocked(cfg.Name, runDir); err != nil {
		return nil, fmt.Errorf("remove leftovers of lab %q: %w", cfg.Name, err)
	}

	l := &Lab{Name: cfg.Name, RunDir: runDir, Device: device}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.teardown())
		}
	}()
	if err := os.Mkdir(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	if err := l.WritePID(os.Getpid()); err != nil {
		return nil, err
	}
	l.Client = Side{Namespace: ClientNamespace(cfg.Name), Addr4: ClientAddr4, Addr6: ClientAddr6}
	if err := l.Client.build(device, tunName(cfg.Name, 'c'), cfg.MTU, []netip.Prefix{OutsideNet4, OutsideNet6}); err != nil {
		return nil, err
	}
	l.Server = Side{Namespace: ServerNamespace(cfg.Name), Addr4: ServerAddr4, Addr6: ServerAddr6}
	if err := l.Server.build(device, tunName(cfg.Name, 's'), cfg.MTU, []netip.Prefix{InsideNet4, InsideNet6}); err != nil {
		return nil, err
	}
	return l, nil
}

// build creates the side's namespace and its TUN (opened here, in the root
// namespace, with its MTU set, then moved in and renamed gw0) and configures
// it. On error the caller tears down whatever s already names.
func (s *Side) build(device, link string, mtu int, routes []netip.Prefix) error {
	ns, err := CreateNamespace(s.Namespace)
	if err != nil {
		return err
	}
	defer ns.Close()
	if device == DeviceFast {
		var d *tun.FastDevice
		if d, err = tun.OpenFast(link, tun.FastConfig{MTU: mtu}); err == nil {
			s.Dev = d
		}
	} else {
		s.Dev, err = tun.OpenWater(link, mtu)
	}
	if err != nil {
		return err
	}
	if err := tun.MoveToNamespace(link, ns.Handle()); err != nil {
		return err
	}
	return tun.Configure(ns.Handle(), link, tun.LinkConfig{
		Rename: LinkName, // the MTU was set when the device was opened
		Addrs: []netip.Prefix{
			netip.PrefixFrom(s.Addr4, 24),
			netip.PrefixFrom(s.Addr6, 64),
		},
		Routes: routes,
	})
}

// Down ends the processes lab exec started in the lab (EndProcesses), closes both
// devices, deletes both namespaces and removes the run directory, the pid file
// last. Calls after the first return nil. Down does
// not stop goroutines reading the devices; their Reads fail with os.ErrClosed.
func (l *Lab) Down() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return nil
	}
	l.down = true
	return l.teardown()
}

func (l *Lab) teardown() error {
	var errs []error
	if l.RunDir != "" {
		if _, err := endProcesses(l.Name, l.RunDir); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range []*Side{&l.Client, &l.Server} {
		if s.Dev != nil {
			errs = append(errs, s.Dev.Close())
		}
		if s.Namespace != "" {
			errs = append(errs, DeleteNamespace(s.Namespace))
		}
	}
	if err := os.RemoveAll(l.RunDir); err != nil {
		errs = append(errs, fmt.Errorf("remove run directory: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down lab %q: %w", l.Name, err)
	}
	return nil
}

// tunName is the TUN's name in the root namespace, before it moves into its
// namespace and becomes gw0: "ig", the FNV-1a hash of the lab name in hex and
// side ('c' or 's'). Unique per lab, 11 bytes (the limit is 15).
func tunName(lab string, side byte) string {
	h := fnv.New32a()
	h.Write([]byte(lab))
	return fmt.Sprintf("ig%08x%c", h.Sum32(), side)
}

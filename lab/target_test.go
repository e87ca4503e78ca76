package lab

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for _, tt := range []struct {
		in, want string // want: the Target as String, or "" for an error containing bad
		bad      string
	}{
		{"netns:client", "netns:client", ""},
		{"pid:4242", "pid:4242", ""},
		{"path:/proc/1/ns/net", "path:/proc/1/ns/net", ""},
		{"docker:db", "docker:db", ""},
		{"docker:3f2a9c_x.y-1", "docker:3f2a9c_x.y-1", ""},
		{"podman:app", "podman:app", ""},
		{"ip:10.244.1.7", "ip:10.244.1.7", ""},
		{"ip:::ffff:10.0.0.1", "ip:10.0.0.1", ""},
		{"ip:fd00::7", "ip:fd00::7", ""},
		{"db", "", "is not a namespace"},
		{"docker:", "", "is not a namespace"},
		{"kube:pod", "", "is not a namespace"},
		{"pid:0", "", "a positive number"},
		{"pid:x", "", "a positive number"},
		{"path:proc/1/ns/net", "", "absolute path"},
		{"netns:a/b", "", "no '/'"},
		{"docker:-rm", "", "name or ID"},
		{"ip:224.0.0.1", "", "unicast address"},
		{"ip:fe80::1%eth0", "", "unicast address"},
		{"ip:nope", "", "unicast address"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if tt.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tt.bad) {
					t.Fatalf("ParseTarget(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.bad)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("ParseTarget(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestCheckFamilies(t *testing.T) {
	a := netip.MustParseAddr
	for _, tt := range []struct {
		name string
		cfg  WedgeConfig
		bad  string
	}{
		{"one per family", WedgeConfig{PeerA: []netip.Addr{a("10.0.0.1"), a("fd00::1")}, NAT: []netip.Addr{a("10.9.9.9")}}, ""},
		{"two IPv4", WedgeConfig{PeerB: []netip.Addr{a("10.0.0.1"), a("10.0.0.2")}}, "--peer-b: give at most one IPv4 and one IPv6"},
		{"loopback", WedgeConfig{PeerA: []netip.Addr{a("127.0.0.1")}}, "--peer-a 127.0.0.1: give a unicast"},
		{"link-local", WedgeConfig{NAT: []netip.Addr{a("fe80::1")}}, "--nat-addr fe80::1: give a unicast"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkFamilies(tt.cfg)
			if tt.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.bad) || !errors.Is(err, ErrBadAddress) {
				t.Fatalf("checkFamilies: %v; want ErrBadAddress saying %q", err, tt.bad)
			}
		})
	}
}

func TestRouteTableDiff(t *testing.T) {
	before := []string{"default dev eth0 via 10.0.0.1", "10.0.0.0/24 dev eth0"}
	if d := routeTable(before).diff(before); d != "" {
		t.Errorf("same table: diff %q", d)
	}
	now := routeTable{"10.0.0.0/24 dev eth0", "10.0.0.3/32 dev ig1a"}
	d := now.diff(before)
	if !strings.Contains(d, "missing default dev eth0 via 10.0.0.1") || !strings.Contains(d, "new 10.0.0.3/32 dev ig1a") {
		t.Errorf("diff %q: want the missing default route and the new host route", d)
	}
}

// TestEngineSocket: where a docker: or podman: target's API is, from the host
// variable or the default sockets, and the sentence when there is none.
func TestEngineSocket(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///tmp/d.sock")
	if s, err := engineSocket("docker"); err != nil || s != "/tmp/d.sock" {
		t.Errorf("DOCKER_HOST=unix:///tmp/d.sock: %q, %v", s, err)
	}
	t.Setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
	if _, err := engineSocket("docker"); !errors.Is(err, ErrNoEngine) || !strings.Contains(err.Error(), "not a local unix socket") {
		t.Errorf("DOCKER_HOST=tcp://: %v; want ErrNoEngine saying it is not local", err)
	}
	t.Setenv("CONTAINER_HOST", "")
	os.Unsetenv("CONTAINER_HOST")
	// The default sockets, moved where none is.
	saved := engineEnv["podman"]
	t.Cleanup(func() { engineEnv["podman"] = saved })
	moved := saved
	moved.sockets = []string{filepath.Join(t.TempDir(), "podman.sock")}
	engineEnv["podman"] = moved
	if _, err := engineSocket("podman"); !errors.Is(err, ErrNoEngine) || !strings.Contains(err.Error(), "install the CLI") {
		t.Errorf("no podman socket: %v; want ErrNoEngine naming the fix", err)
	}
}

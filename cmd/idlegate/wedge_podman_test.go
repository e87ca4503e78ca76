package main_test

// Check 4 of issue 10 with podman (rootful, offline, CNI): the same pair of
// outcomes as with docker, through `idlegate wedge podman:a podman:b`, podman
// resolved through its CLI with a private configuration (enginetest.StartPodman).

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/internal/enginetest"
)

func podmanSide(t *testing.T, p *enginetest.Podman, name, network string) nsSide {
	t.Helper()
	pid, err := strconv.Atoi(p.Run(t, "inspect", "-f", "{{.State.Pid}}", name))
	if err != nil || pid <= 0 {
		t.Fatalf("container %s has no pid: %v", name, err)
	}
	ip := p.Run(t, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", name)
	a, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("container %s has no address on %s: %q", name, network, ip)
	}
	return nsSide{pid: pid, addr: a}
}

func TestWedgePodman(t *testing.T) {
	needRoot(t)
	p := enginetest.StartPodman(t)
	env := p.Env()
	tmp := t.TempDir()
	rootfs := enginetest.RootFS(t, tmp, staticBinaries(t, tmp))
	image := "localhost/idlegate-test:" + p.ID()
	p.Run(t, "import", "--change", `ENTRYPOINT ["/idlegate"]`, rootfs, image)
	network := "wpnet-" + p.ID()
	p.Network(t, network, "198.18.212.0/24", "cniw-"+p.ID()[:6])
	names := map[string]string{"a": "pa-" + p.ID(), "b": "pb-" + p.ID()}
	for side, port := range map[string]string{"a": "7001", "b": "7000"} {
		p.Run(t, "run", "-d", "--pull=never", "--name", names[side], "--network", network, "--cgroup-parent", p.CgroupParent(),
			"--entrypoint", "/rr", image, "server", "-listen", ":"+port)
	}
	a, b := podmanSide(t, p, names["a"], network), podmanSide(t, p, names["b"], network)
	before := a.routes(t) + b.routes(t)
	na := a.open(t)
	defer na.Close()
	to := netip.AddrPortFrom(b.addr, 7000)

	name := uniqueName("wp-")
	cleanupWedge(t, name)
	r := wedgeEnv(t, env, 0, "wedge", "podman:"+names["a"], "podman:"+names["b"], "--name", name,
		"--set", "timeouts.tcp.established=3s", "--set", "orphan=reset", "--detach")
	if !strings.Contains(r.stdout, b.addr.String()+"/32") {
		t.Errorf("wedge output lacks B's route:\n%s", r.stdout)
	}
	idle := nsDial(t, na, to, false)
	ka := nsDial(t, na, to, true)
	for _, c := range []net.Conn{idle, ka} {
		if err := nsEcho(c, "hello"); err != nil {
			t.Fatalf("echo through the wedge: %v", err)
		}
	}
	rows := ctRows(t, name)
	for _, c := range []*net.TCPConn{idle, ka} {
		if !hasRow(rows, c.LocalAddr().(*net.TCPAddr)) {
			t.Errorf("ct list has no row for %v: %+v", c.LocalAddr(), rows)
		}
	}
	time.Sleep(5 * time.Second)
	if err := nsEcho(idle, "still there?"); !isReset(err) {
		t.Errorf("the idle connection after 5 s: %v; want ECONNRESET", err)
	}
	if err := nsEcho(ka, "still there?"); err != nil {
		t.Errorf("the keepalive connection after 5 s: %v; want it alive", err)
	}
	wedgeEnv(t, env, 0, "wedge", "down", "--name", name)
	if got := a.routes(t) + b.routes(t); got != before {
		t.Errorf("routes after wedge down:\n%s\nbefore:\n%s", got, before)
	}
	wantNoWedgeLinks(t, a, b)

	rn := runEnv(t, env, "wedge", "podman:nosuch-"+p.ID(), "podman:"+names["b"], "--name", uniqueName("wp-"))
	if msg := strings.TrimSpace(rn.stderr); rn.code != 4 || !strings.Contains(msg, "no podman container named") || strings.Contains(msg, "\n") {
		t.Errorf("wedge podman:nosuch: %v; want exit 4 and one line saying there is no such container", rn)
	}
}

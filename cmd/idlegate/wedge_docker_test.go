package main_test

// Check 4 of issue 10 with real docker: a private dockerd (enginetest.StartDocker),
// an image imported offline from a rootfs with static idlegate and rr binaries,
// two containers on a user-defined bridge network, and `idlegate wedge docker:a
// docker:b` between them:
//
//	  dockerd's bridge brw-ID 198.18.210.1/24 (in the root namespace)
//	       |                         |
//	  a: rr server :7001        b: rr server :7000 (an echo server)
//	     198.18.210.x              198.18.210.y
//	  the test dials b from a's namespace: idle, and with keepalive

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/internal/enginetest"
	"github.com/idlegate/idlegate/lab"
)

// staticBinaries builds idlegate and bench/rr with CGO_ENABLED=0 into dir, for
// an image with nothing else in it.
func staticBinaries(t *testing.T, dir string) map[string]string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	files := map[string]string{}
	for name, pkg := range map[string]string{"idlegate": ".", "rr": "../../bench/rr"} {
		out := filepath.Join(dir, name)
		cmd := exec.Command(goTool, "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build static %s: %v: %s", name, err, b)
		}
		files["/"+name] = out
	}
	return files
}

// container is a running container's side: its namespace by pid, its address.
func containerSide(t *testing.T, d *enginetest.Docker, name, network string) nsSide {
	t.Helper()
	pid, err := strconv.Atoi(d.Run(t, "inspect", "-f", "{{.State.Pid}}", name))
	if err != nil || pid <= 0 {
		t.Fatalf("container %s has no pid: %v", name, err)
	}
	ip := d.Run(t, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", name)
	a, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("container %s has no address on %s: %q", name, network, ip)
	}
	return nsSide{pid: pid, addr: a}
}

// wedgeEnv runs idlegate with the private daemon's environment.
func wedgeEnv(t *testing.T, env []string, code int, args ...string) result {
	t.Helper()
	r := runEnv(t, env, args...)
	if r.code != code {
		t.Fatalf("idlegate %s: %v; want exit %d", strings.Join(args, " "), r, code)
	}
	return r
}

func TestWedgeDocker(t *testing.T) {
	needRoot(t)
	d := enginetest.StartDocker(t)
	env := []string{"DOCKER_HOST=" + d.Host, "DOCKER_CONFIG=" + filepath.Join(d.Dir, "cli")}
	tmp := t.TempDir()
	rootfs := enginetest.RootFS(t, tmp, staticBinaries(t, tmp))
	image := "idlegate-test:" + d.ID()
	d.Run(t, "import", "-c", `ENTRYPOINT ["/idlegate"]`, rootfs, image)
	network := "wnet-" + d.ID()
	d.Run(t, "network", "create", "--driver", "bridge", "--subnet", "198.18.210.0/24",
		"-o", "com.docker.network.bridge.name=brw-"+d.ID(), network)
	// Named as in docs/containers.md (the daemon is the test's own: no clash).
	names := map[string]string{"a": "app", "b": "db"}
	for side, port := range map[string]string{"a": "7001", "b": "7000"} {
		d.Run(t, "run", "-d", "--pull=never", "--name", names[side], "--network", network,
			"--entrypoint", "/rr", image, "server", "-listen", ":"+port)
	}
	a, b := containerSide(t, d, names["a"], network), containerSide(t, d, names["b"], network)
	beforeA, beforeB := a.routes(t), b.routes(t)
	na := a.open(t)
	defer na.Close()
	to := netip.AddrPortFrom(b.addr, 7000)
	ta, tb := "docker:"+names["a"], "docker:"+names["b"]

	t.Run("idle and keepalive", func(t *testing.T) {
		name := uniqueName("wd-")
		cleanupWedge(t, name)
		r := wedgeEnv(t, env, 0, "wedge", ta, tb, "--name", name,
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
		if got := a.routes(t) + b.routes(t); got != beforeA+beforeB {
			t.Errorf("routes after wedge down:\n%s\nbefore:\n%s", got, beforeA+beforeB)
		}
		wantNoWedgeLinks(t, a, b)
		if err := nsEcho(nsDial(t, na, to, false), "direct"); err != nil {
			t.Errorf("a connection without the gateway: %v", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		created := "c-" + d.ID()
		d.Run(t, "create", "--pull=never", "--name", created, "--network", network, "--entrypoint", "/rr", image, "server")
		for _, tt := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"docker:nosuch-" + d.ID(), tb}, 4, "no docker container named"},
			{[]string{"docker:" + created, tb}, 4, "is not running (status created)"},
			{[]string{ta, "pid:" + strconv.Itoa(a.pid)}, 2, "are one network namespace"},
		} {
			r := runEnv(t, env, append([]string{"wedge", "--name", uniqueName("wd-")}, tt.args...)...)
			msg := strings.TrimSpace(r.stderr)
			if r.code != tt.code || strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) {
				t.Errorf("wedge %s: %v; want exit %d and one line with %q", strings.Join(tt.args, " "), r, tt.code, tt.want)
			}
		}
	})

	t.Run("helper container", func(t *testing.T) {
		// As docs/containers.md runs it: the image as a helper with the host's pids,
		// the daemon's socket (it has no docker CLI: it asks the API) and the host's
		// /run/idlegate, so that `idlegate ct list` on the host reaches it; the
		// wedge's arguments are the compose example's, word for word.
		docArgs := "wedge docker:app docker:db --profile aws-nat-gateway --time-scale 0.01 --nat-addr 198.18.210.250"
		doc, err := os.ReadFile("../../docs/containers.md")
		if err != nil || !strings.Contains(string(doc), docArgs) {
			t.Fatalf("docs/containers.md does not show %q (%v): this test runs what it shows", docArgs, err)
		}
		name := uniqueName("wd-")
		cleanupWedge(t, name)
		sock := strings.TrimPrefix(d.Host, "unix://")
		helper := "h-" + d.ID()
		// --privileged is what docs/containers.md shows first; this machine's
		// container runtime cannot grant every capability (no CAP_SYS_RESOURCE),
		// so the test runs the helper with the ones the wedge needs, which the
		// docs list as the narrower form.
		run := []string{"run", "-d", "--pull=never", "--name", helper, "--pid=host", "--network", "none",
			"--cap-add", "NET_ADMIN", "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE", "--device", "/dev/net/tun",
			"-v", sock + ":/var/run/docker.sock", "-v", "/run/idlegate:/run/idlegate", image}
		d.Run(t, append(append(run, strings.Fields(docArgs)...), "--name", name)...)
		waitFor(t, "the helper's control socket", func() bool {
			return exists(filepath.Join(lab.RunDir(name, ""), gateway.SocketFile))
		})
		st := wedgeState(t, name)
		if st.Wedge == nil || st.Wedge.Sides[1].Target != tb || !st.Policy.NAT.Enabled ||
			!strings.Contains(strings.Join(st.Wedge.Sides[1].Routes, " "), "198.18.210.250/32") {
			t.Fatalf("the helper's state: %+v, NAT %+v; want NAT to 198.18.210.250, routed from B", st.Wedge, st.Policy.NAT)
		}
		idle := nsDial(t, na, to, false)
		ka := nsDial(t, na, to, true)
		for _, c := range []net.Conn{idle, ka} {
			if err := nsEcho(c, "hello"); err != nil {
				t.Fatalf("echo through the helper's wedge: %v (its log: %s)", err, d.Run(t, "logs", helper))
			}
		}
		rows := ctRows(t, name)
		if !hasRow(rows, ka.LocalAddr().(*net.TCPAddr)) {
			t.Errorf("the helper's ct list has no row for the keepalive connection")
		}
		for _, r := range rows {
			if r.Proto == "tcp" && r.Reply.Dst != "198.18.210.250" {
				t.Errorf("a connection not translated to the --nat-addr: %+v", r)
			}
		}
		time.Sleep(5 * time.Second) // aws-nat-gateway's 350 s at 0.01: 3.5 s
		if err := nsEcho(idle, "still there?"); !isReset(err) {
			t.Errorf("the idle connection after 5 s: %v; want ECONNRESET", err)
		}
		if err := nsEcho(ka, "still there?"); err != nil {
			t.Errorf("the keepalive connection after 5 s: %v; want it alive", err)
		}
		d.Run(t, "stop", helper) // SIGTERM: the wedge takes itself out
		if got := a.routes(t) + b.routes(t); got != beforeA+beforeB {
			t.Errorf("routes after docker stop of the helper:\n%s\nbefore:\n%s\nits log: %s", got, beforeA+beforeB, d.Run(t, "logs", helper))
		}
		wantNoWedgeLinks(t, a, b)
		if exists(lab.RunDir(name, "")) {
			t.Errorf("the helper left its run directory")
		}
		d.Run(t, "rm", helper)
	})

	t.Run("restart with --follow", func(t *testing.T) {
		name := uniqueName("wd-")
		cleanupWedge(t, name)
		wedgeEnv(t, env, 0, "wedge", ta, tb, "--name", name, "--follow", "--detach")
		events := followEvents(t, name)
		d.Run(t, "restart", "-t", "1", names["b"])
		if ev := events.wait(t, control.EventGone); ev.Side != "B" || ev.Target != tb {
			t.Errorf("GONE event %+v; want side B, %s", ev, tb)
		}
		if ev := events.wait(t, control.EventAttach); ev.Side != "B" {
			t.Errorf("ATTACH event %+v; want side B", ev)
		}
		nb := containerSide(t, d, names["b"], network)
		if nb.pid == b.pid {
			t.Fatalf("docker restart kept pid %d", b.pid)
		}
		if st := wedgeState(t, name); !strings.Contains(strings.Join(st.Wedge.Sides[1].Addrs, " "), nb.addr.String()) {
			t.Errorf("after ATTACH the wedge has B at %v; B is at %s", st.Wedge.Sides[1].Addrs, nb.addr)
		}
		c := nsDial(t, na, netip.AddrPortFrom(nb.addr, 7000), false)
		if err := nsEcho(c, "after the restart"); err != nil {
			t.Fatalf("echo to the restarted container: %v", err)
		}
		if !hasRow(ctRows(t, name), c.LocalAddr().(*net.TCPAddr)) {
			t.Errorf("the connection to the restarted container did not cross the gateway")
		}
		wedgeEnv(t, env, 0, "wedge", "down", "--name", name)
		if got := a.routes(t); got != beforeA {
			t.Errorf("A's routes after wedge down:\n%s\nbefore:\n%s", got, beforeA)
		}
		wantNoWedgeLinks(t, a, nb)
	})
}

// Package enginetest runs a private container engine for one test, offline,
// and removes everything it made on every exit path: a dockerd of its own
// (StartDocker) and podman with a private configuration (StartPodman). Images
// are made from a rootfs tarball (Image), never pulled; networks are bridges
// with an explicit subnet inside 198.18.0.0/15.
//
// An engine that cannot run fails the test with the reason, in CI as anywhere:
// the tests that use it never skip for want of it.
package enginetest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Docker is a dockerd of the test's own: its data root, exec root, socket,
// pid file and config in one temporary directory, no iptables, no default
// bridge, no forwarding, cgroups under a parent of its own.
type Docker struct {
	Dir  string // the temporary directory, short: a unix socket path is < 108 bytes
	Host string // DOCKER_HOST for the CLI and for idlegate: unix://Dir/docker.sock
	CLI  string // the docker CLI

	id      string
	cmd     *exec.Cmd
	exited  chan struct{}
	cgroup  string          // the --cgroup-parent, without its slash
	before  map[string]bool // /run/containerd/s before dockerd started
	plugins bool            // /run/docker/plugins existed before
}

// StartDocker starts a private dockerd and registers its removal with
// t.Cleanup: containers, networks and images first (through the daemon), then
// the daemon, its mounts and directories, its cgroup directories, the
// containerd shim sockets it left and /run/docker/plugins if it made it. It
// fails t, with the daemon's log, if dockerd is not installed or does not
// answer within 60 s.
func StartDocker(t *testing.T) *Docker {
	t.Helper()
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Fatalf("dockerd is not installed (apt-get install docker.io; deps.sh does): %v", err)
	}
	cli, err := exec.LookPath("docker")
	if err != nil {
		t.Fatalf("the docker CLI is not installed (apt-get install docker.io; deps.sh does): %v", err)
	}
	dir, err := os.MkdirTemp("", "dkr.")
	if err != nil {
		t.Fatal(err)
	}
	d := &Docker{Dir: dir, Host: "unix://" + filepath.Join(dir, "docker.sock"), CLI: cli, id: filepath.Base(dir)[4:],
		exited: make(chan struct{}), before: listDir("/run/containerd/s")}
	d.cgroup = "idlegate-test-" + d.id
	_, err = os.Stat("/run/docker/plugins")
	d.plugins = err == nil
	t.Cleanup(func() { d.remove(t) })
	// deprecated-key-path: else dockerd 20.10 writes /etc/docker/key.json.
	cfg := fmt.Sprintf(`{"deprecated-key-path": %q}`, filepath.Join(dir, "key.json"))
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(dockerd,
		"--config-file", filepath.Join(dir, "daemon.json"),
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", d.Host,
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
		"--default-address-pool", "base=198.19.240.0/21,size=24", "--cgroup-parent=/"+d.cgroup)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.try("version", "--format", "{{.Server.Version}}"); err == nil {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("dockerd exited before it answered: %s", d.Log())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer on %s within 60 s: %s", d.Host, d.Log())
		}
	}
}

// Log is the daemon's log so far, its last 4 KiB.
func (d *Docker) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dockerd.log"))
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// Env is the environment for the CLI and for idlegate: DOCKER_HOST and a
// configuration directory of the test's own.
func (d *Docker) Env() []string {
	return append(os.Environ(), "DOCKER_HOST="+d.Host, "DOCKER_CONFIG="+filepath.Join(d.Dir, "cli"))
}

// ID is a short string unique to this daemon, for names.
func (d *Docker) ID() string { return d.id }

func (d *Docker) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.CLI, args...)
	cmd.Env = d.Env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Run runs the docker CLI against the daemon and returns its output, trimmed;
// it fails t if the command fails.
func (d *Docker) Run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.try(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Try runs the docker CLI and returns its error instead of failing t.
func (d *Docker) Try(args ...string) (string, error) { return d.try(args...) }

func (d *Docker) remove(t *testing.T) {
	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	running := d.cmd != nil && d.cmd.Process != nil && !closed(d.exited)
	var bridges []string
	if running {
		if ids, err := d.try("ps", "-aq"); err == nil && ids != "" {
			_, err := d.try(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
			note(err)
		}
		if nets, err := d.try("network", "ls", "-q", "--filter", "type=custom"); err == nil && nets != "" {
			for _, n := range strings.Fields(nets) {
				if b, err := d.try("network", "inspect", "-f", `{{index .Options "com.docker.network.bridge.name"}}`, n); err == nil && b != "" {
					bridges = append(bridges, b)
				} else {
					bridges = append(bridges, "br-"+n[:min(12, len(n))])
				}
				_, err := d.try("network", "rm", n)
				note(err)
			}
		}
		if imgs, err := d.try("images", "-aq"); err == nil && imgs != "" {
			_, err := d.try(append([]string{"rmi", "-f"}, strings.Fields(imgs)...)...)
			note(err)
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.exited
		}
	}
	// Whatever the daemon left: mounts under its directory (deepest first), its
	// bridges, its cgroups, containerd's shim sockets and the plugins directory.
	note(unmountUnder(d.Dir))
	for _, b := range bridges {
		if exec.Command("ip", "link", "show", b).Run() == nil {
			note(exec.Command("ip", "link", "del", b).Run())
		}
	}
	note(removeCgroups(d.cgroup))
	for name := range listDir("/run/containerd/s") {
		if !d.before[name] {
			note(os.RemoveAll(filepath.Join("/run/containerd/s", name)))
		}
	}
	if !d.plugins {
		os.RemoveAll("/run/docker/plugins")
		os.Remove("/run/docker") // only if empty: a system dockerd's stays
	}
	for _, p := range []string{"/run/containerd/s", "/run/containerd"} {
		os.Remove(p) // only if empty
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		note(err)
	}
	if len(errs) > 0 {
		t.Errorf("removing the test's dockerd: %s", strings.Join(errs, "; "))
	}
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func listDir(dir string) map[string]bool {
	m := map[string]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m
}

// unmountUnder unmounts every mount below dir, deepest first.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the directories named name (and what is below them,
// deepest first) in every cgroup hierarchy.
func removeCgroups(name string) error {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		top := filepath.Join(root, name)
		if fi, err := os.Stat(top); err != nil || !fi.IsDir() {
			continue
		}
		filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// RootFS writes a tarball with the given files (path in the image -> path here),
// each mode 0755, to a file in dir and returns its path: the root filesystem of
// an image made with `docker import` or `podman import`.
func RootFS(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	path := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, d := range []string{"dev/", "proc/", "sys/", "run/", "tmp/", "etc/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode}); err != nil {
			t.Fatal(err)
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(files[n])
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(n, "/"), Mode: 0o755, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

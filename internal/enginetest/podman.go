package enginetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Podman is rootful podman with a configuration of the test's own: storage,
// run root, events, locks and CNI network configs in one temporary directory,
// cgroups under a parent of its own, and networks whose CNI config is trimmed
// to the bridge and its IPAM (no portmap or firewall plugin, so no iptables
// rules; IPAM state in the directory too).
type Podman struct {
	Dir string
	CLI string

	id       string
	existed  map[string]bool // the system paths podman writes to, before the test
	libpod   bool            // a libpod_parent cgroup existed before the test
	networks []string
	bridges  []string
}

// The system paths podman 4 writes to whatever its configuration says.
var podmanSystemPaths = []string{"/var/lib/containers", "/var/lib/cni", "/run/containers", "/run/libpod", "/run/cni"}

// StartPodman prepares a private podman configuration and registers the
// removal of everything made with it with t.Cleanup. It fails t if podman is
// not installed or cannot run a container here.
func StartPodman(t *testing.T) *Podman {
	t.Helper()
	cli, err := exec.LookPath("podman")
	if err != nil {
		t.Fatalf("podman is not installed (apt-get install podman; deps.sh does): %v", err)
	}
	dir, err := os.MkdirTemp("", "pdm.")
	if err != nil {
		t.Fatal(err)
	}
	p := &Podman{Dir: dir, CLI: cli, id: filepath.Base(dir)[4:], existed: map[string]bool{}}
	for _, path := range podmanSystemPaths {
		_, err := os.Stat(path)
		p.existed[path] = err == nil
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/libpod_parent"); len(m) > 0 {
		p.libpod = true
	}
	t.Cleanup(func() { p.remove(t) })
	for _, d := range []string{"cni", "cni-ipam", "root", "run", "tmp", "static", "vol"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Rlimits: runc cannot raise them without CAP_SYS_RESOURCE, which this
	// machine's sandbox lacks, so ask for what a root process has already.
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
lock_type = "file"
tmp_dir = %q
static_dir = %q
volume_path = %q
[network]
network_backend = "cni"
network_config_dir = %q
default_subnet = "198.19.252.0/24"
default_subnet_pools = [{"base" = "198.19.253.0/24", "size" = 26}]
`, filepath.Join(dir, "events.log"), filepath.Join(dir, "tmp"), filepath.Join(dir, "static"), filepath.Join(dir, "vol"), filepath.Join(dir, "cni"))
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", filepath.Join(dir, "root"), filepath.Join(dir, "run"))
	for name, body := range map[string]string{"containers.conf": conf, "storage.conf": storage} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.try("info", "--format", "{{.Host.OCIRuntime.Name}}"); err != nil {
		t.Fatalf("podman does not run here: %v", err)
	}
	return p
}

// ID is a short string unique to this configuration, for names.
func (p *Podman) ID() string { return p.id }

// Env is the environment for the CLI and for idlegate (whose podman: targets
// run the same CLI).
func (p *Podman) Env() []string {
	return []string{"CONTAINERS_CONF=" + filepath.Join(p.Dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(p.Dir, "storage.conf")}
}

// CgroupParent is the --cgroup-parent for the test's containers.
func (p *Podman) CgroupParent() string { return "/idlegate-test-" + p.id }

func (p *Podman) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.CLI, args...)
	cmd.Env = append(os.Environ(), p.Env()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("podman %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Run runs the podman CLI and returns its output, trimmed; it fails t if the
// command fails.
func (p *Podman) Run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.try(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Network creates an internal bridge network with the given subnet (no NAT, no
// forwarding in the root namespace) and bridge name, and trims its CNI config
// to the bridge plugin with its IPAM state kept in the test's directory.
func (p *Podman) Network(t *testing.T, name, subnet, bridge string) {
	t.Helper()
	p.Run(t, "network", "create", "--internal", "--subnet", subnet, name)
	p.networks = append(p.networks, name)
	p.bridges = append(p.bridges, bridge)
	path := filepath.Join(p.Dir, "cni", name+".conflist")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	plugins, _ := conf["plugins"].([]any)
	var kept []any
	for _, pl := range plugins {
		m, _ := pl.(map[string]any)
		if m["type"] != "bridge" {
			continue
		}
		m["bridge"] = bridge // podman 4.3 has no --interface-name
		if ipam, ok := m["ipam"].(map[string]any); ok {
			ipam["dataDir"] = filepath.Join(p.Dir, "cni-ipam")
		}
		kept = append(kept, m)
	}
	if len(kept) != 1 {
		t.Fatalf("%s has no bridge plugin: %s", path, b)
	}
	conf["plugins"] = kept
	if b, err = json.MarshalIndent(conf, "", "  "); err == nil {
		err = os.WriteFile(path, b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (p *Podman) remove(t *testing.T) {
	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	if _, err := os.Stat(filepath.Join(p.Dir, "containers.conf")); err == nil {
		if ids, err := p.try("ps", "-aq"); err == nil && ids != "" {
			_, err := p.try(append([]string{"rm", "-f", "-t", "0"}, strings.Fields(ids)...)...)
			note(err)
		}
		for _, n := range p.networks {
			_, err := p.try("network", "rm", "-f", n)
			note(err)
		}
		if imgs, err := p.try("images", "-aq"); err == nil && imgs != "" {
			_, err := p.try(append([]string{"rmi", "-f"}, strings.Fields(imgs)...)...)
			note(err)
		}
	}
	note(unmountUnder(p.Dir))
	for _, b := range p.bridges {
		if exec.Command("ip", "link", "show", b).Run() == nil {
			note(exec.Command("ip", "link", "del", b).Run())
		}
	}
	note(removeCgroups(strings.TrimPrefix(p.CgroupParent(), "/")))
	if !p.libpod {
		note(removeCgroups("libpod_parent")) // conmon's, with the cgroupfs manager
	}
	for _, path := range podmanSystemPaths {
		if !p.existed[path] {
			note(os.RemoveAll(path))
		}
	}
	note(os.RemoveAll(p.Dir))
	if len(errs) > 0 {
		t.Errorf("removing the test's podman state: %s", strings.Join(errs, "; "))
	}
}

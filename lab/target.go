package lab

import (
	"bytes"
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
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A Target names a network namespace that already exists, one side of a wedge:
//
//	netns:NAME       /run/netns/NAME (ip netns add, CNI, this lab)
//	pid:PID          /proc/PID/ns/net
//	path:PATH        a namespace file: /proc/PID/ns/net or a bind mount of one
//	docker:NAME      a running docker container, by name or ID
//	podman:NAME      a running podman container, by name or ID
//	ip:ADDR          the one namespace on this machine with ADDR on an interface
//	                 (a Kubernetes pod by its pod IP)
//
// docker and podman targets are resolved to the container's main process through
// the engine's own CLI when it is installed (which honours DOCKER_HOST,
// CONTAINER_HOST and contexts), else through its API on the local unix socket
// (DOCKER_HOST or CONTAINER_HOST if unix://, else the default socket). Either
// way the PID must be one of this machine's (a helper container runs with
// --pid=host).
type Target struct {
	Kind  string // one of the TargetKinds
	Value string
}

// TargetKinds are the prefixes a Target is written with.
var TargetKinds = []string{"netns", "pid", "path", "docker", "podman", "ip"}

// Errors a caller branches on; each message names the fix.
var (
	// ErrNoEngine: a docker: or podman: target, and neither the engine's CLI
	// nor its socket is on this machine.
	ErrNoEngine = errors.New("the container engine is not reachable: install its CLI or give its socket")
	// ErrNotRunning: the container exists but has no process, so no namespace.
	ErrNotRunning = errors.New("the container is not running")
)

// ParseTarget reads KIND:VALUE.
func ParseTarget(s string) (Target, error) {
	kind, value, ok := strings.Cut(s, ":")
	if !ok || value == "" || !knownKind(kind) {
		return Target{}, fmt.Errorf("%q is not a namespace: write netns:NAME, pid:PID, path:/proc/PID/ns/net, docker:CONTAINER, podman:CONTAINER or ip:ADDR", s)
	}
	t := Target{Kind: kind, Value: value}
	switch kind {
	case "pid":
		if pid, err := strconv.Atoi(value); err != nil || pid <= 0 {
			return t, fmt.Errorf("%q: a pid is a positive number, like pid:1234", s)
		}
	case "netns":
		if err := checkNetnsName(value); err != nil {
			return t, err
		}
	case "path":
		if !filepath.IsAbs(value) {
			return t, fmt.Errorf("%q: give an absolute path, like path:/proc/1234/ns/net", s)
		}
	case "docker", "podman":
		if !containerName.MatchString(value) {
			return t, fmt.Errorf("%q: a container is named by its name or ID (letters, digits, '_', '.', '-')", s)
		}
	case "ip":
		a, err := netip.ParseAddr(value)
		if err != nil || a.Zone() != "" || !a.IsGlobalUnicast() && !a.IsPrivate() {
			return t, fmt.Errorf("%q: give the unicast address of an interface in the namespace, like ip:10.244.1.7", s)
		}
		t.Value = a.Unmap().String()
	}
	return t, nil
}

var containerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func knownKind(k string) bool {
	for _, x := range TargetKinds {
		if k == x {
			return true
		}
	}
	return false
}

func (t Target) String() string { return t.Kind + ":" + t.Value }

// Open resolves t and opens its namespace. A namespace, process or container
// that is not there matches ErrNoSuchNamespace; a stopped container also
// matches ErrNotRunning; a docker or podman target with neither CLI nor socket
// matches ErrNoEngine.
func (t Target) Open() (*Netns, error) {
	switch t.Kind {
	case "netns":
		return OpenNetns(t.Value)
	case "pid":
		pid, _ := strconv.Atoi(t.Value)
		return OpenNetnsPID(pid)
	case "path":
		return OpenNetnsPath(t.Value)
	case "docker", "podman":
		pid, err := containerPID(t.Kind, t.Value)
		if err != nil {
			return nil, err
		}
		n, err := OpenNetnsPID(pid)
		if errors.Is(err, ErrNoSuchNamespace) {
			return nil, &noSuchNetnsError{fmt.Sprintf("%s reports pid %d for %s, and this machine has no such process: run idlegate on the same machine, and in a container with --pid=host", t.Kind, pid, t)}
		}
		return n, err
	case "ip":
		return openByAddr(netip.MustParseAddr(t.Value))
	}
	return nil, fmt.Errorf("unknown namespace kind %q", t.Kind)
}

// containerState is the part of `inspect` (CLI or API) the wedge reads.
type containerState struct {
	Status  string `json:"Status"`
	Running bool   `json:"Running"`
	Pid     int    `json:"Pid"`
}

// Environment variables and default sockets of each engine.
var engineEnv = map[string]struct {
	hostVar string
	sockets []string
	install string
}{
	"docker": {"DOCKER_HOST", []string{"/var/run/docker.sock", "/run/docker.sock"}, "apt-get install docker.io"},
	"podman": {"CONTAINER_HOST", []string{"/run/podman/podman.sock"}, "apt-get install podman"},
}

// containerPID finds the main process of a running container: through the
// engine's CLI if installed, else through its API on a local unix socket.
func containerPID(engine, name string) (int, error) {
	var st containerState
	var err error
	if cli, lerr := exec.LookPath(engine); lerr == nil {
		st, err = inspectCLI(cli, engine, name)
	} else {
		st, err = inspectAPI(engine, name)
	}
	if err != nil {
		return 0, err
	}
	if !st.Running || st.Pid <= 0 {
		return 0, &notRunningError{fmt.Sprintf("%s container %q is not running (status %s): start it (%s start %s)", engine, name, orUnknown(st.Status), engine, name)}
	}
	return st.Pid, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// notRunningError matches ErrNotRunning and ErrNoSuchNamespace: a stopped
// container has no network namespace.
type notRunningError struct{ msg string }

func (e *notRunningError) Error() string { return e.msg }
func (e *notRunningError) Is(target error) bool {
	return target == ErrNotRunning || target == ErrNoSuchNamespace
}

// noEngineError matches ErrNoEngine.
type noEngineError struct{ msg string }

func (e *noEngineError) Error() string { return e.msg }
func (e *noEngineError) Unwrap() error { return ErrNoEngine }

// engineTimeout bounds one inspect.
const engineTimeout = 20 * time.Second

func inspectCLI(cli, engine, name string) (containerState, error) {
	var st containerState
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, "inspect", "--type", "container", "--format", "{{json .State}}", name)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := firstLine(stderr.String())
		low := strings.ToLower(msg)
		switch {
		case strings.Contains(low, "no such container"), strings.Contains(low, "no such object"):
			return st, &noSuchNetnsError{fmt.Sprintf("no %s container named %q: `%s ps` lists the running ones", engine, name, engine)}
		case ctx.Err() != nil:
			return st, &noEngineError{fmt.Sprintf("`%s inspect %s` did not answer within %s: is the daemon up?", engine, name, engineTimeout)}
		case strings.Contains(low, "cannot connect"), strings.Contains(low, "connection refused"), strings.Contains(low, "unable to connect"):
			return st, &noEngineError{fmt.Sprintf("the %s CLI cannot reach its daemon (%s): start the daemon, or set %s to its socket", engine, strings.TrimSuffix(msg, "."), engineEnv[engine].hostVar)}
		case msg == "":
			msg = err.Error()
		}
		return st, fmt.Errorf("`%s inspect %s` failed: %s", engine, name, msg)
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &st); err != nil {
		return st, fmt.Errorf("`%s inspect %s` printed %q, not the container's state: %v", engine, name, firstLine(stdout.String()), err)
	}
	return st, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimPrefix(s, "Error: ")
}

// engineSocket is the unix socket of engine's API: from its host variable if
// that is a unix:// URL, else the first default socket that exists.
func engineSocket(engine string) (string, error) {
	env := engineEnv[engine]
	if h := os.Getenv(env.hostVar); h != "" {
		path, ok := strings.CutPrefix(h, "unix://")
		if !ok {
			return "", &noEngineError{fmt.Sprintf("%s=%s is not a local unix socket and the %s CLI is not installed: a wedge works on containers of this machine; install the CLI (%s) or set %s=unix:///path/to/socket", env.hostVar, h, engine, env.install, env.hostVar)}
		}
		return path, nil
	}
	for _, s := range env.sockets {
		if fi, err := os.Stat(s); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return s, nil
		}
	}
	return "", &noEngineError{fmt.Sprintf("%s: targets need the %s CLI or its socket, and neither is here: install the CLI (%s), or mount the socket (-v %s:%s) or set %s=unix:///path/to/socket",
		engine, engine, env.install, env.sockets[0], env.sockets[0], env.hostVar)}
}

// inspectAPI asks the engine's API (docker's, or podman's docker-compatible
// one) for the container's state over its unix socket.
func inspectAPI(engine, name string) (containerState, error) {
	var st containerState
	sock, err := engineSocket(engine)
	if err != nil {
		return st, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+engine+"/containers/"+name+"/json", nil)
	if err != nil {
		return st, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return st, &noEngineError{fmt.Sprintf("the %s API does not answer on %s (%v): is the daemon running, and %s set right?", engine, sock, unwrapAll(err), engineEnv[engine].hostVar)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return st, &noSuchNetnsError{fmt.Sprintf("no %s container named %q: `%s ps` lists the running ones", engine, name, engine)}
	case resp.StatusCode != http.StatusOK:
		return st, fmt.Errorf("the %s API on %s answered %s for container %q: %s", engine, sock, resp.Status, name, firstLine(string(body)))
	}
	var c struct {
		State containerState `json:"State"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return st, fmt.Errorf("the %s API on %s answered something that is not a container: %v", engine, sock, err)
	}
	return c.State, nil
}

func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// openByAddr opens the one network namespace on this machine that has addr on
// an interface: the namespaces of every process and of /run/netns, each looked
// at once.
func openByAddr(addr netip.Addr) (*Netns, error) {
	var paths []string
	if ents, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range ents {
			paths = append(paths, filepath.Join(netnsDir, e.Name()))
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range procs {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			paths = append(paths, filepath.Join("/proc", e.Name(), "ns", "net"))
		}
	}
	seen := map[uint64]bool{}
	var found *Netns
	for _, p := range paths {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		n, err := OpenNetnsPath(p)
		if err != nil {
			continue
		}
		if !hasAddr(n, addr) {
			n.Close()
			continue
		}
		if found != nil && found.ID() != n.ID() {
			err := fmt.Errorf("ip:%s is on interfaces of two namespaces (%s and %s): name the one you mean with path: or pid:", addr, found.Name(), n.Name())
			found.Close()
			n.Close()
			return nil, err
		}
		found = n
	}
	if found == nil {
		return nil, &noSuchNetnsError{fmt.Sprintf("no network namespace on this machine has %s on an interface: check the address (kubectl get pod -o wide shows pod IPs)", addr)}
	}
	return found, nil
}

// hasAddr reports whether addr is on an interface of n.
func hasAddr(n *Netns, addr netip.Addr) bool {
	addrs, err := ownAddrs(n)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.addr == addr {
			return true
		}
	}
	return false
}

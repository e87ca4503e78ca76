package main_test

// TestAdviceApps checks `idlegate advise` against the real applications Debian ships.
// For each application, box timeout and orphan verdict, in a lab of its own:
//
//	 NAME-client netns                 idlegate gateway              NAME-server netns
//	+--------------------------+     (lab up --detach, policy     +--------------------------+
//	| bare client  ------------|----> established=T, orphan=X) ---|--> server (bare)         |
//	| client + advice lines ---|---->     forgets flows idle T ---|--> server (+ advice)     |
//	+--------------------------+                                  +--------------------------+
//
// 1. `idlegate lab up --set timeouts.tcp.established=T --set orphan=X --detach`;
// 2. `idlegate advise --name LAB -o json`: the settings are taken from its JSON, the same
//    data as the text, and pasted unchanged into the application's own configuration
//    (a libpq connection string, postgresql.conf, ssh_config, sshd_config, redis.conf,
//    Python keyword arguments or code, curl flags, nginx.conf, the namespace's sysctls);
// 3. servers start inside the lab's server namespace with data of their own in the test's
//    temporary directory (never the system services); clients in the client namespace;
// 4. one request each, then 3 T idle, then another: the client without the advice fails as
//    the real tool fails (an error with orphan reset, a hang with orphan drop), the one with
//    the advice answers on the same connection.
//
// Every case runs in parallel with the others (TestMain lifts -parallel), at T = 3 s, 5 s
// and 8 s, orphan reset and drop.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// appsParallel is how many of TestAdviceApps's cases run at once by default: all of them.
const appsParallel = 80

var (
	appTimeouts = []time.Duration{3 * time.Second, 5 * time.Second, 8 * time.Second}
	appOrphans  = []string{"reset", "drop"}
)

const (
	python3     = "/usr/bin/python3" // Debian's, which has python3-requests, -psycopg2, -redis (not a pyenv python)
	firstAnswer = 30 * time.Second   // for servers and clients to start, under the load of every case at once
	afterIdle   = 5 * time.Second    // for the advised client to answer, and the bare one to fail, after the idle
	// appSetups is how many cases start their lab, servers and first connections at once:
	// all of them at once starve a 2-core machine for seconds.
	appSetups = 6
	// setupTimeout is the box's established timeout while a case starts its servers and
	// first connections: under the load of a whole `make test` an sshd can be silent for
	// longer than 3 s between the handshake and its first answer, and a 3 s box rightly
	// kills that connection before the idle the case is about. The case's own timeout
	// (the one advise was asked for) comes back live, with policy set, in h.ready, before
	// the idle; an entry's deadline is its last packet plus the timeout of the moment.
	setupTimeout = 5 * time.Minute
)

var appSetup = make(chan struct{}, appSetups)

// appCase is one application: run plays it in a lab whose advice is h.advice.
type appCase struct {
	name  string
	items []string // advice items pasted
	needs []string // programs (or Python modules, "py:NAME") it needs
	run   func(h *appLab)
}

func TestAdviceApps(t *testing.T) {
	needRoot(t)
	cases := appCases()
	missing := map[string]bool{}
	for _, c := range cases {
		for _, n := range c.needs {
			if !haveProgram(n) {
				missing[n] = true
			}
		}
	}
	if len(missing) > 0 {
		var names []string
		for n := range missing {
			names = append(names, n)
		}
		sort.Strings(names)
		msg := fmt.Sprintf("missing %s: run deps.sh (as root) to install the Debian packages", strings.Join(names, ", "))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	tmpl := pgTemplate(t)
	type row struct {
		name string
		t    *testing.T
		took time.Duration
	}
	var mu sync.Mutex
	var rows []*row
	start := time.Now()
	t.Cleanup(func() {
		var b strings.Builder
		fmt.Fprintf(&b, "%-32s %-5s %s\n", "case", "", "time (with its wait for a setup slot)")
		failed := 0
		sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
		for _, r := range rows {
			res := "PASS"
			if r.t.Failed() {
				res, failed = "FAIL", failed+1
			}
			fmt.Fprintf(&b, "%-32s %-5s %.1fs\n", r.name, res, r.took.Seconds())
		}
		fmt.Fprintf(&b, "%d cases, %d failed, wall %.1fs", len(rows), failed, time.Since(start).Seconds())
		t.Log("\n" + b.String())
	})
	for _, c := range cases {
		for _, est := range appTimeouts {
			for _, orphan := range appOrphans {
				c, est, orphan := c, est, orphan
				name := fmt.Sprintf("%s/%s/%s", c.name, policy.FormatDuration(est), orphan)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					r := &row{name: name, t: t}
					mu.Lock()
					rows = append(rows, r)
					mu.Unlock()
					began := time.Now()
					defer func() { r.took = time.Since(began) }()
					appSetup <- struct{}{}
					var once sync.Once
					ready := func() { once.Do(func() { <-appSetup }) }
					defer ready()
					h := newAppLab(t, est, orphan, tmpl)
					h.ready = func() { h.boxTimeout(); ready() }
					for _, id := range c.items {
						h.config(id) // every item pasted works at this timeout
					}
					c.run(h)
				})
			}
		}
	}
}

// appCases are the applications and the advice items pasted into each.
func appCases() []appCase {
	return []appCase{
		// curl first: its 60 s wait is the longest, so it should not queue for a setup slot.
		{name: "curl", items: []string{"curl"}, needs: []string{"nginx", "curl"}, run: func(h *appLab) {
			h.startNginx("server", "backend", nginxServers("listen 80;"), 80)
			h.curlRate(strings.Fields(h.config("curl")))
		}},
		{name: "psql-libpq", items: []string{"libpq"}, needs: []string{"psql", "postgres"}, run: func(h *appLab) {
			h.startPostgres(5432, "")
			bare := h.psql("bare", 5432, "")
			cured := h.psql("advised", 5432, h.config("libpq"))
			h.idleCheck([]*session{bare}, []*session{cured})
		}},
		{name: "psql-sysctl", items: []string{"linux-sysctl"}, needs: []string{"psql", "postgres", "sysctl"}, run: func(h *appLab) {
			// libpq turns SO_KEEPALIVE on by default: the client namespace's sysctls decide.
			h.startPostgres(5432, "")
			h.idleCheckFor(h.est+2*time.Second, []*session{h.psql("before", 5432, "")}, nil)
			conf := h.write("sysctl.conf", h.config("linux-sysctl")+"\n")
			h.run("client", "sysctl", "-q", "-p", conf)
			h.idleCheck(nil, []*session{h.psql("after", 5432, "")})
		}},
		{name: "psql-user-timeout", items: []string{"libpq"}, needs: []string{"psql", "postgres"}, run: func(h *appLab) {
			h.userTimeout()
		}},
		{name: "postgresql-server", items: []string{"postgresql-server"}, needs: []string{"psql", "postgres"}, run: func(h *appLab) {
			h.startPostgres(5432, "")
			h.startPostgres(5433, h.config("postgresql-server"))
			h.idleCheck([]*session{h.psql("to-bare-server", 5432, "")}, []*session{h.psql("to-advised-server", 5433, "")})
		}},
		{name: "psycopg2", items: []string{"psycopg"}, needs: []string{"postgres", "py:psycopg2"}, run: func(h *appLab) {
			h.startPostgres(5432, "")
			conn := func(extra string) string {
				return "import psycopg2\nconn = psycopg2.connect(host='" + lab.ServerAddr4.String() + "', port=5432, user='postgres', dbname='postgres'" + extra + ")\n" +
					"conn.autocommit = True\ncur = conn.cursor()\n\ndef ask(n):\n    cur.execute('SELECT pg_backend_pid()')\n    return cur.fetchone()[0]\n"
			}
			bare := h.python("bare", conn(""), "error-2 OperationalError('server closed the connection unexpectedly")
			cured := h.python("advised", conn(", "+h.config("psycopg")))
			h.idleCheck([]*session{bare}, []*session{cured})
		}},
		{name: "ssh", items: []string{"ssh-client"}, needs: []string{"ssh", "sshd", "ssh-keygen"}, run: func(h *appLab) {
			keys := h.sshKeys()
			h.startSSHD(2222, keys, "")
			bare := h.ssh("bare", 2222, keys, "/dev/null")
			cured := h.ssh("advised", 2222, keys, h.write("ssh_config", h.config("ssh-client")+"\n"))
			h.idleCheck([]*session{bare}, []*session{cured})
		}},
		{name: "sshd", items: []string{"sshd"}, needs: []string{"ssh", "sshd", "ssh-keygen"}, run: func(h *appLab) {
			keys := h.sshKeys()
			h.startSSHD(2222, keys, "")
			h.startSSHD(2223, keys, h.config("sshd"))
			h.idleCheck([]*session{h.ssh("to-bare-sshd", 2222, keys, "/dev/null")}, []*session{h.ssh("to-advised-sshd", 2223, keys, "/dev/null")})
		}},
		{name: "redis-server", items: []string{"redis-server"}, needs: []string{"redis-server", "redis-cli"}, run: func(h *appLab) {
			h.startRedis(6379, "")
			h.startRedis(6380, h.config("redis-server"))
			h.idleCheck([]*session{h.redisCLI("to-bare-redis", 6379)}, []*session{h.redisCLI("to-advised-redis", 6380)})
		}},
		{name: "redis-py", items: []string{"redis-py"}, needs: []string{"redis-server", "py:redis"}, run: func(h *appLab) {
			h.startRedis(6379, "")
			client := func(kw string) string {
				return "import socket\nimport redis\nr = redis.Redis(host='" + lab.ServerAddr4.String() + "', port=6379" + kw + ")\n\ndef ask(n):\n    return r.client_id()\n"
			}
			reset := []string{"error-2 ConnectionError(\"Error while reading from " + lab.ServerAddr4.String() + ":6379 : (104, 'Connection reset by peer')\")"}
			bare := h.python("bare", client(""), reset...)
			// The trap: socket_keepalive=True without socket_keepalive_options runs on the
			// namespace's 7200 s default and dies like the bare client.
			trap := h.python("keepalive-true-only", client(", socket_keepalive=True"), reset...)
			cured := h.python("advised", client(", "+h.config("redis-py")))
			h.idleCheck([]*session{bare, trap}, []*session{cured})
		}},
		{name: "python-requests", items: []string{"python-requests"}, needs: []string{"nginx", "py:requests"}, run: func(h *appLab) {
			h.startNginx("server", "backend", nginxServers("listen 80;"), 80)
			get := "\ndef ask(n):\n    return session.get('http://" + lab.ServerAddr4.String() + "/', timeout=120).text.strip()\n"
			bare := h.python("bare", "import requests\nsession = requests.Session()\n"+get, requestsReset)
			cured := h.python("advised", h.config("python-requests")+"\n"+get)
			h.idleCheck([]*session{bare}, []*session{cured})
		}},
		{name: "nginx-server", items: []string{"nginx-server"}, needs: []string{"nginx", "py:requests"}, run: func(h *appLab) {
			h.startNginx("server", "backend", nginxServers("listen 8080;")+nginxServers(h.config("nginx-server")), 8080, 80)
			get := func(port string) string {
				return "import requests\nsession = requests.Session()\n\ndef ask(n):\n    return session.get('http://" + lab.ServerAddr4.String() + port + "/', timeout=120).text.strip()\n"
			}
			h.idleCheck([]*session{h.python("to-bare-nginx", get(":8080"), requestsReset)}, []*session{h.python("to-advised-nginx", get(""))})
		}},
		{name: "nginx-upstream", items: []string{"nginx-upstream"}, needs: []string{"nginx", "curl"}, run: func(h *appLab) {
			h.nginxUpstream(h.config("nginx-upstream"))
		}},
	}
}

// requestsReset is what requests 2.28 raises when the box reset its pooled connection.
const requestsReset = "error-2 ConnectionError(ProtocolError('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"

// haveProgram reports whether a program (or "py:module" for Debian's python3) is there.
func haveProgram(name string) bool {
	if mod, ok := strings.CutPrefix(name, "py:"); ok {
		return exec.Command(python3, "-c", "import "+mod).Run() == nil
	}
	if name == "postgres" {
		return postgresBin() != ""
	}
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	_, err := os.Stat("/usr/sbin/" + name)
	return err == nil
}

// postgresBin is the newest PostgreSQL server binary directory Debian installed.
func postgresBin() string {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return filepath.Dir(m[len(m)-1])
}

// pgTemplate makes one PostgreSQL data directory that every case copies: initdb once.
func pgTemplate(t *testing.T) string {
	dir := ownedTempDir(t, "postgres")
	data := filepath.Join(dir, "template")
	cmd := exec.Command("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
		filepath.Join(postgresBin(), "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	hba := "host all all 198.18.0.0/15 trust\nhost all all fd00::/8 trust\n"
	f, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(hba)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ownedTempDir is a t.TempDir that user (a system account) can enter and own.
func ownedTempDir(t *testing.T, user string) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // t.TempDir's directories are 0700, root's
	}
	if out, err := exec.Command("chown", "-R", user+":", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown %s: %v %s", dir, err, out)
	}
	return dir
}

// appLab is one case's lab and what runs in it.
type appLab struct {
	t      *testing.T
	name   string
	est    time.Duration
	orphan string
	dir    string
	pgTmpl string
	ready  func() // the case's setup is done: the box's timeout is the case's again, and another case may start
	advice struct {
		Keepalive struct {
			UserTimeout int64 `json:"user_timeout_ms"`
		} `json:"keepalive"`
		Settings []policy.AdviceItem `json:"settings"`
	}
}

func newAppLab(t *testing.T, est time.Duration, orphan, pgTmpl string) *appLab {
	h := &appLab{t: t, name: uniqueName("ap"), est: est, orphan: orphan, dir: t.TempDir(), pgTmpl: pgTmpl}
	cleanupLab(t, h.name)
	t.Cleanup(h.killLeftovers)
	want(t, 0, "lab", "up", "--name", h.name, "--set", "timeouts.tcp.established="+policy.FormatDuration(est),
		"--set", "orphan="+orphan, "--detach")
	r := want(t, 0, "advise", "--name", h.name, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &h.advice); err != nil {
		t.Fatalf("advise -o json: %v\n%s", err, r.stdout)
	}
	want(t, 0, "policy", "set", "--name", h.name, "timeouts.tcp.established="+policy.FormatDuration(setupTimeout))
	return h
}

// boxTimeout gives the box back the case's established timeout, the one advise
// answered for, after the setup (see setupTimeout).
func (h *appLab) boxTimeout() {
	h.t.Helper()
	want(h.t, 0, "policy", "set", "--name", h.name, "timeouts.tcp.established="+policy.FormatDuration(h.est))
	r := want(h.t, 0, "policy", "show", "--name", h.name, "-o", "json")
	var shown struct {
		Policy struct {
			Timeouts struct {
				TCP struct {
					Established string `json:"established"`
				} `json:"tcp"`
			} `json:"timeouts"`
		} `json:"policy"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil {
		h.t.Fatalf("policy show -o json: %v\n%s", err, r.stdout)
	}
	if d, err := time.ParseDuration(shown.Policy.Timeouts.TCP.Established); err != nil || d != h.est {
		h.t.Fatalf("policy set did not give the box back its %s timeout: it runs %q", h.est, shown.Policy.Timeouts.TCP.Established)
	}
}

// killLeftovers kills whatever still runs in the lab's namespaces after its processes
// were stopped (an sshd session in a session of its own), before the lab is removed.
func (h *appLab) killLeftovers() {
	for _, ns := range []string{lab.ClientNamespace(h.name), lab.ServerNamespace(h.name)} {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// config is the exact text `advise` printed for item id; the item must work here.
func (h *appLab) config(id string) string {
	h.t.Helper()
	for _, it := range h.advice.Settings {
		if it.ID == id {
			if !it.Works || it.Config == "" {
				h.t.Fatalf("advice item %s does not work at %s: %+v", id, h.est, it)
			}
			return it.Config
		}
	}
	h.t.Fatalf("advise printed no item %s", id)
	return ""
}

func (h *appLab) write(name, content string) string {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// run runs a command in a namespace of the lab and fails the test if it fails.
func (h *appLab) run(side string, argv ...string) string {
	h.t.Helper()
	out, err := exec.Command(bin, append([]string{"lab", "exec", "--name", h.name, side, "--"}, argv...)...).CombinedOutput()
	if err != nil {
		h.t.Fatalf("%s: %s: %v\n%s", side, strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// proc is a program in one of the lab's namespaces, in a process group of its own, with
// its stdout and stderr captured together.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   syncBuffer
	done  chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs argv in side's namespace through `idlegate lab exec`; the process group is
// terminated at the end of the test.
func (h *appLab) start(side, name string, stdin bool, argv ...string) *proc {
	h.t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"lab", "exec", "--name", h.name, side, "--"}, argv...)...)
	p.cmd.Dir = h.dir
	p.cmd.Env = append(os.Environ(), "HOME="+h.dir)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A child that outlives the program (an sshd session) must not keep Wait waiting on
	// the output pipe.
	p.cmd.WaitDelay = 2 * time.Second
	if stdin {
		w, err := p.cmd.StdinPipe()
		if err != nil {
			h.t.Fatal(err)
		}
		p.stdin = w
	}
	if err := p.cmd.Start(); err != nil {
		h.t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	h.t.Cleanup(func() {
		if p.exited() {
			return
		}
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) send(line string) {
	if p.stdin != nil {
		io.WriteString(p.stdin, line+"\n")
	}
}

// waitFor waits until the output contains s, or d passes, or the process exits.
func (p *proc) waitFor(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(p.out.String(), s) {
			return true
		}
		if p.exited() {
			return strings.Contains(p.out.String(), s)
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitListen waits until something listens on port in side's namespace.
func (h *appLab) waitListen(side string, port int, p *proc) {
	h.t.Helper()
	ns := lab.ClientNamespace(h.name)
	if side == "server" {
		ns = lab.ServerNamespace(h.name)
	}
	deadline := time.Now().Add(firstAnswer)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("ip", "netns", "exec", ns, "ss", "-Htln", fmt.Sprintf("sport = :%d", port)).Output()
		if len(bytes.TrimSpace(out)) > 0 {
			return
		}
		if p.exited() {
			h.t.Fatalf("%s exited before listening on %d:\n%s", p.name, port, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("%s does not listen on %d:\n%s", p.name, port, p.out.String())
}

// session is a client that answers request n with "answer-n" (and, when it can, the
// identity of its connection after it), and prints fail when the box reset its
// connection.
type session struct {
	p    *proc
	req  func(n int) string
	fail []string // all printed when the box reset the connection
	exit int      // and then the exit code, if it exits (-1: it goes on)
	id   bool     // the answer carries the connection's identity: it must not change
}

// exitCode waits up to d for the process to exit; -1 if it goes on.
func (s *session) exitCode(d time.Duration) int {
	select {
	case <-s.p.done:
		return s.p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// failed waits up to d for every fail string.
func (s *session) failed(d time.Duration) bool {
	for _, f := range s.fail {
		if !s.p.waitFor(f, d) {
			return false
		}
	}
	return len(s.fail) > 0
}

func (s *session) answer(n int) string { return fmt.Sprintf("answer-%d", n) }

// connID is what follows "answer-n" on its line.
func (s *session) connID(n int) string {
	m := regexp.MustCompile(regexp.QuoteMeta(s.answer(n)) + `[| ]+(\S+)`).FindStringSubmatch(s.p.out.String())
	if m == nil {
		return ""
	}
	return m[1]
}

// idleCheck is the check of every case: one request each, 3 T idle, another request.
func (h *appLab) idleCheck(bare, advised []*session) { h.idleCheckFor(3*h.est, bare, advised) }

// idleCheckFor: after idle, every advised session answers on the same connection; every
// bare one fails as the real tool does: its reset message (orphan reset), or nothing at
// all while it hangs (orphan drop).
func (h *appLab) idleCheckFor(idle time.Duration, bare, advised []*session) {
	h.t.Helper()
	all := append(append([]*session{}, bare...), advised...)
	for _, s := range all {
		s.p.send(s.req(1))
	}
	for _, s := range all {
		if !s.p.waitFor(s.answer(1), firstAnswer) {
			h.t.Fatalf("%s: no first answer:\n%s", s.p.name, s.p.out.String())
		}
	}
	h.ready()
	time.Sleep(idle + 500*time.Millisecond)
	for _, s := range all {
		s.p.send(s.req(2))
	}
	var wg sync.WaitGroup
	for _, s := range advised {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch {
			case !s.p.waitFor(s.answer(2), afterIdle):
				h.t.Errorf("%s (with the advice) did not survive %s idle behind a box that forgets after %s:\n%s", s.p.name, idle, h.est, s.p.out.String())
			case s.id && s.connID(1) != s.connID(2):
				h.t.Errorf("%s answered on a new connection (%s, then %s):\n%s", s.p.name, s.connID(1), s.connID(2), s.p.out.String())
			default:
				h.t.Logf("%s survived %s idle: %q", s.p.name, idle, lastLines(s.p.out.String(), 2))
			}
		}()
	}
	for _, s := range bare {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h.orphan == "reset" {
				if !s.failed(afterIdle) || strings.Contains(s.p.out.String(), s.answer(2)) {
					h.t.Errorf("%s (without the advice) should fail with %q after %s idle:\n%s", s.p.name, s.fail, idle, s.p.out.String())
				} else if code := s.exitCode(afterIdle); code != s.exit {
					h.t.Errorf("%s (without the advice) exited %d after the reset, want %d:\n%s", s.p.name, code, s.exit, s.p.out.String())
				} else {
					h.t.Logf("%s failed as expected: %q", s.p.name, lastLines(s.p.out.String(), 3))
				}
				return
			}
			before := s.p.out.String()
			time.Sleep(afterIdle)
			after := s.p.out.String()
			if s.p.exited() || after != before {
				h.t.Errorf("%s (without the advice) should hang silently in the black hole; it printed %q (exited %v)", s.p.name, strings.TrimPrefix(after, before), s.p.exited())
			} else {
				h.t.Logf("%s hangs, as expected: nothing printed %s after its request", s.p.name, afterIdle)
			}
		}()
	}
	wg.Wait()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// PostgreSQL.

// startPostgres runs a PostgreSQL server of its own in the server namespace on port, as
// the postgres user, from a copy of the template, with extra appended to postgresql.conf.
func (h *appLab) startPostgres(port int, extra string) {
	h.t.Helper()
	dir := ownedTempDir(h.t, "postgres")
	data := filepath.Join(dir, "data")
	if out, err := exec.Command("cp", "-a", h.pgTmpl, data).CombinedOutput(); err != nil {
		h.t.Fatalf("copy the PostgreSQL template: %v %s", err, out)
	}
	if extra != "" {
		f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			h.t.Fatal(err)
		}
		fmt.Fprintf(f, "\n# idlegate advise\n%s\n", extra)
		f.Close()
	}
	p := h.start("server", fmt.Sprintf("postgres:%d", port), false, "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
		filepath.Join(postgresBin(), "postgres"), "-D", data, "-p", fmt.Sprint(port),
		"-c", "listen_addresses="+lab.ServerAddr4.String(), "-c", "unix_socket_directories="+dir,
		"-c", "shared_buffers=8MB", "-c", "max_connections=10", "-c", "fsync=off")
	h.waitListen("server", port, p)
}

func (h *appLab) psql(name string, port int, extra string) *session {
	conn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres %s", lab.ServerAddr4, port, extra)
	p := h.start("client", "psql "+name, true, "psql", "-X", "-At", strings.TrimSpace(conn))
	return &session{p: p, id: true, fail: []string{"server closed the connection unexpectedly", "connection to server was lost"}, exit: 2,
		req: func(n int) string { return fmt.Sprintf("SELECT 'answer-%d', pg_backend_pid();", n) }}
}

// userTimeout: the box reboots (ct flush) under two open psql sessions and the next
// query goes into the forgotten flow at once. Through a black hole the one with the
// advice's tcp_user_timeout fails after it, the bare one still hangs; with reset both
// fail at once.
func (h *appLab) userTimeout() {
	h.t.Helper()
	h.startPostgres(5432, "")
	bare := h.psql("bare", 5432, "")
	cured := h.psql("advised", 5432, h.config("libpq"))
	for _, s := range []*session{bare, cured} {
		s.p.send(s.req(1))
		if !s.p.waitFor(s.answer(1), firstAnswer) {
			h.t.Fatalf("%s: no first answer:\n%s", s.p.name, s.p.out.String())
		}
	}
	h.ready()
	want(h.t, 0, "ct", "flush", "--name", h.name)
	sent := time.Now()
	for _, s := range []*session{bare, cured} {
		s.p.send(s.req(2))
	}
	u := time.Duration(h.advice.Keepalive.UserTimeout) * time.Millisecond
	if h.orphan == "reset" {
		for _, s := range []*session{bare, cured} {
			if !s.failed(afterIdle) {
				h.t.Errorf("%s should fail at once on the reset:\n%s", s.p.name, s.p.out.String())
			}
		}
		return
	}
	code := cured.exitCode(u + 3*time.Second)
	took := time.Since(sent)
	out := cured.p.out.String()
	if code != 2 || !strings.Contains(out, "connection to server was lost") || took < u {
		h.t.Errorf("psql with tcp_user_timeout=%d should give up after %s, exit 2; exit %d after %s:\n%s", u.Milliseconds(), u, code, took.Round(100*time.Millisecond), out)
	} else {
		h.t.Logf("psql with tcp_user_timeout=%d gave up after %s: %q", u.Milliseconds(), took.Round(100*time.Millisecond), lastLines(out, 2))
	}
	if bare.p.exited() || strings.Contains(bare.p.out.String(), "answer-2") {
		h.t.Errorf("bare psql should still hang in the black hole after %s:\n%s", took, bare.p.out.String())
	}
}

// Python: a script that defines ask(n) answers each line of its stdin.

func (h *appLab) python(name, setup string, fail ...string) *session {
	script := setup + `
import sys
for line in sys.stdin:
    n = line.strip()
    try:
        print("answer-%s %s" % (n, ask(n)), flush=True)
    except Exception as e:
        print("error-%s %r" % (n, e), flush=True)
`
	path := h.write("client-"+name+".py", script)
	p := h.start("client", "python "+name, true, python3, "-u", path)
	return &session{p: p, id: true, fail: fail, exit: -1, req: func(n int) string { return fmt.Sprint(n) }}
}

// OpenSSH.

type sshKeys struct{ host, client, known string }

func (h *appLab) sshKeys() sshKeys {
	h.t.Helper()
	k := sshKeys{host: filepath.Join(h.dir, "host_ed25519"), client: filepath.Join(h.dir, "client_ed25519"), known: filepath.Join(h.dir, "known_hosts")}
	for _, f := range []string{k.host, k.client} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "idlegate", "-f", f).CombinedOutput(); err != nil {
			h.t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, err := os.ReadFile(k.host + ".pub")
	if err != nil {
		h.t.Fatal(err)
	}
	var known strings.Builder
	for _, port := range []int{2222, 2223} {
		fmt.Fprintf(&known, "[%s]:%d %s", lab.ServerAddr4, port, pub)
	}
	h.write("known_hosts", known.String())
	cpub, _ := os.ReadFile(k.client + ".pub")
	h.write("authorized_keys", string(cpub))
	return k
}

func (h *appLab) startSSHD(port int, k sshKeys, extra string) {
	h.t.Helper()
	os.MkdirAll("/run/sshd", 0o755) // sshd's privilege separation directory
	conf := fmt.Sprintf("Port %d\nListenAddress %s\nHostKey %s\nPidFile %s/sshd-%d.pid\nAuthorizedKeysFile %s/authorized_keys\n"+
		"PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"+
		"UsePAM no\nStrictModes no\nPrintMotd no\nPrintLastLog no\n", port, lab.ServerAddr4, k.host, h.dir, port, h.dir)
	if extra != "" {
		conf += "# idlegate advise\n" + extra + "\n"
	}
	path := h.write(fmt.Sprintf("sshd_config-%d", port), conf)
	p := h.start("server", fmt.Sprintf("sshd:%d", port), false, "/usr/sbin/sshd", "-D", "-e", "-f", path)
	h.waitListen("server", port, p)
}

func (h *appLab) ssh(name string, port int, k sshKeys, config string) *session {
	p := h.start("client", "ssh "+name, true, "ssh", "-F", config, "-T", "-p", fmt.Sprint(port), "-i", k.client,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile="+k.known, "-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout=20", "root@"+lab.ServerAddr4.String())
	return &session{p: p, fail: []string{"client_loop: send disconnect: Broken pipe"}, exit: 255, req: func(n int) string { return fmt.Sprintf("echo answer-%d", n) }}
}

// Redis.

func (h *appLab) startRedis(port int, extra string) {
	h.t.Helper()
	dir := filepath.Join(h.dir, fmt.Sprintf("redis-%d", port))
	os.MkdirAll(dir, 0o755)
	conf := fmt.Sprintf("port %d\nbind %s\nprotected-mode no\ndir %s\nsave \"\"\nappendonly no\n", port, lab.ServerAddr4, dir)
	if extra != "" {
		conf += "# idlegate advise\n" + extra + "\n"
	}
	path := h.write(fmt.Sprintf("redis-%d.conf", port), conf)
	p := h.start("server", fmt.Sprintf("redis-server:%d", port), false, "redis-server", path)
	h.waitListen("server", port, p)
}

func (h *appLab) redisCLI(name string, port int) *session {
	p := h.start("client", "redis-cli "+name, true, "redis-cli", "-h", lab.ServerAddr4.String(), "-p", fmt.Sprint(port))
	return &session{p: p, fail: []string{"Error: Connection reset by peer"}, exit: -1, req: func(n int) string { return fmt.Sprintf("ECHO answer-%d", n) }}
}

// nginx.

// nginxServers is a server {} that answers with the client's port, so that a client can
// tell whether it was answered on the same connection.
func nginxServers(listen string) string {
	return "  server { " + listen + " location / { return 200 \"$remote_port\\n\"; } }\n"
}

func (h *appLab) startNginx(side, name, servers string, ports ...int) *proc {
	h.t.Helper()
	d := filepath.Join(h.dir, name)
	os.MkdirAll(d, 0o755)
	conf := fmt.Sprintf(`daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
%[2]s}
`, d, servers)
	path := h.write(name+".conf", conf)
	p := h.start(side, "nginx "+name, false, "nginx", "-e", "stderr", "-p", d, "-c", path)
	for _, port := range ports {
		h.waitListen(side, port, p)
	}
	return p
}

// curlRate: one curl asks twice on one connection, --rate 1/m apart (curl 7.88's
// slowest rate: 60 s idle, at least 3 T here). Without the advice curl hides the failure:
// it retries on a new connection and exits 0; through a black hole it hangs.
func (h *appLab) curlRate(flags []string) {
	h.t.Helper()
	url := "http://" + lab.ServerAddr4.String() + "/"
	args := []string{"curl", "-sS", "-v", "--rate", "1/m", url, url}
	bare := h.start("client", "curl bare", false, args...)
	cured := h.start("client", "curl advised", false, append(append([]string{"curl"}, flags...), args[1:]...)...)
	for _, p := range []*proc{bare, cured} {
		if !p.waitFor("left intact", firstAnswer) {
			h.t.Fatalf("%s: no first answer:\n%s", p.name, p.out.String())
		}
	}
	h.ready()
	wait := time.Minute + afterIdle + 3*time.Second
	select {
	case <-cured.done:
	case <-time.After(wait):
		h.t.Fatalf("curl with the advice did not finish in %s:\n%s", wait, cured.out.String())
	}
	out := cured.out.String()
	if cured.cmd.ProcessState.ExitCode() != 0 || !strings.Contains(out, "Re-using existing connection") || strings.Contains(out, "Connection died") ||
		len(regexp.MustCompile(`(?m)^\d+$`).FindAllString(out, -1)) != 2 {
		h.t.Errorf("curl with the advice should answer twice on one connection:\n%s", out)
	}
	ports := regexp.MustCompile(`(?m)^\d+$`).FindAllString(out, -1)
	if len(ports) == 2 && ports[0] != ports[1] {
		h.t.Errorf("curl with the advice answered from two connections %v", ports)
	}
	if h.orphan == "reset" {
		select {
		case <-bare.done:
		case <-time.After(afterIdle):
		}
		out := bare.out.String()
		if !bare.exited() || bare.cmd.ProcessState.ExitCode() != 0 || !strings.Contains(out, "Connection died, retrying a fresh connect") {
			h.t.Errorf("bare curl should hide the reset: retry on a new connection and exit 0:\n%s", out)
		} else {
			h.t.Logf("bare curl hid the failure: %q, exit 0", "Connection died, retrying a fresh connect")
		}
		return
	}
	time.Sleep(afterIdle)
	out = bare.out.String()
	if bare.exited() || len(regexp.MustCompile(`(?m)^\d+$`).FindAllString(out, -1)) != 1 {
		h.t.Errorf("bare curl should hang in the black hole after its first answer:\n%s", out)
	} else {
		h.t.Logf("bare curl hangs after its first answer, as expected")
	}
}

// nginxUpstream: nginx in the client namespace proxies to a backend behind the box with
// pooled connections; the advised upstream has the lines advise printed.
func (h *appLab) nginxUpstream(advice string) {
	h.t.Helper()
	back := fmt.Sprintf("  server { listen %s:8080; location / { return 200 \"answer-$arg_n $remote_port\\n\"; } }\n"+
		"  server { listen %s:8081; location / { return 200 \"answer-$arg_n $remote_port\\n\"; } }\n", lab.ServerAddr4, lab.ServerAddr4)
	h.startNginx("server", "backend", back, 8080, 8081)
	front := fmt.Sprintf(`  upstream bare { server %s:8080; keepalive 32; }
  upstream advised {
    server %s:8081;
%s
  }
  server {
    listen 127.0.0.1:8000;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_read_timeout 5s;
    location /bare { proxy_pass http://bare; }
    location /advised { proxy_pass http://advised; }
  }
`, lab.ServerAddr4, lab.ServerAddr4, indent(advice, "    "))
	h.startNginx("client", "front", front, 8000)
	errLog := filepath.Join(h.dir, "front", "error.log")
	ask := func(path string, n int) string {
		return h.run("client", "curl", "-sS", "-m", "20", "-w", " %{http_code}\n", fmt.Sprintf("http://127.0.0.1:8000/%s?n=%d", path, n))
	}
	for _, p := range []string{"bare", "advised"} {
		if out := ask(p, 1); !strings.Contains(out, "answer-1") || !strings.HasSuffix(strings.TrimSpace(out), " 200") {
			h.t.Fatalf("first request to /%s: %q", p, out)
		}
	}
	h.ready()
	time.Sleep(3*h.est + 500*time.Millisecond)
	var wg sync.WaitGroup
	var bareOut, curedOut string
	wg.Add(2)
	go func() { defer wg.Done(); bareOut = ask("bare", 2) }()
	go func() { defer wg.Done(); curedOut = ask("advised", 2) }()
	wg.Wait()
	log, _ := os.ReadFile(errLog)
	var upstreamErr []string
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "[error]") {
			upstreamErr = append(upstreamErr, l)
		}
	}
	errs := strings.Join(upstreamErr, "\n")
	if !strings.HasSuffix(strings.TrimSpace(curedOut), " 200") || strings.Contains(errs, ":8081/") {
		h.t.Errorf("advised upstream after %s idle: %q; errors: %s", 3*h.est, curedOut, errs)
	}
	switch h.orphan {
	case "reset":
		// nginx hides it too: it retries on a new connection and only logs the reset.
		if !strings.HasSuffix(strings.TrimSpace(bareOut), " 200") || !strings.Contains(errs, "recv() failed (104: Connection reset by peer) while reading response header from upstream") ||
			!strings.Contains(errs, ":8080/bare") {
			h.t.Errorf("bare upstream with reset: %q; errors: %s", bareOut, errs)
		} else {
			h.t.Logf("bare upstream: 200 after a hidden retry; nginx logged %q", "recv() failed (104: Connection reset by peer)")
		}
	case "drop":
		if !strings.HasSuffix(strings.TrimSpace(bareOut), " 504") || !strings.Contains(errs, "upstream timed out") {
			h.t.Errorf("bare upstream through a black hole: %q; errors: %s", bareOut, errs)
		} else {
			h.t.Logf("bare upstream: 504 after proxy_read_timeout 5s")
		}
	}
}

func indent(s, pre string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = pre + lines[i]
	}
	return strings.Join(lines, "\n")
}

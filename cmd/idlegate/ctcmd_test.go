package main_test

// The operator's surfaces against live labs, through the built binary:
//
//	  NAME-client netns            gateway (lab up --detach)           NAME-server netns
//	 [ test's dialers, ping ] --> [ engine, control socket ] --> [ test's echo server ]
//	                                        ^
//	                       idlegate ct / lab / pcap / policy ...

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/lab"
)

// echoServer starts an echo server in lab name's server namespace; it ends at cleanup.
func echoServer(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	if err := lab.Do(lab.ServerNamespace(name), func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(lab.ServerAddr4, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// dialFrom connects from lab name's client namespace; it closes at cleanup.
func dialFrom(t *testing.T, name string, to netip.AddrPort) net.Conn {
	t.Helper()
	var c net.Conn
	if err := lab.Do(lab.ClientNamespace(name), func() (err error) {
		c, err = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}).Dial("tcp", to.String())
		return err
	}); err != nil {
		t.Fatalf("dial through the lab: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func echo(t *testing.T, c net.Conn, msg string) error {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return err
}

func localPort(c net.Conn) int { return c.LocalAddr().(*net.TCPAddr).Port }

// connsOf decodes ct list -o json.
func connsOf(t *testing.T, r result) []control.Conn {
	t.Helper()
	var rows []control.Conn
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("ct list -o json does not parse: %v\n%s", err, r.stdout)
	}
	return rows
}

// TestCLIConntrackVerbs: every ct verb and filter on a NAT lab at time scale 2
// (aws-nat-gateway: orphans get a RST): list, get, count, update, expire, delete,
// stats, events, with their filters, outputs and errors; lab list and lab show;
// IDLEGATE_LAB; pcap start with a filter and pcap status.
func TestCLIConntrackVerbs(t *testing.T) {
	needRoot(t)
	t.Parallel()
	name := uniqueName("ct-")
	cleanupLab(t, name)
	want(t, 0, "lab", "up", "--name", name, "--profile", "aws-nat-gateway", "--time-scale", "2", "--detach")

	// A JSON event follower from the start.
	events := startEvents(t, "ct", "events", "--name", name, "-o", "json", "-p", "tcp")

	srv := echoServer(t, name)
	a, b := dialFrom(t, name, srv), dialFrom(t, name, srv)
	for _, c := range []net.Conn{a, b} {
		if err := echo(t, c, "hello"); err != nil {
			t.Fatal(err)
		}
	}
	want(t, 0, "lab", "exec", "--name", name, "client", "--", "ping", "-c1", "-W2", lab.ServerAddr4.String())
	port := strconv.Itoa(int(srv.Port()))

	var idA, idB uint64
	t.Run("list", func(t *testing.T) {
		rows := connsOf(t, want(t, 0, "ct", "list", "--name", name, "-o", "json"))
		var icmp int
		for _, r := range rows {
			switch {
			case r.Proto == "tcp" && r.Orig.SrcPort == uint16(localPort(a)):
				idA = r.ID
			case r.Proto == "tcp" && r.Orig.SrcPort == uint16(localPort(b)):
				idB = r.ID
			case r.Proto == "icmp":
				icmp++
				// Linux never assures an ICMP entry (nf_conntrack_icmp_packet only
				// refreshes): answered, it is REPLIED.
				if r.Orig.ICMP == nil || r.Orig.ICMP.Type != 8 || r.Reply.ICMP == nil || r.Reply.ICMP.Type != 0 || r.Status() != "REPLIED" {
					t.Errorf("the ping's entry %+v: want type 8 out, type 0 back, REPLIED (answered, never assured)", r)
				}
			}
			if r.ID == 0 || r.NAT == "" {
				t.Errorf("row %+v: want an id and the NAT mapping", r)
			}
		}
		if idA == 0 || idB == 0 || icmp != 1 {
			t.Fatalf("ct list has ids %d, %d and %d icmp rows: %+v", idA, idB, icmp, rows)
		}
		text := want(t, 0, "ct", "list", "--name", name).stdout
		for _, w := range []string{"ID", "STATUS", "LEFT (REAL)", "ESTABLISHED", "ASSURED", "type=8 code=0 id=", "3 connections"} {
			if !strings.Contains(text, w) {
				t.Errorf("ct list does not show %q:\n%s", w, text)
			}
		}
		// 350 s real at time scale 2 runs as 700 s: the time left shows both.
		if !strings.Contains(text, "s (350s)") && !strings.Contains(text, "s (349s)") {
			t.Errorf("ct list does not show the real time left (350s, run as 700s at scale 2):\n%s", text)
		}
		wide := want(t, 0, "ct", "list", "--name", name, "-o", "wide").stdout
		for _, w := range []string{"NAT", "PACKETS", "BYTES", "REFRESHED", " -> 198.19.0.1:"} {
			if !strings.Contains(wide, w) {
				t.Errorf("ct list -o wide does not show %q:\n%s", w, wide)
			}
		}
		js := want(t, 0, "ct", "list", "--name", name, "-o", "json").stdout
		if strings.Contains(js, `\u003e`) || !strings.Contains(js, " -> ") {
			t.Errorf("ct list -o json escapes -> or has no NAT:\n%s", js)
		}
		var y []map[string]any
		if err := yaml.Unmarshal([]byte(want(t, 0, "ct", "list", "--name", name, "-o", "yaml").stdout), &y); err != nil || len(y) != 3 || y[0]["id"] == nil {
			t.Errorf("ct list -o yaml: %v, %v", y, err)
		}
		rows = connsOf(t, want(t, 0, "ct", "list", "--name", name, "-o", "json", "-p", "tcp", "--dport", port, "--state", "ESTABLISHED", "--status", "ASSURED", "--nat", "-s", "198.18.0.0/24", "-d", lab.ServerAddr4.String()))
		if len(rows) != 2 {
			t.Errorf("ct list with every filter that holds: %d rows, want the 2 TCP connections", len(rows))
		}
		if rows := connsOf(t, want(t, 0, "ct", "list", "--name", name, "-o", "json", "-p", "udp")); len(rows) != 0 {
			t.Errorf("ct list -p udp: %d rows, want none", len(rows))
		}
		if rows := connsOf(t, want(t, 0, "ct", "list", "--name", name, "-o", "json", "--nat=false")); len(rows) != 0 {
			t.Errorf("ct list --nat=false on a NAT lab: %d rows, want none", len(rows))
		}
	})

	t.Run("watch", func(t *testing.T) {
		w := startEvents(t, "ct", "list", "--name", name, "--watch", "--interval", "200ms", "-p", "icmp")
		time.Sleep(700 * time.Millisecond)
		w.cmd.Process.Signal(os.Interrupt)
		var heads, rows int
		for _, l := range w.lines(t, 1000, 5*time.Second) {
			switch {
			case strings.Contains(l, "lab "+name+"  every 200ms  proto=icmp"):
				heads++
			case strings.Contains(l, "type=8 code=0"):
				rows++
			}
		}
		if heads < 3 || rows != heads {
			t.Errorf("ct list --watch for 0.9s at 200ms: %d headers, %d icmp rows; want at least 3 of each, one per listing", heads, rows)
		}
		if err := <-w.done; err != nil {
			t.Errorf("ct list --watch after SIGINT: %v, want exit 0", err)
		}
	})

	t.Run("count", func(t *testing.T) {
		if r := want(t, 0, "ct", "count", "--name", name); strings.TrimSpace(r.stdout) != "3" {
			t.Errorf("ct count = %q, want 3", r.stdout)
		}
		if r := want(t, 0, "ct", "count", "--name", name, "-p", "icmp"); strings.TrimSpace(r.stdout) != "1" {
			t.Errorf("ct count -p icmp = %q, want 1", r.stdout)
		}
		// IDLEGATE_LAB names the lab when --name does not.
		cmd := exec.Command(bin, "ct", "count", "--sport", strconv.Itoa(localPort(a)))
		cmd.Env = append(os.Environ(), "IDLEGATE_LAB="+name)
		if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Errorf("IDLEGATE_LAB=%s ct count --sport: %q, %v; want 1", name, out, err)
		}
	})

	t.Run("get", func(t *testing.T) {
		r := want(t, 0, "ct", "get", "--name", name, "--id", strconv.FormatUint(idA, 10))
		if !strings.Contains(r.stdout, "ESTABLISHED") || !strings.Contains(r.stdout, strconv.Itoa(localPort(a))) {
			t.Errorf("ct get --id: %s", r.stdout)
		}
		var c control.Conn
		if err := json.Unmarshal([]byte(want(t, 0, "ct", "get", "--name", name, "--sport", strconv.Itoa(localPort(b)), "-o", "json").stdout), &c); err != nil || c.ID != idB {
			t.Errorf("ct get --sport -o json: %+v, %v; want id %d", c, err, idB)
		}
		oneLine(t, want(t, 2, "ct", "get", "--name", name, "-p", "tcp"), "2 connections match proto=tcp", "narrow the filter")
		oneLine(t, want(t, 1, "ct", "get", "--name", name, "--dport", "1"), "no connection matches dport=1")
		oneLine(t, want(t, 2, "ct", "get", "--name", name), "ct get needs a filter")
	})

	t.Run("bad filters", func(t *testing.T) {
		oneLine(t, want(t, 2, "ct", "list", "--name", name, "--dport", "http"), `"http" is not a port number from 1 to 65535`)
		oneLine(t, want(t, 2, "ct", "list", "--name", name, "-p", "udp", "--state", "ESTABLISHED"), "a state picks TCP connections")
		oneLine(t, want(t, 2, "ct", "list", "--name", name, "--status", "SEEN"), `"SEEN" is not a status`)
		oneLine(t, want(t, 2, "ct", "list", "--name", name, "-o", "xml"), `--output "xml" is not text, wide, json or yaml`)
		oneLine(t, want(t, 2, "ct", "delete", "--name", name), "ct delete needs a filter", "ct flush")
		oneLine(t, want(t, 2, "ct", "update", "--name", name, "--id", "1"), "ct update needs --timeout")
		oneLine(t, want(t, 2, "ct", "update", "--name", name, "--id", "1", "--timeout", "soon"), `--timeout "soon"`)
	})

	t.Run("update", func(t *testing.T) {
		// 2 s real at scale 2: 4 s on the lab's clock.
		r := want(t, 0, "ct", "update", "--name", name, "--id", strconv.FormatUint(idA, 10), "--timeout", "2")
		if !strings.Contains(r.stdout, "updated 1 connection") || !strings.Contains(r.stdout, "4s (real 2s) left") {
			t.Errorf("ct update: %q", r.stdout)
		}
		var c control.Conn
		json.Unmarshal([]byte(want(t, 0, "ct", "get", "--name", name, "--id", strconv.FormatUint(idA, 10), "-o", "json").stdout), &c)
		if c.TimeLeft <= 0 || c.TimeLeft > 4 {
			t.Errorf("after ct update --timeout 2 at scale 2: %.3fs left, want at most 4s", c.TimeLeft)
		}
		// Give it an hour again, so that the next steps find it.
		want(t, 0, "ct", "update", "--name", name, "--id", strconv.FormatUint(idA, 10), "--timeout", "1h")
	})

	t.Run("pcap filter and status", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "b.pcapng")
		r := want(t, 0, "pcap", "start", "--name", name, path, "-p", "tcp", "--sport", strconv.Itoa(localPort(b)))
		if !strings.Contains(r.stdout, "only proto=tcp sport=") {
			t.Errorf("pcap start with a filter: %q", r.stdout)
		}
		if err := echo(t, b, "recorded"); err != nil {
			t.Fatal(err)
		}
		if err := echo(t, a, "not recorded"); err != nil {
			t.Fatal(err)
		}
		st := want(t, 0, "pcap", "status", "--name", name).stdout
		if !strings.Contains(st, "recording to "+path) || !strings.Contains(st, "only proto=tcp sport=") {
			t.Errorf("pcap status: %q", st)
		}
		var info control.PcapInfo
		json.Unmarshal([]byte(want(t, 0, "pcap", "status", "--name", name, "-o", "json").stdout), &info)
		if !info.Recording || info.Packets < 2 || info.Packets > 6 {
			t.Errorf("pcap status -o json: %+v; want the few packets of connection b only", info)
		}
		want(t, 0, "pcap", "stop", "--name", name)
		oneLine(t, want(t, 2, "pcap", "start", "--name", name, path+"2", "--state", "ESTABLISHED"), "a capture filter takes a protocol, addresses and ports")
	})

	t.Run("expire", func(t *testing.T) {
		r := want(t, 0, "ct", "expire", "--name", name, "--id", strconv.FormatUint(idB, 10))
		if !strings.Contains(r.stdout, "expired 1 connection") {
			t.Errorf("ct expire: %q", r.stdout)
		}
		if n := strings.TrimSpace(want(t, 0, "ct", "count", "--name", name, "--id", strconv.FormatUint(idB, 10)).stdout); n != "0" {
			t.Errorf("after ct expire, ct count --id = %s, want 0", n)
		}
	})

	t.Run("delete", func(t *testing.T) {
		var out map[string]any
		json.Unmarshal([]byte(want(t, 0, "ct", "delete", "--name", name, "--id", strconv.FormatUint(idA, 10), "-o", "json").stdout), &out)
		if out["deleted"] != float64(1) {
			t.Errorf("ct delete -o json: %v", out)
		}
		// The next packet of the deleted connection is an orphan: aws-nat-gateway resets it.
		err := echo(t, a, "anyone?")
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("after ct delete the next write got %v, want ECONNRESET", err)
		}
	})

	t.Run("stats", func(t *testing.T) {
		js := want(t, 0, "ct", "stats", "--name", name, "-o", "json").stdout
		var st control.Stats
		if err := json.Unmarshal([]byte(js), &st); err != nil {
			t.Fatal(err)
		}
		if st.Table.Destroyed["deleted"] != 1 || st.Table.Destroyed["expired"] != 1 || st.Capacity == 0 || st.Bytes["inside"]["forward"] == 0 {
			t.Errorf("ct stats -o json: destroyed %v, capacity %d, bytes %v", st.Table.Destroyed, st.Capacity, st.Bytes)
		}
		if strings.Contains(js, "Destroyed") || strings.Contains(js, "[") && strings.Contains(js, `"destroyed": [`) {
			t.Errorf("ct stats -o json has counters indexed by position:\n%s", js)
		}
		text := want(t, 0, "ct", "stats", "--name", name).stdout
		for _, w := range []string{"destroyed deleted=1 expired=1", "keepalive_probes=", "bytes:    inside "} {
			if !strings.Contains(text, w) {
				t.Errorf("ct stats does not show %q:\n%s", w, text)
			}
		}
	})

	t.Run("events", func(t *testing.T) {
		lines := events.lines(t, 4, 5*time.Second)
		types := map[string]int{}
		for _, l := range lines {
			var ev control.Event
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("event %q: %v", l, err)
			}
			if ev.Proto != "tcp" || ev.Orig == nil || ev.ID == 0 || ev.Time.IsZero() {
				t.Errorf("event %s: want a tcp event with its tuple, id and time", l)
			}
			types[ev.Type]++
		}
		if types["NEW"] != 2 || types["VERDICT"] != 0 {
			t.Errorf("ct events -p tcp: %v, want the 2 NEW and no VERDICT", types)
		}
	})

	t.Run("lab list and show", func(t *testing.T) {
		list := want(t, 0, "lab", "list").stdout
		var line string
		for _, l := range strings.Split(list, "\n") {
			if strings.HasPrefix(l, name+" ") {
				line = l
			}
		}
		if f := strings.Fields(line); len(f) != 7 || f[1] != "lab" || f[3] != "running" || f[4] != "aws-nat-gateway" || f[5] != "2" {
			t.Errorf("lab list line %q: want name, kind lab, pid, running, aws-nat-gateway, 2, uptime\n%s", line, list)
		}
		show := want(t, 0, "lab", "show", "--name", name).stdout
		for _, w := range []string{"running, up ", "profile aws-nat-gateway, time scale 2", "established: 350s"} {
			if !strings.Contains(show, w) {
				t.Errorf("lab show does not say %q:\n%s", w, show)
			}
		}
		pol := want(t, 0, "policy", "show", "--name", name).stdout
		if !strings.HasPrefix(pol, "# lab "+name+": profile aws-nat-gateway, time scale 2: timeouts below are real") {
			t.Errorf("policy show does not state the profile and scale:\n%s", pol)
		}
		r := want(t, 0, "policy", "set", "--name", name, "timeouts.udp=10s")
		if !strings.Contains(r.stdout, "timeouts.udp=20s (real 10s)") {
			t.Errorf("policy set on a scaled lab: %q, want both values", r.stdout)
		}
	})
}

// follower is a running `idlegate ct events`, its stdout read line by line.
type follower struct {
	cmd    *exec.Cmd
	out    chan string
	stderr *bytes.Buffer
	done   chan error
}

func startEvents(t *testing.T, args ...string) *follower {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	f := &follower{cmd: cmd, out: make(chan string, 1024), stderr: new(bytes.Buffer), done: make(chan error, 1)}
	cmd.Stderr = f.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f.out <- sc.Text()
		}
		close(f.out)
		f.done <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	time.Sleep(300 * time.Millisecond) // subscribed before what follows
	return f
}

// lines waits for at least n lines (or the end of the stream) within d.
func (f *follower) lines(t *testing.T, n int, d time.Duration) []string {
	t.Helper()
	var got []string
	timeout := time.After(d)
	for len(got) < n {
		select {
		case l, ok := <-f.out:
			if !ok {
				return got
			}
			got = append(got, l)
		case <-timeout:
			return got
		}
	}
	return got
}

// TestCLILabEnds: what ends with a lab and what outlives its gateway. ct events says
// when the gateway goes away (exit 4) and exits on SIGINT even while its stdout is
// blocked; a non-root ct list is told the control socket is root's; lab down ends
// what lab exec started, daemons included; lab show and lab list of a killed
// gateway say it is dead (exit 4).
func TestCLILabEnds(t *testing.T) {
	needRoot(t)
	t.Parallel()
	name := uniqueName("end-")
	cleanupLab(t, name)
	want(t, 0, "lab", "up", "--name", name, "--detach")

	t.Run("not root", func(t *testing.T) {
		exe := nobodyCopy(t)
		for _, args := range [][]string{
			{"ct", "list", "--name", name}, {"policy", "show", "--name", name}, {"lab", "show", "--name", name}, {"lab", "list"},
		} {
			var stderr bytes.Buffer
			var err error
			for try := 0; ; try++ {
				cmd := exec.Command(exe, args...)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
				stderr.Reset()
				cmd.Stderr = &stderr
				err = cmd.Run()
				// A child forked meanwhile by a parallel test can hold the new copy
				// open for writing until it execs: ETXTBSY, for a moment.
				if !errors.Is(err, syscall.ETXTBSY) || try == 20 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Errorf("%s as nobody: %v, %q; want exit 3", strings.Join(args, " "), err, stderr.String())
				continue
			}
			oneLine(t, result{stderr: stderr.String()}, "only root may", "/run/idlegate/", "run this as root")
			if strings.Contains(stderr.String(), "namespaces") {
				t.Errorf("%s as nobody: %q blames namespaces; the reason is the root-only run directory", strings.Join(args, " "), stderr.String())
			}
		}
	})

	t.Run("events: SIGINT with stdout blocked", func(t *testing.T) {
		srv := echoServer(t, name)
		c := dialFrom(t, name, srv)
		cmd := exec.Command(bin, "ct", "events", "--name", name, "--verdicts")
		r, w, err := os.Pipe() // never read: the pipe fills and the writes block
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		cmd.Stdout = w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		time.Sleep(300 * time.Millisecond)
		// About a hundred VERDICT lines per 100 KiB echoed: the 64 KiB pipe fills.
		buf := bytes.Repeat([]byte("x"), 1000)
		for i := 0; i < 2000; i++ {
			if _, err := c.Write(buf); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
		}
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ct events after SIGINT: %v, want exit 0", err)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Fatal("ct events ignored SIGINT while its stdout was blocked")
		}
	})

	t.Run("lab exec processes end with lab down", func(t *testing.T) {
		// A program and a daemon it starts (setsid, its own session), both left running.
		cmd := exec.Command(bin, "lab", "exec", "--name", name, "client", "--", "sh", "-c", "setsid sleep 3011 & exec sleep 3012")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait()
		var pids []int
		for deadline := time.Now().Add(5 * time.Second); len(pids) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			pids = processesRunning("sleep", "3011", "3012")
		}
		if len(pids) != 2 {
			t.Fatalf("lab exec did not start both sleeps: %v", pids)
		}
		events := startEvents(t, "ct", "events", "--name", name)
		r := want(t, 0, "lab", "down", "--name", name)
		if !strings.Contains(r.stdout, "ended 2 processes that lab exec started (found by cgroup)") && !strings.Contains(r.stdout, "(found by process)") {
			t.Errorf("lab down: %q, want it to say it ended the lab exec processes and how", r.stdout)
		}
		for _, pid := range pids {
			if !waitDead(pid, 5*time.Second) {
				t.Errorf("pid %d, started by lab exec, survived lab down", pid)
			}
		}
		// The follower is told the gateway went away, and exits 4.
		select {
		case err := <-events.done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(events.stderr.String(), "gateway stopped") {
				t.Errorf("ct events after lab down: %v, %q; want exit 4 saying the gateway stopped", err, events.stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("ct events still runs after lab down")
		}
	})

	t.Run("killed gateway", func(t *testing.T) {
		want(t, 0, "lab", "up", "--name", name, "--detach")
		pid := gatewayPID(t, name)
		syscall.Kill(pid, syscall.SIGKILL)
		if !waitDead(pid, 5*time.Second) {
			t.Fatal("the gateway survived SIGKILL")
		}
		r := want(t, 4, "lab", "show", "--name", name)
		if !strings.Contains(r.stdout, fmt.Sprintf("gateway pid %d dead", pid)) {
			t.Errorf("lab show of a killed gateway: %q", r.stdout)
		}
		oneLine(t, r, "not running", "idlegate lab down --name "+name)
		var st struct {
			Alive  bool   `json:"alive"`
			Status string `json:"status"`
		}
		json.Unmarshal([]byte(want(t, 4, "lab", "show", "--name", name, "-o", "json").stdout), &st)
		if st.Alive || st.Status != "dead" {
			t.Errorf("lab show -o json of a killed gateway: %+v", st)
		}
		if l := want(t, 0, "lab", "list").stdout; !strings.Contains(l, name+" ") || !strings.Contains(l, " dead ") {
			t.Errorf("lab list does not show %s dead:\n%s", name, l)
		}
		oneLine(t, want(t, 4, "ct", "list", "--name", name), "does not answer", "lab down --name "+name)
		want(t, 0, "lab", "down", "--name", name)
	})

	t.Run("foreground lab up prints events unless --quiet", func(t *testing.T) {
		for _, quiet := range []bool{false, true} {
			args := []string{"lab", "up", "--name", name}
			if quiet {
				args = append(args, "--quiet")
			}
			up := startEvents(t, args...)
			for l := range up.out {
				if strings.HasPrefix(l, "gateway running") {
					break
				}
			}
			srv := echoServer(t, name)
			c := dialFrom(t, name, srv)
			if err := echo(t, c, "hi"); err != nil {
				t.Fatal(err)
			}
			c.Close()
			lines := up.lines(t, 1, 2*time.Second)
			up.cmd.Process.Signal(os.Interrupt)
			lines = append(lines, up.lines(t, 100, 5*time.Second)...)
			printed := strings.Join(lines, "\n")
			if got := strings.Contains(printed, "[NEW]") && strings.Contains(printed, fmt.Sprintf(":%d", srv.Port())); got == quiet {
				t.Errorf("lab up (quiet %v) printed events %v:\n%s", quiet, got, printed)
			}
			select {
			case err := <-up.done:
				if err != nil {
					t.Errorf("lab up after Ctrl-C: %v, %s", err, up.stderr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("lab up did not stop on SIGINT")
			}
		}
	})
}

// nobodyCopy is a copy of the binary that user nobody can run (the test's own
// temporary directory is not theirs).
func nobodyCopy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "idlegate-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "idlegate")
	if err := copyFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// processesRunning lists the pids whose command line is prog and one of args.
func processesRunning(prog string, args ...string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(argv) == 2 && filepath.Base(argv[0]) == prog {
			for _, a := range args {
				if argv[1] == a {
					out = append(out, pid)
				}
			}
		}
	}
	return out
}

// TestCLIUnknownCommands: an unknown command or subcommand is bad usage (exit 2),
// never help with 0; a group without a subcommand prints its help.
func TestCLIUnknownCommands(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"bogus"}, {"ct", "lsit"}, {"lab", "start"}, {"pcap", "begin"}, {"policy", "get"}, {"scenario", "play"}, {"wedge", "dwon"}} {
		r := want(t, 2, args...)
		oneLine(t, r, fmt.Sprintf("unknown command %q", args[len(args)-1]))
		if r.stdout != "" {
			t.Errorf("idlegate %s printed %q on stdout", strings.Join(args, " "), r.stdout)
		}
	}
	oneLine(t, want(t, 2, "ct", "lsit"), `did you mean "list"?`)
	oneLine(t, want(t, 2, "wedge", "dwon"), `did you mean "down"?`)
	if r := want(t, 0, "ct"); !strings.Contains(r.stdout, "Available Commands") {
		t.Errorf("idlegate ct: %q, want its help", r.stdout)
	}
}

// TestCLICapacityBeyondTheTable: a capacity the table cannot hold is a
// configuration error naming the key and its line, exit 2, before anything starts.
func TestCLICapacityBeyondTheTable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(path, []byte("orphan: reset\ncapacity: 1000000000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	name := uniqueName("cap-")
	cleanupLab(t, name)
	oneLine(t, want(t, 2, "lab", "up", "--name", name, "--config", path), "line 2", "capacity", "at most 2147483647")
	oneLine(t, want(t, 2, "lab", "up", "--name", name, "--set", "capacity=1000000000000"), "--set capacity=1000000000000", "at most 2147483647")
}

// TestCLIVersion: --version and version print the same stamp, -o json its parts.
func TestCLIVersion(t *testing.T) {
	t.Parallel()
	a := want(t, 0, "--version").stdout
	b := want(t, 0, "version").stdout
	if a != b || !strings.HasPrefix(a, "idlegate ") || !strings.Contains(a, "(go1.") {
		t.Errorf("--version %q, version %q: want the same idlegate VERSION (goX...) line", a, b)
	}
	var v control.Version
	if err := json.Unmarshal([]byte(want(t, 0, "version", "-o", "json").stdout), &v); err != nil || v.Version == "" || v.Go == "" {
		t.Errorf("version -o json: %+v, %v", v, err)
	}
}

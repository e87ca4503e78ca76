package scenarios

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/scenarios/agent"
)

var signals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL, "INT": syscall.SIGINT,
	"HUP": syscall.SIGHUP, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
}

// proc is a running (or finished) process of the story. The mutex guards
// everything below it; done is closed once the process has been reaped.
type proc struct {
	spec  *Process
	argv  []string
	cmd   *exec.Cmd
	stdin *os.File // the write end of the stdin pipe, nil without stdin: true
	done  chan struct{}
	tl    *timeline
	col   int

	readers sync.WaitGroup
	outR    []*os.File // read ends of stdout and stderr, closed at cleanup

	mu       sync.Mutex
	exitCode int // after done: the exit status, -1 if a signal ended it
	signaled string
	killedBy string // the signal a step or the cleanup sent last
	output   bytes.Buffer
	events   []agent.Event // the agent's NDJSON lines (docs/agents.md)
}

// start runs p in its namespace with stdout and stderr read line by line into the
// timeline (agents' NDJSON parsed). The process leads a process group of its own
// and gets SIGKILL if this process dies.
func (r *runner) startProc(p *proc) error {
	ns := r.lab.Client.Namespace
	if p.spec.Side == "server" {
		ns = r.lab.Server.Namespace
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "HOME="+r.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var closeAfter []*os.File
	defer func() {
		for _, f := range closeAfter {
			f.Close()
		}
	}()
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	closeAfter = append(closeAfter, outW, errW)
	cmd.Stdout, cmd.Stderr = outW, errW
	if p.spec.Stdin {
		inR, inW, err := os.Pipe()
		if err != nil {
			outR.Close()
			errR.Close()
			return err
		}
		closeAfter = append(closeAfter, inR)
		cmd.Stdin = inR
		p.stdin = inW
	}
	if err := lab.StartIn(ns, cmd); err != nil {
		outR.Close()
		errR.Close()
		if p.stdin != nil {
			p.stdin.Close()
		}
		return fmt.Errorf("start %s: %w", p.spec.Name, err)
	}
	p.cmd = cmd
	p.outR = []*os.File{outR, errR}
	p.readers.Add(2)
	go p.read(outR, false)
	go p.read(errR, true)
	go func() {
		err := cmd.Wait()
		at := time.Now()
		p.mu.Lock()
		p.exitCode = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.signaled = ws.Signal().String()
		}
		killedBy := p.killedBy
		p.mu.Unlock()
		switch {
		case p.signaled != "" && killedBy != "":
			p.tl.add(at, p.col, fmt.Sprintf("%s ended by SIG%s", p.spec.Name, killedBy))
		case p.signaled != "":
			p.tl.add(at, p.col, fmt.Sprintf("%s died: %s", p.spec.Name, p.signaled))
		case err != nil || p.spec.Agent == "":
			p.tl.add(at, p.col, fmt.Sprintf("%s exited %d", p.spec.Name, p.exitCode))
		}
		close(p.done)
	}()
	return nil
}

// read consumes one output stream until every holder of its write end closed it.
func (p *proc) read(f *os.File, stderr bool) {
	defer p.readers.Done()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		at := time.Now()
		p.mu.Lock()
		p.output.WriteString(line)
		p.output.WriteByte('\n')
		p.mu.Unlock()
		if p.spec.Agent != "" && !stderr {
			var ev agent.Event
			if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &ev) == nil && ev.Event != "" {
				if ev.T.IsZero() {
					ev.T = at
				}
				p.mu.Lock()
				p.events = append(p.events, ev)
				p.mu.Unlock()
				p.tl.add(ev.T, p.col, agentLine(p.spec.Name, ev))
				continue
			}
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		mark := ":"
		if stderr {
			mark = "!"
		}
		p.tl.add(at, p.col, p.spec.Name+mark+" "+line)
	}
}

// agentLine renders an agent event for the timeline.
func agentLine(name string, ev agent.Event) string {
	who := name
	if ev.Conn != "" {
		who += "/" + ev.Conn
	}
	var b strings.Builder
	b.WriteString(who)
	switch ev.Event {
	case agent.EvResult:
		b.WriteString(" => " + strings.ToUpper(ev.Outcome))
		if ev.Err != "" {
			b.WriteString(" (" + ev.Err + ")")
		}
		if ev.N != nil {
			b.WriteString(" n=" + strconv.FormatInt(*ev.N, 10))
		}
		return b.String()
	case agent.EvError:
		b.WriteString(" ERROR")
		if ev.Op != "" {
			b.WriteString(" " + ev.Op)
		}
		if ev.Err != "" {
			b.WriteString(": " + ev.Err)
		}
		return b.String()
	case agent.EvHeartbeatMiss:
		b.WriteString(" heartbeat MISSED")
	default:
		b.WriteString(" " + ev.Event)
	}
	if ev.N != nil && (ev.Event == agent.EvSend || ev.Event == agent.EvRecv) {
		fmt.Fprintf(&b, " %dB", *ev.N)
	} else if ev.N != nil {
		fmt.Fprintf(&b, " n=%d", *ev.N)
	}
	if ev.Reused != nil {
		if *ev.Reused {
			b.WriteString(" (pooled conn)")
		} else {
			b.WriteString(" (new conn)")
		}
	}
	if ev.Detail != "" && ev.Event != agent.EvSend && ev.Event != agent.EvRecv {
		b.WriteString(" " + ev.Detail)
	}
	return b.String()
}

func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the process's group.
func (p *proc) signal(sig syscall.Signal, name string) {
	if !p.running() {
		return
	}
	p.mu.Lock()
	p.killedBy = name
	p.mu.Unlock()
	syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop ends the process: SIGTERM to its group, SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	p.signal(syscall.SIGTERM, "TERM")
	select {
	case <-p.done:
	case <-time.After(grace):
		p.signal(syscall.SIGKILL, "KILL")
		<-p.done
	}
}

// closeOutput unblocks readers whose stream a leftover child still holds open, and
// waits for them.
func (p *proc) closeOutput(wait time.Duration) {
	if p.stdin != nil {
		p.stdin.Close()
	}
	if !agent.WaitTimeout(&p.readers, wait) {
		for _, f := range p.outR {
			f.Close()
		}
		p.readers.Wait()
	}
}

// reap SIGKILLs every process left in the named network namespace (children that
// left their process group, such as an sshd session). Only processes of namespaces
// this run created are touched.
func reap(namespace string) error {
	var target syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", namespace), &target); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	self := os.Getpid()
	for attempt := 0; attempt < 20; attempt++ {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return err
		}
		var pids []int
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			var st syscall.Stat_t
			if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
				continue
			}
			if st.Dev == target.Dev && st.Ino == target.Ino {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("processes are still left in namespace %s", namespace)
}

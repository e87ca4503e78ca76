package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/lab"
)

// server is a long-running process in a namespace (iperf3 -s, rr server).
type server struct {
	name string
	cmd  *exec.Cmd
	out  bytes.Buffer
}

// startServer starts argv in namespace and waits until it listens on TCP port.
// The process gets SIGKILL if this process dies.
func startServer(namespace string, port int, argv ...string) (*server, error) {
	s := &server{name: argv[0] + " in " + namespace}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := lab.StartIn(namespace, s.cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	exited := make(chan struct{})
	go func() {
		// Only notices an early exit; stop reaps the process.
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, s.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		close(exited)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := listening(namespace, port)
		if err != nil {
			s.stop()
			return nil, err
		}
		if ok {
			return s, nil
		}
		select {
		case <-exited:
			s.stop()
			return nil, fmt.Errorf("%s exited at start: %s", s.name, strings.TrimSpace(s.out.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s does not listen on port %d after 5 s", s.name, port)
		}
	}
}

// stop kills the server and reaps it.
func (s *server) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// listening reports whether a TCP socket listens on port in namespace.
func listening(namespace string, port int) (bool, error) {
	found := false
	err := lab.Do(namespace, func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				// sl local_address rem_address st ...; local_address is HEXADDR:HEXPORT
				fs := strings.Fields(sc.Text())
				if len(fs) < 4 || fs[3] != "0A" { // TCP_LISTEN
					continue
				}
				i := strings.LastIndexByte(fs[1], ':')
				if p, err := strconv.ParseUint(fs[1][i+1:], 16, 16); err == nil && int(p) == port {
					found = true
				}
			}
		}
		return nil
	})
	return found, err
}

// runIn runs argv in namespace, bounded by timeout, and returns its stdout. A
// failure's error carries its stderr.
func runIn(ctx context.Context, namespace string, timeout time.Duration, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	if err := lab.StartIn(namespace, cmd); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", argv[0], namespace, err)
	}
	err := cmd.Wait()
	if ctx.Err() == context.DeadlineExceeded {
		return stdout.Bytes(), fmt.Errorf("%s in %s: no result after %s", argv[0], namespace, timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		if len(msg) > 400 {
			msg = msg[:400] + "..."
		}
		return stdout.Bytes(), fmt.Errorf("%s in %s: %v: %s", argv[0], namespace, err, msg)
	}
	return stdout.Bytes(), nil
}

package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The processes `idlegate lab exec` starts belong to their lab: Cleanup (lab down)
// and Lab.Down (the gateway's own teardown) end them before the namespaces go, so
// that nothing the user started keeps running in a namespace that is deleted.
//
// They are tracked one of two ways, the first that works:
//
//  1. cgroup: the unified (v2) cgroup hierarchy's idlegate/NAME group, which the
//     exec'd process joins before it execs. Every process it forks stays in the
//     group, daemons that double-fork or call setsid included, and ending the
//     group ends them all (cgroup.kill, else SIGKILL to each member).
//  2. process: the pid and start time of each exec'd process, in the run
//     directory's execs file. Ending the lab signals each that still runs and its
//     descendants; a process that left its parent (a daemon) escapes.
//
// Either way a process gets SIGTERM first and SIGKILL after execGrace.

// execsFile lists the processes lab exec started without a cgroup: "PID START".
const execsFile = "execs"

// execGrace is how long ended processes get between SIGTERM and SIGKILL.
const execGrace = time.Second

// Ways JoinLab tracks a process.
const (
	TrackCgroup  = "cgroup"
	TrackProcess = "process"
)

// cgroupRoot is the mount point of the unified cgroup hierarchy, or "" if the
// machine has none.
func cgroupRoot() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if fields := strings.Fields(pre); len(fields) >= 5 {
			return unescapeMountinfo(fields[4])
		}
	}
	return ""
}

// labCgroup is lab name's cgroup directory, or "" without a unified hierarchy.
func labCgroup(name string) string {
	root := cgroupRoot()
	if root == "" {
		return ""
	}
	return filepath.Join(root, "idlegate", name)
}

// JoinLab makes the calling process one of lab name's processes, which the lab's
// end ends; `lab exec` calls it just before it execs the user's program. It returns
// how the process is tracked: TrackCgroup or TrackProcess, with the cgroup or file
// that holds it.
func JoinLab(name, runBase string) (how, where string, err error) {
	if err := CheckName(name); err != nil {
		return "", "", err
	}
	if cg := labCgroup(name); cg != "" {
		if err := os.MkdirAll(cg, 0o755); err == nil {
			if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err == nil {
				return TrackCgroup, cg, nil
			}
		}
	}
	start, err := processStart(os.Getpid())
	if err != nil {
		return "", "", fmt.Errorf("track this process for lab %q: %w", name, err)
	}
	path := filepath.Join(RunDir(name, runBase), execsFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("track this process for lab %q: %w", name, err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%d %d\n", os.Getpid(), start.UnixNano()); err != nil {
		return "", "", fmt.Errorf("track this process for lab %q: %w", name, err)
	}
	return TrackProcess, path, nil
}

// EndProcesses ends the processes lab exec started in lab name and still running,
// as the package comment says, and returns how many it signalled and how they were
// tracked (TrackCgroup, TrackProcess, or "" if none ran). An empty runBase means
// DefaultRunBase.
func EndProcesses(name, runBase string) (n int, how string, err error) {
	if err := CheckName(name); err != nil {
		return 0, "", err
	}
	inCgroup := len(cgroupProcs(labCgroup(name))) > 0
	n, err = endProcesses(name, RunDir(name, runBase))
	switch {
	case n == 0:
	case inCgroup:
		how = TrackCgroup
	default:
		how = TrackProcess
	}
	return n, how, err
}

// endProcesses is EndProcesses for the run directory runDir.
func endProcesses(name, runDir string) (int, error) {
	pids := map[int]bool{}
	cg := labCgroup(name)
	if cg != "" {
		for _, pid := range cgroupProcs(cg) {
			pids[pid] = true
		}
	}
	for _, pid := range trackedProcs(filepath.Join(runDir, execsFile)) {
		pids[pid] = true
		for _, d := range descendants(pid) {
			pids[d] = true
		}
	}
	self := os.Getpid()
	delete(pids, self)
	for pid := range pids {
		unix.Kill(pid, unix.SIGTERM)
	}
	gone := func() bool {
		for pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return cg == "" || len(cgroupProcs(cg)) == 0
	}
	deadline := time.Now().Add(execGrace)
	for !gone() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !gone() {
		if cg != "" && os.WriteFile(filepath.Join(cg, "cgroup.kill"), []byte("1"), 0o644) != nil {
			for _, pid := range cgroupProcs(cg) {
				pids[pid] = true
			}
		}
		for pid := range pids {
			if alive(pid) {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		for deadline := time.Now().Add(5 * time.Second); !gone() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	var err error
	if cg != "" {
		err = removeCgroup(cg)
	}
	if !gone() {
		err = errors.Join(err, fmt.Errorf("processes of lab %q survived SIGKILL", name))
	}
	return len(pids), err
}

// cgroupProcs lists the members of cgroup cg (none if it does not exist).
func cgroupProcs(cg string) []int {
	b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// removeCgroup removes the emptied cgroup cg, and its parent if that is empty too.
func removeCgroup(cg string) error {
	var err error
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err = unix.Rmdir(cg)
		if err == nil || errors.Is(err, fs.ErrNotExist) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", cg, err)
	}
	unix.Rmdir(filepath.Dir(cg)) // the shared parent: fails while another lab uses it
	return nil
}

// trackedProcs lists the processes of an execs file that still run as the process
// recorded (not a later one that reused the pid).
func trackedProcs(path string) []int {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []int
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		pid, err1 := strconv.Atoi(f[0])
		ns, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || !alive(pid) {
			continue
		}
		if start, err := processStart(pid); err == nil && start.UnixNano() == ns {
			out = append(out, pid)
		}
	}
	return out
}

// descendants lists the running descendants of pid, from /proc.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fields, err := procStat(p)
		if err != nil || len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	for todo := children[pid]; len(todo) > 0; {
		p := todo[0]
		todo = todo[1:]
		out = append(out, p)
		todo = append(todo, children[p]...)
	}
	return out
}

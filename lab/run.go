package lab

import (
	"bytes"
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

// lockRunBase creates runBase if needed and takes an exclusive flock on it,
// serialising Up and Cleanup across goroutines and processes. The lock is
// released by the returned function, or by the kernel if the process dies.
func lockRunBase(runBase string) (unlock func(), err error) {
	if err := os.MkdirAll(runBase, 0o755); err != nil {
		return nil, fmt.Errorf("create run base: %w", err)
	}
	f, err := os.Open(runBase)
	if err != nil {
		return nil, fmt.Errorf("open run base: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock run base %s: %w", runBase, err)
	}
	return func() { f.Close() }, nil
}

// WritePID records pid as the process that owns the lab (Up records the
// calling process). The file is replaced atomically.
func (l *Lab) WritePID(pid int) error { return writePID(l.RunDir, pid) }

// writePID writes the pid file of the run directory runDir atomically.
func writePID(runDir string, pid int) error {
	path := filepath.Join(runDir, PIDFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// ReadPID returns the pid recorded for lab name, live or not. A lab without a
// pid file is ErrNoSuchLab.
func ReadPID(name, runBase string) (int, error) {
	if err := CheckName(name); err != nil {
		return 0, err
	}
	pid, err := readPIDFile(RunDir(name, runBase))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, NoSuchLab(name)
	}
	return pid, err
}

// RunDir is lab name's run directory, runBase/name; an empty runBase means
// DefaultRunBase.
func RunDir(name, runBase string) string {
	if runBase == "" {
		runBase = DefaultRunBase
	}
	return filepath.Join(runBase, name)
}

func readPIDFile(runDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(runDir, PIDFile))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: want a positive number, have %q", filepath.Join(runDir, PIDFile), b)
	}
	return pid, nil
}

// alive reports whether pid is a running process (a zombie counts as dead).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); err != nil && err != unix.EPERM {
		return false
	}
	fields, err := procStat(pid)
	if err != nil {
		return false
	}
	return fields[0] != "Z" && fields[0] != "X"
}

// procStat returns the fields of /proc/PID/stat that follow the parenthesised
// command name (which may hold spaces): fields[0] is the state (field 3 of
// proc(5)), fields[19] the start time (field 22). There is at least one.
func procStat(pid int) ([]string, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) == 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no state", pid)
	}
	return fields, nil
}

// Cleanup removes what lab name left behind: the processes lab exec started in it
// (see EndProcesses), both namespaces and the run directory. It does not look at
// the pid file and does not stop the process
// that owns the lab; signal ReadPID's process first. If there was nothing to
// remove it returns an error matching ErrNoSuchLab. An empty runBase means
// DefaultRunBase.
func Cleanup(name, runBase string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	runDir := RunDir(name, runBase)
	unlock, err := lockRunBase(filepath.Dir(runDir))
	if err != nil {
		return err
	}
	defer unlock()
	found, err := cleanupLocked(name, runDir)
	if err != nil {
		return fmt.Errorf("clean up lab %q: %w", name, err)
	}
	if !found {
		return NoSuchLab(name)
	}
	return nil
}

// cleanupLocked removes lab name's namespaces and its run directory runDir and
// reports whether any of them existed. The caller holds the run base lock.
func cleanupLocked(name, runDir string) (found bool, err error) {
	var errs []error
	if _, err := endProcesses(name, runDir); err != nil {
		errs = append(errs, err)
	}
	// A wedge's TUNs went with its process; take out any that something kept.
	if rec, err := readWedgeRecord(runDir); err == nil {
		found = true
		errs = append(errs, rec.undo())
	}
	for _, ns := range []string{ClientNamespace(name), ServerNamespace(name)} {
		if NamespaceExists(ns) {
			found = true
			errs = append(errs, DeleteNamespace(ns))
		}
	}
	if _, err := os.Lstat(runDir); err == nil {
		found = true
		if err := os.RemoveAll(runDir); err != nil {
			errs = append(errs, fmt.Errorf("remove run directory: %w", err))
		}
	}
	return found, errors.Join(errs...)
}

// Exists reports whether anything of lab name is present: a namespace or the
// run directory, live or left over. An empty runBase means DefaultRunBase.
func Exists(name, runBase string) bool {
	if CheckName(name) != nil {
		return false
	}
	if NamespaceExists(ClientNamespace(name)) || NamespaceExists(ServerNamespace(name)) {
		return true
	}
	_, err := os.Lstat(RunDir(name, runBase))
	return err == nil
}

// Alive reports whether pid is a running process (a zombie counts as dead).
func Alive(pid int) bool { return alive(pid) }

// Owner returns the live process recorded in lab name's pid file. A pid that was
// reused by a process started after the pid file was written is not the owner:
// ok is false, so that nobody signals an unrelated process.
func Owner(name, runBase string) (pid int, ok bool) {
	runDir := RunDir(name, runBase)
	pid, err := readPIDFile(runDir)
	if err != nil || !alive(pid) {
		return 0, false
	}
	fi, err := os.Stat(filepath.Join(runDir, PIDFile))
	if err != nil {
		return 0, false
	}
	started, err := processStart(pid)
	if err != nil || started.After(fi.ModTime().Add(time.Second)) {
		return 0, false
	}
	return pid, true
}

// processStart is when pid started, from /proc/PID/stat (field 22, clock ticks
// since boot) and the boot time in /proc/stat.
func processStart(pid int) (time.Time, error) {
	fields, err := procStat(pid)
	if err != nil {
		return time.Time{}, err
	}
	if len(fields) < 20 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	procStat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(procStat), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			const clockTicks = 100 // USER_HZ, 100 on every Linux architecture Go supports
			return time.Unix(boot, 0).Add(time.Duration(ticks) * time.Second / clockTicks), nil
		}
	}
	return time.Time{}, fmt.Errorf("/proc/stat: no btime")
}

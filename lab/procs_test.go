package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startTracked starts `sh -c 'sleep N & wait'` and records the shell in runDir's
// execs file as JoinLab's process tracking does; it returns the shell and its
// sleeping child.
func startTracked(t *testing.T, runDir string) (sh, child int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 3007 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	t.Cleanup(func() { cmd.Process.Kill() })
	sh = cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if d := descendants(sh); len(d) == 1 {
			child = d[0]
			break
		}
	}
	if child == 0 {
		t.Fatal("the shell's sleep did not start")
	}
	start, err := processStart(sh)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(runDir, execsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%d %d\n", sh, start.UnixNano())
	f.Close()
	return sh, child
}

// TestEndTrackedProcesses: without a cgroup, the processes in the execs file and
// their descendants are ended; a recorded pid that now names another process (its
// start time differs) is left alone.
func TestEndTrackedProcesses(t *testing.T) {
	b := make([]byte, 3)
	rand.Read(b)
	name := "procs-" + hex.EncodeToString(b) // no cgroup has this name
	runDir := t.TempDir()
	sh, child := startTracked(t, runDir)
	// A stranger: recorded with a start time it does not have.
	stranger := exec.Command("sleep", "3008")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	go stranger.Wait()
	t.Cleanup(func() { stranger.Process.Kill() })
	f, _ := os.OpenFile(filepath.Join(runDir, execsFile), os.O_WRONLY|os.O_APPEND, 0o600)
	fmt.Fprintf(f, "%d %d\n", stranger.Process.Pid, 12345)
	f.Close()

	n, err := endProcesses(name, runDir)
	if err != nil || n != 2 {
		t.Fatalf("endProcesses = %d, %v; want the shell and its sleep", n, err)
	}
	for _, pid := range []int{sh, child} {
		for deadline := time.Now().Add(3 * time.Second); alive(pid) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("pid %d survived", pid)
		}
	}
	if !alive(stranger.Process.Pid) {
		t.Error("a process whose pid was recorded with another start time was ended")
	}
}

package main_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/idlegate/idlegate/policy"
)

// TestAdviceSnippets hands the advice TestAdviceApps cannot run in a lab to the tools that
// judge it: the Go lines (net.Dialer with TCP_USER_TIMEOUT, net/http client and server,
// database/sql) are compiled and vetted with the Go toolchain against golang.org/x/sys,
// and the HAProxy lines are checked by `haproxy -c`. A typo, a field that does not exist
// or a keyword HAProxy rejects fails here.
func TestAdviceSnippets(t *testing.T) {
	for _, est := range []string{"5s", "350s"} {
		t.Run(est, func(t *testing.T) {
			r := want(t, 0, "advise", "--set", "timeouts.tcp.established="+est, "-o", "json")
			var a struct {
				Settings []policy.AdviceItem `json:"settings"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &a); err != nil {
				t.Fatal(err)
			}
			cfg := map[string]string{}
			for _, it := range a.Settings {
				cfg[it.ID] = it.Config
			}
			t.Run("go", func(t *testing.T) { checkGoSnippets(t, cfg) })
			t.Run("haproxy", func(t *testing.T) { checkHAProxy(t, cfg["haproxy"]) })
		})
	}
}

func checkGoSnippets(t *testing.T, cfg map[string]string) {
	for _, id := range []string{"go-dialer", "go-http-client", "go-http-server", "go-database-sql"} {
		if cfg[id] == "" {
			t.Fatalf("no %s advice", id)
		}
	}
	dir := t.TempDir()
	src := `package main

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func client() *http.Client {
` + cfg["go-dialer"] + `
` + cfg["go-http-client"] + `
	return &http.Client{Transport: transport}
}

func serve(ctx context.Context, addr string, handler http.Handler) error {
` + cfg["go-http-server"] + `
	return err
}

func pool(db *sql.DB) {
	` + cfg["go-database-sql"] + `
}

var _ = time.Second

func main() { _, _, _ = client, serve, pool }
`
	sum := goSumLines(t, "golang.org/x/sys v0.49.0")
	files := map[string]string{
		"main.go": src,
		"go.mod":  "module advicecheck\n\ngo 1.23\n\nrequire golang.org/x/sys v0.49.0\n",
		"go.sum":  sum,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goTool, "vet", ".")
	cmd.Dir = dir
	// Offline, from the module cache the project's own build filled.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Go advice does not compile: %v\n%s\n%s", err, out, src)
	}
}

// goSumLines are the project's go.sum lines of module@version.
func goSumLines(t *testing.T, modVersion string) string {
	f, err := os.Open(filepath.Join("..", "..", "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), modVersion+" ") || strings.HasPrefix(sc.Text(), modVersion+"/go.mod ") {
			b.WriteString(sc.Text() + "\n")
		}
	}
	if b.Len() == 0 {
		t.Fatalf("go.sum has no %s", modVersion)
	}
	return b.String()
}

func checkHAProxy(t *testing.T, lines string) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("haproxy is missing: run deps.sh")
			}
			t.Skip("haproxy is missing: run deps.sh (as root) to install it")
		}
	}
	if lines == "" {
		t.Fatal("no haproxy advice")
	}
	conf := "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n" + indent(lines, "    ") + "\n" +
		"frontend in\n    bind 127.0.0.1:18080\n    default_backend out\n" +
		"backend out\n    server s1 127.0.0.1:9\n"
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	haproxy := "haproxy"
	if _, err := exec.LookPath(haproxy); err != nil {
		haproxy = "/usr/sbin/haproxy"
	}
	out, err := exec.Command(haproxy, "-c", "-f", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "WARNING") || strings.Contains(string(out), "ALERT") {
		t.Fatalf("haproxy -c rejects the advice: %v\n%s\n%s", err, out, conf)
	}
}

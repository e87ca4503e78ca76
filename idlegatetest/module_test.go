package idlegatetest_test

import (
	"bufio"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUserModule uses the package as a user's repository would: a module of its own
// outside this one, which requires github.com/idlegate/idlegate through a replace
// directive pointing at this checkout, holds the test that the package documentation
// shows and a copy of the database/sql example, and runs both with go test.
//
// It works offline. GOPROXY=off forbids the network; GOFLAGS=-mod=mod lets the go
// command complete the module's go.mod from the replaced module's requirements; the
// module cache this machine already has (GOMODCACHE, filled by `make deps`) holds
// every module they name, and this repository's go.sum, copied beside the new
// go.mod, has their checksums, so neither a proxy nor the checksum database is
// asked. GOTOOLCHAIN=local keeps the go command from fetching another toolchain,
// GOWORK=off from picking up a workspace.
func TestUserModule(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("builds a module and runs two stories (about 15 s); not with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not in PATH: %v", err)
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := goDirective(t, filepath.Join(repo, "go.mod"))

	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/pool\n\ngo "+goVersion+"\n\n"+
		"require github.com/idlegate/idlegate v0.0.0\n\n"+
		"replace github.com/idlegate/idlegate => "+repo+"\n")
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", string(sum))
	write("doc_test.go", "package pool_test\n\n"+docTest(t))
	ex, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	write("example_test.go", strings.Replace(string(ex), "package idlegatetest_test\n", "package pool_test\n", 1))

	cmd := exec.Command(goBin, "test", "-count=1", "-v", "-run", "^(TestPoolSurvivesNATGateway|Example)$", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in a module of its own: %v\n%s", err, out)
	}
	for _, want := range []string{"--- PASS: TestPoolSurvivesNATGateway", "--- PASS: Example "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the user's go test does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "SKIP") {
		t.Errorf("the user's go test skipped something:\n%s", out)
	}
	t.Logf("go test in %s:\n%s", dir, out)
}

// docTest is the test in the package documentation: its first code block that
// starts with an import.
func docTest(t *testing.T) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	var p comment.Parser
	for _, b := range p.Parse(f.Doc.Text()).Content {
		if c, ok := b.(*comment.Code); ok && strings.HasPrefix(c.Text, "import (") {
			return c.Text
		}
	}
	t.Fatal("doc.go has no code block that starts with import (")
	return ""
}

// goDirective is the go line of a go.mod file.
func goDirective(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s has no go line", path)
	return ""
}

// TestReadmeGoVersion: the README's quick start names the Go version go.mod requires,
// and the install line.
func TestReadmeGoVersion(t *testing.T) {
	v := goDirective(t, "../go.mod")
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Go " + v + " or later", "go install github.com/idlegate/idlegate/cmd/idlegate@latest"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("README.md does not say %q", want)
		}
	}
}

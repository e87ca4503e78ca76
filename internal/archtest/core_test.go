package archtest

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/idlegate/idlegate/"

// core are the pure packages, with the module packages each may import.
var core = map[string][]string{
	"packet":         nil,
	"conntrack":      {"packet"},
	"policy":         {"packet", "conntrack", "internal/yamlx"},
	"internal/yamlx": nil,
}

// thirdParty are the only modules outside the standard library the core may use.
var thirdParty = []string{
	"github.com/hashicorp/golang-lru/v2/simplelru",
	"go.yaml.in/yaml/v3",
}

// forbidden standard packages reach files, sockets, processes or the OS.
var forbidden = map[string]string{
	"os": "files", "os/exec": "processes", "os/signal": "signals", "syscall": "the OS",
	"net": "sockets", "net/http": "sockets", "io/ioutil": "files", "io/fs": "files",
	"path/filepath": "files", "plugin": "the OS", "unsafe": "memory outside Go's rules",
}

// clock are the time functions that read or wait on the wall clock.
var clock = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true, "AfterFunc": true,
	"Tick": true, "NewTimer": true, "NewTicker": true,
}

func TestCoreImports(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for pkg, mayUse := range core {
		t.Run(pkg, func(t *testing.T) {
			bp, err := build.ImportDir(filepath.Join(root, pkg), 0)
			if err != nil {
				t.Fatalf("read package %s: %v", pkg, err)
			}
			allowed := map[string]bool{}
			for _, m := range mayUse {
				allowed[module+m] = true
			}
			for _, m := range thirdParty {
				allowed[m] = true
			}
			for _, imp := range bp.Imports {
				switch {
				case forbidden[imp] != "":
					t.Errorf("%s imports %s, which reaches %s: that belongs in the shell", pkg, imp, forbidden[imp])
				case allowed[imp]:
				case strings.HasPrefix(imp, module):
					t.Errorf("%s imports %s: the core may import only %v of this module", pkg, imp, mayUse)
				case strings.Contains(strings.SplitN(imp, "/", 2)[0], "."):
					t.Errorf("%s imports %s: not in the core's list of third-party packages %v", pkg, imp, thirdParty)
				}
			}
			for _, f := range bp.GoFiles {
				checkClock(t, filepath.Join(bp.Dir, f))
			}
		})
	}
}

// checkClock reports calls to time functions that read the wall clock.
func checkClock(t *testing.T, path string) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	name := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "time" {
			name = "time"
			if imp.Name != nil {
				name = imp.Name.Name
			}
		}
	}
	if name == "" {
		return
	}
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == name && clock[sel.Sel.Name] {
			t.Errorf("%s: time.%s reads the wall clock; the core takes the time as an argument", fset.Position(sel.Pos()), sel.Sel.Name)
		}
		return true
	})
}

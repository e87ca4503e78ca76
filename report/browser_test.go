package report

// The real-browser test: headless Chromium (Debian's chromium, which deps.sh installs)
// loads the report of a played idle-reset and of a replay of its capture, offline:
// inside `unshare --net` when root (no network at all), and with every host name
// mapped to nowhere (--host-resolver-rules) either way. --dump-dom gives the page as
// the browser built it, checked for the lifelines, arrows and reasons; --screenshot a
// PNG in the test's artifact directory (go test -artifacts keeps it), checked not to
// be blank.

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/replay"
)

// chromiumPath finds the browser; without it the test skips, except in CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI must not skip the browser test: run ./deps.sh as root (Debian package chromium)")
	}
	t.Skip("chromium is not installed: run ./deps.sh as root (Debian package chromium); CI=true makes this a failure")
	return ""
}

// browse runs headless Chromium on page with args (--dump-dom, --screenshot=...) and
// returns its stdout.
func browse(t *testing.T, page string, args ...string) []byte {
	t.Helper()
	bin := chromiumPath(t)
	home := t.TempDir()
	argv := []string{bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--host-resolver-rules=MAP * ~NOTFOUND", "--user-data-dir=" + filepath.Join(home, "profile")}
	argv = append(argv, args...)
	argv = append(argv, "file://"+page)
	if os.Geteuid() == 0 {
		if u, err := exec.LookPath("unshare"); err == nil {
			argv = append([]string{u, "--net"}, argv...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(home, "config"), "XDG_CACHE_HOME="+filepath.Join(home, "cache"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// checkScreenshot decodes the PNG and checks it shows a page: its size, many colours,
// and a good share of pixels that are not the white background.
func checkScreenshot(t *testing.T, path string, w, h int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		t.Errorf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
	}
	colours := map[[3]uint32]bool{}
	ink := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if r>>8 < 240 || g>>8 < 240 || bl>>8 < 240 {
				ink++
			}
		}
	}
	share := float64(ink) / float64(b.Dx()*b.Dy())
	t.Logf("screenshot %s: %d colours, %.1f%% of pixels not background", path, len(colours), share*100)
	if len(colours) < 32 || share < 0.03 {
		t.Errorf("screenshot %s looks blank: %d colours, %.2f%% ink", path, len(colours), share*100)
	}
}

// checkDOM checks the page as the browser built it holds every pattern, as often as said.
func checkDOM(t *testing.T, dom string, want map[string]int) {
	t.Helper()
	if !strings.Contains(dom, "</svg>") {
		t.Fatalf("the browser's DOM has no SVG; it begins %q", dom[:min(len(dom), 300)])
	}
	for pat, n := range want {
		got := len(regexp.MustCompile(pat).FindAllStringIndex(dom, -1))
		if got < n {
			t.Errorf("the DOM has %d of %q, want at least %d", got, pat, n)
		}
	}
}

func writePage(t *testing.T, dir, name string, r *Report) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBrowserShowsReports(t *testing.T) {
	t.Parallel()
	chromiumPath(t)
	rep, r := playStory(t, "idle-reset")
	dir := t.ArtifactDir()

	t.Run("idle-reset", func(t *testing.T) {
		page := writePage(t, dir, "idle-reset.html", r)
		dom := string(browse(t, page, "--dump-dom"))
		lifeline := `<g class="head[^"]*" data-lifeline="%s"><rect[^>]*></rect><text[^>]*>%s</text>`
		checkDOM(t, dom, map[string]int{
			strings.ReplaceAll(lifeline, "%s", "client"):                                                                                                         1,
			strings.ReplaceAll(lifeline, "%s", "idlegate"):                                                                                                       1,
			strings.ReplaceAll(lifeline, "%s", "server"):                                                                                                         1,
			`<line class="lifeline[^"]*" data-lifeline="(client|idlegate|server)"`:                                                                               3,
			`<g class="arrow crossed" data-kind="crossed" data-from="client" data-to="server" data-label="SYN"`:                                                  1,
			`<g class="arrow crossed" data-kind="crossed" data-from="server" data-to="client" data-label="SYN\|ACK"`:                                             1,
			`<g class="arrow dropped" data-kind="dropped" data-from="client" data-to="idlegate" data-label="PSH\|ACK" data-verdict="reset" data-reason="orphan"`: 1,
			`<g class="arrow injected" data-kind="injected" data-from="idlegate" data-to="client" data-label="RST" data-verdict="reset" data-reason="orphan"`:    1,
			`reset: orphan</text>`:                                 1,
			`DESTROY tcp :\d+ → :7000 expired after 3s idle`:       1,
			`<g class="timer" data-conn="\d+" data-end="expired">`: 1,
			`id="verdict">PASS</span>`:                             1,
			`ECONNRESET`:                                           1,
		})
		shot := filepath.Join(dir, "idle-reset.png")
		browse(t, page, "--screenshot="+shot, "--window-size=1200,1600")
		checkScreenshot(t, shot, 1200, 1600)
	})

	t.Run("replay", func(t *testing.T) {
		var profs []replay.Profile
		for _, n := range []string{"linux-conntrack", "aws-nat-gateway"} {
			pr, err := policy.LookupProfile(n)
			if err != nil {
				t.Fatal(err)
			}
			profs = append(profs, replay.Profile{Name: pr.Name, Policy: pr.Policy()})
		}
		// 350 s x 0.01 = 3.5 s: the story's 5 s idle breaks the NAT gateway, not Linux.
		rr, _, err := FromReplay("idle-reset.pcapng", bytes.NewReader(rep.Capture), replay.Options{Profiles: profs, Scale: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		page := writePage(t, dir, "replay.html", rr)
		dom := string(browse(t, page, "--dump-dom"))
		checkDOM(t, dom, map[string]int{
			`<table class="matrix">`: 1,
			`<td class="cell ok" data-profile="linux-conntrack" data-outcome="survived">`:                                                                        1,
			`<td class="cell broken" data-profile="aws-nat-gateway" data-outcome="reset"><b>reset @\d+</b>`:                                                      1,
			`<g class="head[^"]*" data-lifeline="idlegate">`:                                                                                                     2,
			`<g class="arrow crossed" data-kind="crossed" data-from="client" data-to="server" data-label="SYN"`:                                                  2,
			`<g class="arrow dropped" data-kind="dropped" data-from="client" data-to="idlegate" data-label="PSH\|ACK" data-verdict="reset" data-reason="orphan"`: 1,
			`<g class="arrow injected" data-kind="injected" data-from="idlegate" data-to="client" data-label="RST"`:                                              1,
			`data-end="expired"`: 1,
		})
		shot := filepath.Join(dir, "replay.png")
		browse(t, page, "--screenshot="+shot, "--window-size=1200,1400")
		checkScreenshot(t, shot, 1200, 1400)
	})
}

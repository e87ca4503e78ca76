package agent

import (
	"reflect"
	"testing"
)

func TestScaleArgs(t *testing.T) {
	t.Parallel()
	in := []string{"--connect", "198.19.0.2:7000", "--pattern", "send:5s,idle:9s,hold:1500ms,write:x",
		"--keepalive-idle", "1s", "--keepalive-cnt", "3", "--keepalive", "--rate", "4/s", "--hang-after=5s",
		"--url", "http://198.19.0.2:8080/", "--count", "0", "--interval", "100ms"}
	want := []string{"--connect", "198.19.0.2:7000", "--pattern", "send:5s,idle:54s,hold:9s,write:x",
		"--keepalive-idle", "6s", "--keepalive-cnt", "3", "--keepalive", "--rate", "40/m", "--hang-after=30s",
		"--url", "http://198.19.0.2:8080/", "--count", "0", "--interval", "600ms"}
	orig := append([]string(nil), in...)
	if got := ScaleArgs(in, 6); !reflect.DeepEqual(got, want) {
		t.Errorf("ScaleArgs x6\n got %q\nwant %q", got, want)
	}
	if !reflect.DeepEqual(in, orig) {
		t.Errorf("ScaleArgs changed its input: %q", in)
	}
	if r, err := parseRate("40/m"); err != nil || r.Seconds() != 1.5 {
		t.Errorf("parseRate(40/m) = %v, %v; want 1.5s between connections", r, err)
	}
}

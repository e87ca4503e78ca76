package control

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeGateway serves h on a unix socket in a temporary directory.
func fakeGateway(t *testing.T, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl-") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, SocketFile)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestClientRequests: the client sends each verb's method, path and filter, and
// decodes the answers.
func TestClientRequests(t *testing.T) {
	var got []string
	mux := http.NewServeMux()
	record := func(answer string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got = append(got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
			w.Write([]byte(answer))
		}
	}
	mux.HandleFunc("GET /v1/conntrack", record(`[{"id":7,"proto":"tcp","orig":{"src":"198.18.0.2","dst":"198.19.0.2","sport":40000,"dport":5432}}]`))
	mux.HandleFunc("GET /v1/conntrack/count", record(`{"count":3}`))
	mux.HandleFunc("DELETE /v1/conntrack", record(`{"deleted":2}`))
	mux.HandleFunc("POST /v1/conntrack/expire", record(`{"expired":1}`))
	mux.HandleFunc("PATCH /v1/conntrack", func(w http.ResponseWriter, r *http.Request) {
		var req TimeoutRequest
		decodeJSON(t, r, &req)
		if req.Timeout != 30 {
			t.Errorf("PATCH body timeout_s = %v, want 30", req.Timeout)
		}
		record(`{"updated":4}`)(w, r)
	})
	c := New(fakeGateway(t, mux))
	ctx := context.Background()
	f := Filter{Proto: 6, DPort: 5432}
	rows, err := c.Conns(ctx, f)
	if err != nil || len(rows) != 1 || rows[0].ID != 7 || rows[0].Orig.DstPort != 5432 {
		t.Fatalf("Conns = %+v, %v", rows, err)
	}
	for _, call := range []struct {
		name string
		fn   func() (int, error)
		want int
	}{
		{"Count", func() (int, error) { return c.Count(ctx, f) }, 3},
		{"Delete", func() (int, error) { return c.Delete(ctx, f) }, 2},
		{"Expire", func() (int, error) { return c.Expire(ctx, f) }, 1},
		{"SetTimeout", func() (int, error) { return c.SetTimeout(ctx, f, 30*time.Second) }, 4},
	} {
		if n, err := call.fn(); err != nil || n != call.want {
			t.Errorf("%s = %d, %v; want %d", call.name, n, err, call.want)
		}
	}
	want := []string{
		"GET /v1/conntrack?dport=5432&proto=tcp", "GET /v1/conntrack/count?dport=5432&proto=tcp",
		"DELETE /v1/conntrack?dport=5432&proto=tcp", "POST /v1/conntrack/expire?dport=5432&proto=tcp",
		"PATCH /v1/conntrack?dport=5432&proto=tcp",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func decodeJSON(t *testing.T, r *http.Request, v any) {
	t.Helper()
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		t.Errorf("request body: %v", err)
	}
}

// TestClientErrors: an API error is an *Error with the gateway's sentence; a lab
// without a socket, or with a socket nobody answers on, is ErrNotRunning; an
// event stream the gateway ends is ErrStreamEnded.
func TestClientErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/conntrack", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error": "dport=http: \"http\" is not a port number from 1 to 65535"}`))
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"time":"2025-01-01T00:00:00Z","t":1,"type":"LOST","lost":5}` + "\n"))
	})
	sock := fakeGateway(t, mux)
	c := New(sock)
	ctx := context.Background()
	_, err := c.Conns(ctx, Filter{})
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, `"http" is not a port number`) {
		t.Errorf("Conns on a 400 = %v, want the gateway's sentence as an *Error", err)
	}
	evs, err := c.Events(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := evs.Next(); err != nil || ev.Type != EventLost || ev.Lost != 5 {
		t.Errorf("first event = %+v, %v; want LOST 5", ev, err)
	}
	if _, err := evs.Next(); !errors.Is(err, ErrStreamEnded) {
		t.Errorf("Next after the gateway ended the stream = %v, want ErrStreamEnded", err)
	}
	evs.Close()

	if _, err := Dial("ctl-test-no-such-lab"); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "lab up --name ctl-test-no-such-lab") {
		t.Errorf("Dial of a lab without a socket = %v, want ErrNotRunning naming lab up", err)
	}
	// A socket file nobody listens on: the gateway was killed.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: stale}); err != nil {
		t.Fatalf("bind a unix socket at %s: %v", stale, err)
	}
	syscall.Close(fd)
	if _, err := New(stale).Stats(ctx); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("Stats on a stale socket = %v, want ErrNotRunning", err)
	}
}

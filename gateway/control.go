package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/internal/version"
	"github.com/idlegate/idlegate/policy"
)

// The control API is HTTP over a unix socket (mode 0600) in the lab's run directory.
// Package control documents its routes and owns its types; routes below is the one
// list of what the gateway serves, which the checked-in OpenAPI document
// (control.OpenAPI) describes, route for route (TestOpenAPIRoutes).
//
// Every change an API call makes (policy set, flush, delete, expire, update, pcap
// start and stop) is logged at level INFO with who asked (the peer's uid, pid and
// command, from SO_PEERCRED), what, and when (the log line's time).

// route is one endpoint of the control API.
type route struct {
	method, path string
	handle       http.HandlerFunc
}

// routes are the control API's endpoints.
func (g *Gateway) routes() []route {
	return []route{
		{"GET", "/v1/lab", g.serveLab},
		{"GET", "/v1/version", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, version.Get()) }},
		{"GET", "/v1/conntrack", g.serveConntrack},
		{"GET", "/v1/conntrack/count", g.serveCount},
		{"DELETE", "/v1/conntrack", g.serveDelete},
		{"POST", "/v1/conntrack/expire", g.serveExpire},
		{"PATCH", "/v1/conntrack", g.serveUpdate},
		{"POST", "/v1/flush", g.serveFlush},
		{"GET", "/v1/events", g.serveEvents},
		{"GET", "/v1/policy", g.servePolicy},
		{"POST", "/v1/policy", g.serveSetPolicy},
		{"GET", "/v1/pcap", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, g.PcapInfo()) }},
		{"POST", "/v1/pcap", g.serveSetPcap},
		{"GET", "/v1/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, g.StatsJSON()) }},
		{"GET", "/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(control.OpenAPI)
		}},
		{"GET", "/metrics", g.metricsHandler().ServeHTTP},
	}
}

// StatsJSON gathers every counter.
func (g *Gateway) StatsJSON() control.Stats {
	es := g.cfg.Engine.Stats()
	ds := g.Stats()
	j := control.StatsOf(&es, g.cfg.Engine.Policy().Capacity)
	j.Uptime = g.Now().Sub(g.start).Seconds()
	j.Entries = g.cfg.Engine.Len()
	j.Inside, j.Outside = ds[policy.Inside], ds[policy.Outside]
	j.Pcap = g.PcapPath()
	j.PcapWriteErrors = g.PcapWriteErrors()
	if st, ok := g.PcapFailed(); ok {
		j.PcapFailed = &st
	}
	return j
}

// Serve answers the control API on a unix socket at path (created 0600, replaced if a
// stale one is there) until ctx is done.
func (g *Gateway) Serve(ctx context.Context, path string) error {
	ln, err := listenControl(path)
	if err != nil {
		return err
	}
	return g.serve(ctx, ln, g.handler())
}

// ServeMetrics answers GET /metrics (and nothing else: the control API never leaves
// its unix socket) on ln, a TCP listener, until ctx is done.
func (g *Gateway) ServeMetrics(ctx context.Context, ln net.Listener) error {
	return g.serve(ctx, ln, jsonErrors([]route{{"GET", "/metrics", g.metricsHandler().ServeHTTP}}))
}

// listenControl listens on a unix socket at path, mode 0600, replacing a stale one.
func listenControl(path string) (net.Listener, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %q: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %q: %w", path, err)
	}
	return ln, nil
}

// serve answers h on ln until ctx is done, then closes ln and removes its socket
// file, if it is one.
func (g *Gateway) serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:     h,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnContext: withPeer,
	}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shut)
		srv.Close()
	}()
	err := srv.Serve(ln)
	if a, ok := ln.Addr().(*net.UnixAddr); ok {
		os.Remove(a.Name)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// handler is the control API.
func (g *Gateway) handler() http.Handler { return jsonErrors(g.routes()) }

// jsonErrors serves rs, and answers a request for any other path (404) or method
// (405, with Allow) with a JSON error like every other.
func jsonErrors(rs []route) http.Handler {
	mux := http.NewServeMux()
	methods := map[string][]string{}
	for _, r := range rs {
		mux.HandleFunc(r.method+" "+r.path, r.handle)
		methods[r.path] = append(methods[r.path], r.method)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		if allow, ok := methods[r.URL.Path]; ok {
			if slices.Contains(allow, "GET") {
				allow = append(allow, "HEAD")
			}
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s is not served: the methods of %s are %s", r.Method, r.URL.Path, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such route %s; the routes are listed in GET /v1/openapi.json", r.URL.Path))
	})
}

// peer is who is at the other end of a unix socket connection.
type peer struct {
	uid, pid int
	comm     string
}

type peerKey struct{}

// withPeer records the credentials of a unix socket peer (SO_PEERCRED) in the
// connection's context.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || cred == nil {
		return ctx
	}
	p := peer{uid: int(cred.Uid), pid: int(cred.Pid)}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/comm"); err == nil {
		p.comm = strings.TrimSpace(string(b))
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// audit logs a change made through the API: who (the peer), what, and the details.
func (g *Gateway) audit(r *http.Request, what string, attrs ...any) {
	who := []any{"what", what}
	if p, ok := r.Context().Value(peerKey{}).(peer); ok {
		who = append(who, "peer_uid", p.uid, "peer_pid", p.pid, "peer_command", p.comm)
	}
	g.cfg.Log.Info("api change", append(who, attrs...)...)
}

// filterOf reads the request's filter; on a bad one it answers 400 and reports false.
// need refuses the zero filter (the verbs that change connections).
func filterOf(w http.ResponseWriter, r *http.Request, need string) (control.Filter, bool) {
	f, err := control.ParseFilter(r.URL.Query())
	if err == nil && len(f.Events) > 0 {
		err = errors.New("event= picks event types, for GET /v1/events only")
	}
	if err == nil && need != "" && f.IsZero() {
		err = fmt.Errorf("%s needs a filter (e.g. dport=80 or id=7); POST /v1/flush forgets every connection", need)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return f, false
	}
	return f, true
}

func (g *Gateway) serveConntrack(w http.ResponseWriter, r *http.Request) {
	f, ok := filterOf(w, r, "")
	if !ok {
		return
	}
	now := g.Now()
	list := g.cfg.Engine.List(now, f.Match())
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	rows := make([]control.Conn, 0, len(list))
	for i := range list {
		rows = append(rows, control.ConnOf(&list[i], now))
	}
	writeJSON(w, http.StatusOK, rows)
}

func (g *Gateway) serveCount(w http.ResponseWriter, r *http.Request) {
	f, ok := filterOf(w, r, "")
	if !ok {
		return
	}
	n := len(g.cfg.Engine.List(g.Now(), f.Match()))
	writeJSON(w, http.StatusOK, map[string]int{"count": n})
}

func (g *Gateway) serveDelete(w http.ResponseWriter, r *http.Request) {
	f, ok := filterOf(w, r, "DELETE /v1/conntrack")
	if !ok {
		return
	}
	n := g.cfg.Engine.Delete(g.Now(), f.Match())
	g.audit(r, "delete", "filter", f.String(), "deleted", n)
	writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
}

func (g *Gateway) serveExpire(w http.ResponseWriter, r *http.Request) {
	f, ok := filterOf(w, r, "POST /v1/conntrack/expire")
	if !ok {
		return
	}
	now := g.Now()
	n, rsts := g.cfg.Engine.Expire(now, f.Match(), nil)
	var one [1][]byte
	g.injectExpiryResets(&one, rsts, now)
	g.audit(r, "expire", "filter", f.String(), "expired", n, "resets", len(rsts))
	writeJSON(w, http.StatusOK, map[string]int{"expired": n})
}

func (g *Gateway) serveUpdate(w http.ResponseWriter, r *http.Request) {
	f, ok := filterOf(w, r, "PATCH /v1/conntrack")
	if !ok {
		return
	}
	var req control.TimeoutRequest
	if err := decodeBody(r, &req); err != nil || math.IsNaN(req.Timeout) || req.Timeout < 0 || req.Timeout > 1e9 {
		writeError(w, http.StatusBadRequest, `body must be JSON like {"timeout_s": 30}, a time left of 0 seconds or more`)
		return
	}
	left := time.Duration(req.Timeout * float64(time.Second))
	n := g.cfg.Engine.SetTimeLeft(g.Now(), f.Match(), left)
	g.audit(r, "update", "filter", f.String(), "timeout", left, "updated", n)
	writeJSON(w, http.StatusOK, map[string]int{"updated": n})
}

func (g *Gateway) serveFlush(w http.ResponseWriter, r *http.Request) {
	n := g.cfg.Engine.Flush(g.Now())
	g.audit(r, "flush", "flushed", n)
	writeJSON(w, http.StatusOK, map[string]int{"flushed": n})
}

func (g *Gateway) servePolicy(w http.ResponseWriter, r *http.Request) {
	p := g.cfg.Engine.Policy()
	switch r.URL.Query().Get("format") {
	case "yaml":
		w.Header().Set("Content-Type", "application/yaml")
		fmt.Fprint(w, p.YAML())
	case "", "json":
		writeJSON(w, http.StatusOK, p)
	default:
		writeError(w, http.StatusBadRequest, "format= is json or yaml")
	}
}

func (g *Gateway) serveSetPolicy(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Set []string `json:"set"`
	}
	if err := decodeBody(r, &req); err != nil || len(req.Set) == 0 {
		writeError(w, http.StatusBadRequest, `body must be JSON like {"set": ["orphan=reset"]}`)
		return
	}
	view, err := g.SetPolicy(req.Set)
	if err != nil {
		var ce *conflictError
		if errors.As(err, &ce) {
			writeError(w, http.StatusConflict, err.Error())
		} else {
			writeError(w, http.StatusBadRequest, err.Error())
		}
		return
	}
	g.audit(r, "policy set", "set", strings.Join(req.Set, " "), "time_scale", view.Scale())
	writeJSON(w, http.StatusOK, view)
}

func (g *Gateway) serveSetPcap(w http.ResponseWriter, r *http.Request) {
	var req control.PcapRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, `body must be JSON like {"path": "/tmp/run.pcapng", "force": false}`)
		return
	}
	f, err := control.ParseFilter(r.URL.Query())
	if err == nil {
		err = f.CheckPacket()
	}
	if err == nil && req.Path == "" && !f.IsZero() {
		err = errors.New("a filter goes with a path to record to; stopping takes none")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ended, err := g.SetPcap(req.Path, req.Force, f)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ans := control.PcapAnswer{Pcap: req.Path, Filter: f.String()}
	if ended.Path != "" {
		ans.Ended = &ended
	}
	if req.Path == "" {
		g.audit(r, "pcap stop", "ended", ended.Path, "packets", ended.Packets)
	} else {
		g.audit(r, "pcap start", "path", req.Path, "force", req.Force, "filter", f.String())
	}
	writeJSON(w, http.StatusOK, ans)
}

// decodeBody decodes a JSON request body into v, refusing unknown fields.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// eventBuffer is the size of each events subscriber's buffer.
const eventBuffer = 4096

// lostCheck is how often an idle events stream looks for lost events to report.
const lostCheck = 200 * time.Millisecond

func (g *Gateway) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	verdicts := q.Get("verdicts")
	f, err := control.ParseFilter(q, "verdicts")
	if err == nil && verdicts != "" && verdicts != "0" && verdicts != "false" {
		if len(f.Events) == 0 {
			err = f.Set("event", "NEW,UPDATE,DESTROY")
		}
		f.Set("event", "VERDICT")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sub := g.cfg.Engine.SubscribeWith(policy.SubscribeOptions{
		Buffer:   eventBuffer,
		Verdicts: f.WantsVerdicts(),
		Match:    func(ev policy.Event) bool { return f.MatchEvent(&ev) },
	})
	defer sub.Close()
	notes := g.notices.subscribe()
	defer g.notices.unsubscribe(notes)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var reported uint64
	// lost writes a LOST record if this subscriber dropped events since the last.
	lost := func() bool {
		d := sub.Dropped()
		if d == reported {
			return true
		}
		now := g.Now()
		ev := control.Event{Time: now, T: now.Sub(g.start).Seconds(), Type: control.EventLost, Lost: d - reported}
		reported = d
		return enc.Encode(ev) == nil
	}
	tick := time.NewTicker(lostCheck)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			// Notices sent before the gateway stopped (the GONE of a wedge that
			// ends because of it) still go out.
			for {
				select {
				case ev := <-notes:
					if enc.Encode(ev) != nil {
						return
					}
				default:
					return
				}
			}
		case ev := <-notes:
			if enc.Encode(ev) != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		case <-tick.C:
			if !lost() {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			if !lost() || enc.Encode(control.EventOf(&ev, g.start)) != nil {
				return
			}
			if fl != nil && len(sub.C) == 0 {
				fl.Flush()
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
)

// The control API is HTTP over a unix socket (mode 0600) in the lab's run directory:
//
//	GET  /v1/conntrack          the table, like conntrack -L (JSON array of Conn)
//	GET  /v1/events[?verdicts=1] live events as NDJSON until the client hangs up
//	POST /v1/flush              forget every connection (a middlebox reboot)
//	GET  /v1/policy             the policy in force (JSON; ?format=yaml for YAML)
//	POST /v1/policy             {"set": ["timeouts.tcp.established=10s", "orphan=reset"]}
//	POST /v1/pcap               {"path": "/tmp/x.pcapng"} starts recording, {"path": ""} stops
//	GET  /v1/stats              engine and device counters
//	GET  /metrics               Prometheus metrics
//
// Errors are JSON {"error": "one sentence"} with a 4xx or 5xx status.

// Conn is one row of the table as the API shows it.
type Conn struct {
	Proto       string    `json:"proto"`
	State       string    `json:"state"`
	Assured     bool      `json:"assured"`
	Replied     bool      `json:"replied"`
	TimeoutLeft float64   `json:"timeout_left_s"`
	Timeout     float64   `json:"timeout_s"`
	Orig        Tuple     `json:"orig"`
	Reply       Tuple     `json:"reply"`
	NAT         string    `json:"nat,omitempty"`
	Packets     [2]uint64 `json:"packets"`
	Bytes       [2]uint64 `json:"bytes"`
	Idle        float64   `json:"idle_s"`
}

// Tuple is one direction of a connection.
type Tuple struct {
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	SrcPort uint16 `json:"sport"`
	DstPort uint16 `json:"dport"`
}

func tupleOf(k conntrack.Key) Tuple {
	return Tuple{Src: k.SrcAddr().String(), Dst: k.DstAddr().String(), SrcPort: k.SrcPort, DstPort: k.DstPort}
}

// connOf renders a table entry.
func connOf(e conntrack.EntryInfo, now time.Time) Conn {
	c := Conn{
		Proto:       conntrack.ProtoName(e.Orig.Proto),
		Assured:     e.Assured,
		Replied:     e.Replied,
		TimeoutLeft: e.TimeLeft.Seconds(),
		Timeout:     e.Timeout.Seconds(),
		Orig:        tupleOf(e.Orig),
		Reply:       tupleOf(e.Reply),
		Packets:     e.Packets,
		Bytes:       e.Bytes,
		Idle:        now.Sub(e.LastSeen).Seconds(),
	}
	if e.Orig.Proto == conntrack.ProtoTCP {
		c.State = e.State.String()
	} else if e.Assured {
		c.State = "ASSURED"
	} else if e.Replied {
		c.State = "REPLIED" // answered, not (yet) a stream: Linux shows neither flag
	} else {
		c.State = "UNREPLIED"
	}
	if e.Reply != e.Orig.Reply() {
		if e.Reply.DstAddr() != e.Orig.SrcAddr() || e.Reply.DstPort != e.Orig.SrcPort {
			c.NAT = fmt.Sprintf("%s:%d -> %s:%d", e.Orig.SrcAddr(), e.Orig.SrcPort, e.Reply.DstAddr(), e.Reply.DstPort)
		}
	}
	return c
}

// EventJSON is one event as the API streams it.
type EventJSON struct {
	Time     time.Time `json:"time"`
	T        float64   `json:"t"` // seconds since the gateway started
	Type     string    `json:"type"`
	Proto    string    `json:"proto,omitempty"`
	State    string    `json:"state,omitempty"`
	OldState string    `json:"old_state,omitempty"`
	Orig     string    `json:"orig,omitempty"`
	Reply    string    `json:"reply,omitempty"`
	// Reason is why: a DESTROY's conntrack reason ("expired"), a VERDICT's policy
	// reason ("orphan").
	Reason  string  `json:"reason,omitempty"`
	Idle    float64 `json:"idle_s,omitempty"`
	Timeout float64 `json:"timeout_s,omitempty"`
	// VERDICT only: the verdict, the packet's direction, and whether it was a TCP
	// keepalive probe.
	Verdict   string `json:"verdict,omitempty"`
	Dir       string `json:"dir,omitempty"`
	Keepalive bool   `json:"keepalive,omitempty"`
}

// EventOf renders an event; start is the gateway's start time.
func EventOf(ev policy.Event, start time.Time) EventJSON {
	j := EventJSON{
		Time: ev.Time,
		T:    ev.Time.Sub(start).Seconds(),
		Type: ev.Type.String(),
	}
	if ev.Orig != (conntrack.Key{}) {
		j.Proto = conntrack.ProtoName(ev.Orig.Proto)
		j.Orig = ev.Orig.String()
		j.Reply = ev.Reply.String()
	}
	if ev.Orig.Proto == conntrack.ProtoTCP && ev.Type != conntrack.EventVerdict {
		j.State, j.OldState = ev.State.String(), ev.OldState.String()
	}
	switch ev.Type {
	case conntrack.EventDestroy:
		j.Reason = ev.Reason.String()
		j.Idle, j.Timeout = ev.Idle.Seconds(), ev.Timeout.Seconds()
	case conntrack.EventVerdict:
		j.Verdict, j.Reason, j.Dir, j.Keepalive = ev.Verdict.String(), ev.Cause.String(), ev.Dir.String(), ev.Keepalive
	}
	return j
}

// StatsJSON is the body of GET /v1/stats.
type StatsJSON struct {
	Uptime        float64           `json:"uptime_s"`
	Entries       int               `json:"entries"`
	Verdicts      map[string]uint64 `json:"verdicts"`
	Reasons       map[string]uint64 `json:"reasons"`
	Table         conntrack.Stats   `json:"table"`
	Injected      uint64            `json:"injected"`
	NATMaps       int               `json:"nat_mappings"`
	EventsDropped uint64            `json:"events_dropped"`
	Inside        SideStats         `json:"inside"`
	Outside       SideStats         `json:"outside"`
	Pcap          string            `json:"pcap,omitempty"`
}

// StatsJSON gathers every counter.
func (g *Gateway) StatsJSON() StatsJSON {
	es := g.cfg.Engine.Stats()
	ds := g.Stats()
	return StatsJSON{
		Uptime:        g.Now().Sub(g.start).Seconds(),
		Entries:       g.cfg.Engine.Len(),
		Verdicts:      es.VerdictCounts(),
		Reasons:       es.ReasonCounts(),
		Table:         es.Table,
		Injected:      es.Injected,
		NATMaps:       es.NATMaps,
		EventsDropped: es.EventsDropped,
		Inside:        ds[policy.Inside],
		Outside:       ds[policy.Outside],
		Pcap:          g.PcapPath(),
	}
}

// Serve answers the control API on a unix socket at path (created 0600, replaced if a
// stale one is there) until ctx is done.
func (g *Gateway) Serve(ctx context.Context, path string) error {
	ln, err := listenControl(path)
	if err != nil {
		return err
	}
	return g.serve(ctx, ln)
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

// serve answers the control API on ln until ctx is done, then closes ln and removes
// its socket file.
func (g *Gateway) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: g.handler(), BaseContext: func(net.Listener) context.Context { return ctx }}
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
func (g *Gateway) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/conntrack", func(w http.ResponseWriter, r *http.Request) {
		now := g.Now()
		rows := []Conn{}
		for _, e := range g.cfg.Engine.List(now, nil) {
			rows = append(rows, connOf(e, now))
		}
		writeJSON(w, http.StatusOK, rows)
	})
	mux.HandleFunc("GET /v1/events", g.serveEvents)
	mux.HandleFunc("POST /v1/flush", func(w http.ResponseWriter, r *http.Request) {
		n := g.cfg.Engine.Flush(g.Now())
		writeJSON(w, http.StatusOK, map[string]int{"flushed": n})
	})
	mux.HandleFunc("GET /v1/policy", func(w http.ResponseWriter, r *http.Request) {
		p := g.cfg.Engine.Policy()
		if r.URL.Query().Get("format") == "yaml" {
			w.Header().Set("Content-Type", "application/yaml")
			fmt.Fprint(w, p.YAML())
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
	mux.HandleFunc("POST /v1/policy", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Set []string `json:"set"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "body must be JSON like {\"set\": [\"orphan=reset\"]}")
			return
		}
		p := g.cfg.Engine.Policy()
		for _, kv := range req.Set {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not KEY=VALUE, e.g. timeouts.tcp.established=10s", kv))
				return
			}
			if err := p.Set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		if err := g.cfg.Engine.SetPolicy(p); err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, g.cfg.Engine.Policy())
	})
	mux.HandleFunc("POST /v1/pcap", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Path string `json:"path"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "body must be JSON like {\"path\": \"/tmp/run.pcapng\"}")
			return
		}
		if err := g.SetPcap(req.Path); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"pcap": req.Path})
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.StatsJSON())
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{g: g})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func (g *Gateway) serveEvents(w http.ResponseWriter, r *http.Request) {
	verdicts := r.URL.Query().Get("verdicts") == "1"
	sub := g.cfg.Engine.Subscribe(4096)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			if ev.Type == conntrack.EventVerdict && !verdicts {
				continue
			}
			if enc.Encode(EventOf(ev, g.start)) != nil {
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
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Event names (docs/agents.md).
const (
	EvListening     = "listening"
	EvAccept        = "accept"
	EvConnect       = "connect"
	EvSend          = "send"
	EvRecv          = "recv"
	EvIdle          = "idle"
	EvKeepalive     = "keepalive"
	EvHeartbeat     = "heartbeat"
	EvHeartbeatMiss = "heartbeat-miss"
	EvRequest       = "request"
	EvDial          = "dial"
	EvReuse         = "reuse"
	EvClose         = "close"
	EvShutdown      = "shutdown"
	EvError         = "error"
	EvResult        = "result"
)

// EventNames returns every event name, in the order of docs/agents.md.
func EventNames() []string {
	return []string{EvListening, EvAccept, EvConnect, EvSend, EvRecv, EvIdle, EvKeepalive, EvHeartbeat,
		EvHeartbeatMiss, EvRequest, EvDial, EvReuse, EvClose, EvShutdown, EvError, EvResult}
}

// Outcomes of a `result` event (docs/agents.md).
const (
	Survived = "survived"
	Reset    = "reset"
	TimedOut = "timed-out"
	Dead     = "dead"
	Hung     = "hung"
	Refused  = "refused"
	Closed   = "closed"
	Failed   = "error"
)

// OutcomeNames returns every outcome of a `result` event, in the order of docs/agents.md.
func OutcomeNames() []string {
	return []string{Survived, Reset, TimedOut, Dead, Hung, Refused, Closed, Failed}
}

// Event is one NDJSON line of an agent. Optional fields are omitted when empty; N and Reused
// are pointers so that 0 and false are written when they are meaningful.
type Event struct {
	T       time.Time `json:"t"`
	Agent   string    `json:"agent"`
	Kind    string    `json:"kind"`
	Conn    string    `json:"conn,omitempty"`
	Event   string    `json:"event"`
	Op      string    `json:"op,omitempty"`
	Err     string    `json:"err,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	N       *int64    `json:"n,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	Reused  *bool     `json:"reused,omitempty"`
}

// wireEvent is Event with the time as a fixed-width RFC 3339 string with nanoseconds.
type wireEvent struct {
	T string `json:"t"`
	Event
}

// timeFormat is RFC 3339 with all nine digits of nanoseconds, so lines align and sort.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func count[T ~int | ~int64](v T) *int64 { n := int64(v); return &n }
func boolp(v bool) *bool                { return &v }

// Emitter writes events as NDJSON, one Write per line. It is safe for concurrent use.
type Emitter struct {
	agent, kind string
	// Now is the clock of the `t` field; the wall clock unless a test replaces it.
	Now func() time.Time

	mu sync.Mutex // guards w and err
	w  io.Writer
	// err is the first write error; later events are dropped.
	err error
}

// NewEmitter returns an Emitter that stamps events with agent and kind and writes them to w.
// If w has a Flush method (a bufio.Writer) it is flushed after each line.
func NewEmitter(w io.Writer, agent, kind string) *Emitter {
	return &Emitter{agent: agent, kind: kind, Now: time.Now, w: w}
}

// Emit stamps ev with the time, agent and kind, and writes it as one line.
func (e *Emitter) Emit(ev Event) {
	ev.T = e.Now().UTC()
	ev.Agent, ev.Kind = e.agent, e.kind
	var line bytes.Buffer
	enc := json.NewEncoder(&line) // one Encode: the JSON text and its newline
	enc.SetEscapeHTML(false)      // keep "->" in details readable
	if err := enc.Encode(wireEvent{T: ev.T.Format(timeFormat), Event: ev}); err != nil {
		panic(err) // cannot happen: every field marshals
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return
	}
	if _, e.err = e.w.Write(line.Bytes()); e.err == nil {
		if f, ok := e.w.(interface{ Flush() error }); ok {
			e.err = f.Flush()
		}
	}
}

// result emits the `result` of conn, with the op and errno of the error that ended it.
func (e *Emitter) result(conn string, end ending) {
	e.Emit(Event{Conn: conn, Event: EvResult, Outcome: end.outcome, Op: end.op, Err: end.err, Detail: end.detail, N: end.n})
}

// ending is how a client connection (or a whole client agent) ended.
type ending struct {
	outcome, op, err, detail string
	n                        *int64
}

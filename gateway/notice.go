package gateway

import "sync"

// Events of the gateway itself, not of a connection, on the same stream as the
// engine's (GET /v1/events): a wedge's side whose namespace went away, and the
// side coming back under --follow.
const (
	EventGone   = "GONE"   // a side's namespace went away (a container stopped or restarted)
	EventAttach = "ATTACH" // a side was attached again, in its new namespace
)

// noticeHub hands the gateway's own events to the event streams open now. A
// stream that does not keep up loses them, as with the engine's events.
type noticeHub struct {
	mu   sync.Mutex
	subs map[chan EventJSON]struct{}
}

func (h *noticeHub) subscribe() chan EventJSON {
	c := make(chan EventJSON, 16)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[chan EventJSON]struct{}{}
	}
	h.subs[c] = struct{}{}
	return c
}

func (h *noticeHub) unsubscribe(c chan EventJSON) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, c)
}

// Notice sends one of the gateway's own events (EventGone, EventAttach) to every
// event stream open now. Its Time and T are filled in from the gateway's clock.
func (g *Gateway) Notice(ev EventJSON) {
	ev.Time = g.Now()
	ev.T = ev.Time.Sub(g.start).Seconds()
	h := &g.notices
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c <- ev:
		default:
		}
	}
}

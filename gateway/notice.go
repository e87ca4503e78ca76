package gateway

import (
	"sync"

	"github.com/idlegate/idlegate/control"
)

// The gateway's own events, not of a connection, go on the same stream as the
// engine's (GET /v1/events), to every reader whatever its filter: a wedge's side
// whose namespace went away (control.EventGone), and the side coming back under
// --follow (control.EventAttach).

// noticeHub hands the gateway's own events to the event streams open now. A
// stream that does not keep up loses them, as with the engine's events.
type noticeHub struct {
	mu   sync.Mutex
	subs map[chan control.Event]struct{}
}

func (h *noticeHub) subscribe() chan control.Event {
	c := make(chan control.Event, 16)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[chan control.Event]struct{}{}
	}
	h.subs[c] = struct{}{}
	return c
}

func (h *noticeHub) unsubscribe(c chan control.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, c)
}

// Notice sends one of the gateway's own events (control.EventGone,
// control.EventAttach) to every event stream open now. Its Time and T are filled
// in from the gateway's clock.
func (g *Gateway) Notice(ev control.Event) {
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

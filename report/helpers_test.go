package report

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/internal/pkttest"
	"github.com/idlegate/idlegate/policy"
)

var (
	t0      = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	client4 = netip.MustParseAddr("198.18.0.2")
	server4 = netip.MustParseAddr("198.19.0.2")
)

// gwDouble plays the gateway's recording in a unit test: the same engine calls and
// the same records the gateway's pump and sweeper make (gateway/gateway.go), into an
// in-memory idlegate pcapng.
type gwDouble struct {
	t   testing.TB
	eng *policy.Engine
	buf bytes.Buffer
	w   *capture.Writer
	res policy.Result
	inj []policy.Injected
	pol policy.Policy
}

func newGW(t testing.TB, pol policy.Policy) *gwDouble {
	t.Helper()
	eng, err := policy.NewEngine(pol)
	if err != nil {
		t.Fatal(err)
	}
	g := &gwDouble{t: t, eng: eng, pol: pol}
	if g.w, err = capture.NewWriter(&g.buf, "idlegate"); err != nil {
		t.Fatal(err)
	}
	return g
}

// at is t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// send processes pkt arriving in direction dir at t0+d and records it as the pump does.
func (g *gwDouble) send(d time.Duration, dir policy.Dir, pkt []byte) policy.Verdict {
	g.t.Helper()
	now := at(d)
	g.tick(d)
	orig := append([]byte(nil), pkt...)
	g.eng.Process(pkt, dir, now, &g.res)
	res := &g.res
	side := dir.From()
	if err := g.w.Write(side, now, orig, capture.Comment{Kind: capture.Arrival, Verdict: res.Verdict, Reason: res.Reason, Dir: dir, Keepalive: res.Conn.Keepalive}); err != nil {
		g.t.Fatal(err)
	}
	if res.Verdict == policy.Forward && string(orig) != string(res.Packet) {
		if err := g.w.Write(1-side, now, res.Packet, capture.Comment{Kind: capture.Translated}); err != nil {
			g.t.Fatal(err)
		}
	}
	for _, inj := range res.Inject {
		if err := g.w.Write(inj.To, now, inj.Packet, capture.Comment{Kind: capture.Injected, Verdict: res.Verdict, Reason: res.Reason}); err != nil {
			g.t.Fatal(err)
		}
	}
	return res.Verdict
}

// tick sweeps at t0+d as the gateway's sweeper does, recording reset_on_expire RSTs.
func (g *gwDouble) tick(d time.Duration) {
	now := at(d)
	g.inj = g.eng.Tick(now, g.inj[:0])
	for _, inj := range g.inj {
		if err := g.w.Write(inj.To, now, inj.Packet, capture.Comment{Kind: capture.ExpiryReset, Verdict: policy.Reset}); err != nil {
			g.t.Fatal(err)
		}
	}
}

func (g *gwDouble) bytes() []byte {
	g.t.Helper()
	if err := g.w.Flush(); err != nil {
		g.t.Fatal(err)
	}
	return g.buf.Bytes()
}

// conv is one TCP connection's sequence numbers, client c and server s.
type conv struct {
	t          testing.TB
	c, s       netip.AddrPort
	cseq, sseq uint32
}

func newConv(t testing.TB, port uint16) *conv {
	return &conv{t: t, c: netip.AddrPortFrom(client4, port), s: netip.AddrPortFrom(server4, 7000), cseq: 1000, sseq: 5000}
}

func (c *conv) syn() []byte {
	p := pkttest.TCP(c.t, c.c, c.s, "S", c.cseq, 0, "")
	c.cseq++
	return p
}

func (c *conv) synAck() []byte {
	p := pkttest.TCP(c.t, c.s, c.c, "SA", c.sseq, c.cseq, "")
	c.sseq++
	return p
}

func (c *conv) ack() []byte { return pkttest.TCP(c.t, c.c, c.s, "A", c.cseq, c.sseq, "") }

// fromClient is a data segment from the client, fromServer one from the server.
func (c *conv) fromClient(data string) []byte {
	p := pkttest.TCP(c.t, c.c, c.s, "PA", c.cseq, c.sseq, data)
	c.cseq += uint32(len(data))
	return p
}

func (c *conv) fromServer(data string) []byte {
	p := pkttest.TCP(c.t, c.s, c.c, "PA", c.sseq, c.cseq, data)
	c.sseq += uint32(len(data))
	return p
}

func (c *conv) serverAck() []byte { return pkttest.TCP(c.t, c.s, c.c, "A", c.sseq, c.cseq, "") }

// probe is a Linux keepalive probe from the client: seq = snd.nxt - 1, no payload.
func (c *conv) probe() []byte { return pkttest.TCP(c.t, c.c, c.s, "A", c.cseq-1, c.sseq, "") }

func (c *conv) probeAck() []byte { return pkttest.TCP(c.t, c.s, c.c, "A", c.sseq, c.cseq, "") }

// open plays a handshake and one echoed line from d on, 1 ms apart.
func (g *gwDouble) open(c *conv, d time.Duration) time.Duration {
	ms := time.Millisecond
	g.send(d, policy.Outbound, c.syn())
	g.send(d+ms, policy.Inbound, c.synAck())
	g.send(d+2*ms, policy.Outbound, c.ack())
	g.send(d+3*ms, policy.Outbound, c.fromClient("hello\n"))
	g.send(d+4*ms, policy.Inbound, c.fromServer("hello\n"))
	g.send(d+5*ms, policy.Outbound, c.ack())
	return d + 5*ms
}

func mustPolicy(t testing.TB, kv ...string) policy.Policy {
	t.Helper()
	p := policy.Default()
	for i := 0; i+1 < len(kv); i += 2 {
		if err := p.Set(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

package agent

import (
	"context"
	"fmt"
	"io"
	"net"
)

// UDPServer is `udp-server --listen ADDR:PORT`: it echoes every datagram to its sender. It
// stops when ctx is cancelled.
//
// Events: listening, accept (the first datagram of a new peer; c1, c2, ... per peer address,
// detail the address), recv (n bytes, echoed), error (op write).
func UDPServer(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("udp-server")
	var listen string
	f.StringVar(&listen, "listen", "", "ADDR:PORT to listen on (required)")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("listen"); err != nil {
		return err
	}
	em := f.emitter(out)
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", listen)
	if err != nil {
		em.Emit(Event{Event: EvError, Op: "listen", Err: Errno(err), Detail: err.Error()})
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	em.Emit(Event{Event: EvListening, Detail: pc.LocalAddr().String()})
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	peers := map[string]string{}
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A connectionless socket reports ICMP errors of earlier sends here; keep serving.
			em.Emit(Event{Event: EvError, Op: "read", Err: Errno(err), Detail: err.Error()})
			continue
		}
		id, ok := peers[addr.String()]
		if !ok {
			id = fmt.Sprintf("c%d", len(peers)+1)
			peers[addr.String()] = id
			em.Emit(Event{Conn: id, Event: EvAccept, Detail: addr.String()})
		}
		em.Emit(Event{Conn: id, Event: EvRecv, N: count(n)})
		if _, err := pc.WriteTo(buf[:n], addr); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			em.Emit(Event{Conn: id, Event: EvError, Op: "write", Err: Errno(err), Detail: err.Error()})
		}
	}
}

package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/tun"
)

// replayDevice is a Device that allocates nothing: each Read waits for a token on
// next and fills the whole batch with copies of pkt (a fresh copy each time, since
// the gateway rewrites in place); each Write reports its packets on wrote. With
// offloads it claims to pass them, so the gateway uses its headroom path.
type replayDevice struct {
	pkt      []byte
	batch    int
	offloads bool
	next     chan struct{}
	wrote    chan int
	closed   chan struct{}
	once     sync.Once
}

func newReplayDevice(pkt []byte, batch int, offloads bool) *replayDevice {
	return &replayDevice{pkt: pkt, batch: batch, offloads: offloads,
		next: make(chan struct{}), wrote: make(chan int, 1), closed: make(chan struct{})}
}

func (d *replayDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-d.next:
	case <-d.closed:
		return 0, os.ErrClosed
	}
	n := min(len(bufs), d.batch)
	for i := range n {
		sizes[i] = copy(bufs[i][offset:], d.pkt)
	}
	return n, nil
}

func (d *replayDevice) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case d.wrote <- len(bufs):
	case <-d.closed:
		return 0, os.ErrClosed
	}
	return len(bufs), nil
}

func (d *replayDevice) BatchSize() int       { return d.batch }
func (d *replayDevice) MTU() int             { return 1500 }
func (d *replayDevice) Name() string         { return "replay" }
func (d *replayDevice) PassesOffloads() bool { return d.offloads }
func (d *replayDevice) Close() error         { d.once.Do(func() { close(d.closed) }); return nil }

// waitWrite waits for the gateway's next Write (no timer: a timer allocates; the
// test binary's timeout catches a hang).
func (d *replayDevice) waitWrite() int { return <-d.wrote }

// tcpPacket is an IPv4 TCP segment serialized by gopacket.
func tcpPacket(src, dst netip.AddrPort, flags uint8, seq, ack uint32, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack,
		SYN: flags&packet.TCPSyn != 0, ACK: flags&packet.TCPAck != 0, PSH: flags&packet.TCPPsh != 0, Window: 65535}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp, gopacket.Payload(payload))
	return buf.Bytes()
}

// TestPumpAllocs: forwarding packets of an established connection allocates
// nothing, with and without NAT, on the plain and the headroom path.
func TestPumpAllocs(t *testing.T) {
	client := netip.MustParseAddrPort("198.18.0.2:40000")
	server := netip.MustParseAddrPort("198.19.0.2:5201")
	const batch = 16
	for _, tc := range []struct {
		name          string
		nat, offloads bool
	}{
		{"plain", false, false},
		{"nat", true, false},
		{"nat headroom", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := policy.Default()
			pol.NAT.Enabled = tc.nat
			pol.NAT.Outside = []netip.Addr{lab.NATAddr4, lab.NATAddr6}
			eng, err := policy.NewEngine(pol)
			if err != nil {
				t.Fatal(err)
			}
			// Establish the connection: SYN out, SYN/ACK back (to the NAT
			// address under NAT), ACK out.
			now := time.Now()
			res := new(policy.Result)
			eng.Process(tcpPacket(client, server, packet.TCPSyn, 100, 0, nil), policy.Outbound, now, res)
			if res.Verdict != policy.Forward {
				t.Fatalf("SYN: %v %v", res.Verdict, res.Reason)
			}
			to := res.Info.Src
			eng.Process(tcpPacket(server, netip.AddrPortFrom(to, res.Info.SrcPort), packet.TCPSyn|packet.TCPAck, 500, 101, nil), policy.Inbound, now, res)
			if res.Verdict != policy.Forward {
				t.Fatalf("SYN/ACK: %v %v", res.Verdict, res.Reason)
			}
			data := tcpPacket(client, server, packet.TCPAck|packet.TCPPsh, 101, 501, make([]byte, 1000))
			inside := newReplayDevice(data, batch, tc.offloads)
			outside := newReplayDevice(nil, batch, tc.offloads)
			gw, err := gateway.New(gateway.Config{Inside: inside, Outside: outside, Engine: eng, TickInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- gw.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			forward := func() {
				inside.next <- struct{}{}
				if n := outside.waitWrite(); n != batch {
					t.Fatalf("the gateway wrote %d packets of a batch of %d", n, batch)
				}
			}
			forward() // warm up: buffers, first rewrite
			if allocs := testing.AllocsPerRun(200, forward); allocs != 0 {
				t.Errorf("%.1f allocations per batch of %d forwarded packets, want 0", allocs, batch)
			}
			if st := eng.Stats(); st.Verdicts[policy.Forward] < 200*batch {
				t.Errorf("engine forwarded %d packets, want at least %d", st.Verdicts[policy.Forward], 200*batch)
			}
		})
	}
}

// TestFastGSOThroughGateway: a bulk TCP transfer echoed back through the gateway on
// the fast device crosses as GSO super-packets (more than the MTU per packet), each
// through the engine, and arrives byte for byte, with NAT off and on.
//
//	 e2e-XXXXXX-client                gateway (fast devices)               e2e-XXXXXX-server
//	+-----------------+  super-pkts  +------------------------------+  super-pkts  +------------------+
//	| dialer, 8 MiB   |============> | Engine.Process per super-pkt |============> | echo listener    |
//	| reads the echo  |<============ | (NAT to 198.19.0.1 when on)  |<============ |                  |
//	+-----------------+              +------------------------------+              +------------------+
func TestFastGSOThroughGateway(t *testing.T) {
	if err := tun.FastAvailable(); err != nil && os.Geteuid() == 0 {
		t.Skipf("no fast device here: %v", err)
	}
	for _, nat := range []bool{false, true} {
		name := map[bool]string{false: "nat off", true: "nat on"}[nat]
		t.Run(name, func(t *testing.T) {
			t.Run(lab.DeviceFast, func(t *testing.T) {
				t.Parallel()
				pol := policy.Default()
				pol.NAT.Enabled = nat
				pol.NAT.Outside = []netip.Addr{lab.NATAddr4, lab.NATAddr6}
				run := startLab(t, pol)
				for _, fam := range []family{ipv4, ipv6} {
					srv := listenEcho(t, run, fam.server)
					c := mustDial(t, run, srv.addr, net.Dialer{})
					c.SetDeadline(time.Now().Add(60 * time.Second))
					peer := <-srv.peers
					if wantNAT := netip.AddrPortFrom(fam.nat, 0); nat && peer.Addr() != wantNAT.Addr() {
						t.Errorf("%s: server saw the client as %v, want %v", fam.name, peer, fam.nat)
					} else if !nat && peer != localAddr(c) {
						t.Errorf("%s: server saw the client as %v, want %v", fam.name, peer, localAddr(c))
					}
					want := make([]byte, 8<<20)
					rand.Read(want)
					werr := make(chan error, 1)
					go func() {
						_, err := c.Write(want)
						werr <- errors.Join(err, c.CloseWrite())
					}()
					got, err := io.ReadAll(c)
					if err != nil {
						t.Fatalf("%s: read the echo: %v (got %d bytes)", fam.name, err, len(got))
					}
					if err := <-werr; err != nil {
						t.Fatalf("%s: write: %v", fam.name, err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("%s: echo differs from what was sent: got %d bytes, want %d", fam.name, len(got), len(want))
					}
				}
				cst := run.Lab.Client.Dev.(*tun.FastDevice).Stats()
				sst := run.Lab.Server.Dev.(*tun.FastDevice).Stats()
				gst := run.Gateway.Stats()
				t.Logf("client device %+v; server device %+v", cst, sst)
				t.Logf("gateway inside %+v; outside %+v", gst[policy.Inside], gst[policy.Outside])
				if cst.SuperPackets == 0 || sst.SuperPackets == 0 {
					t.Errorf("super-packets read: client side %d, server side %d; want some each way", cst.SuperPackets, sst.SuperPackets)
				}
				for side, s := range gst {
					if s.RxPackets == 0 || s.RxBytes/s.RxPackets <= uint64(lab.DefaultMTU) {
						t.Errorf("%v side: %d bytes in %d packets, want more than the MTU per packet on average", policy.Side(side), s.RxBytes, s.RxPackets)
					}
					if s.WriteErrors != 0 {
						t.Errorf("%v side: %d write errors", policy.Side(side), s.WriteErrors)
					}
				}
				st := run.Engine.Stats()
				for _, r := range []policy.Reason{policy.ReasonMalformed, policy.ReasonInvalid, policy.ReasonOrphan, policy.ReasonNATNoMapping} {
					if n := st.Reasons[r]; n != 0 {
						t.Errorf("%d packets with reason %s", n, r)
					}
				}
				// Router solicitations and MLD reports of the new links are dropped
				// (not-forwarded); nothing else is.
				if n := st.Verdicts[policy.Drop] - st.Reasons[policy.ReasonNotForwarded]; n != 0 {
					t.Errorf("%d packets dropped: %v", n, st.ReasonCounts())
				}
			})
		})
	}
}

package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/tun"
)

// tcp4 builds an IPv4 TCP segment with valid checksums.
func tcp4(t *testing.T, src, dst netip.AddrPort, flags uint8, seq, ack uint32, payload []byte) []byte {
	t.Helper()
	return tcp4TTL(t, 64, src, dst, flags, seq, ack, payload)
}

// tcp4TTL is tcp4 with the TTL given: 63 is tcp4's packet after the gateway's hop.
func tcp4TTL(t *testing.T, ttl uint8, src, dst netip.AddrPort, flags uint8, seq, ack uint32, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{
		Version: 4, TTL: ttl, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice(),
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: seq, Ack: ack, Window: 64240,
		FIN: flags&packet.TCPFin != 0, SYN: flags&packet.TCPSyn != 0, RST: flags&packet.TCPRst != 0,
		PSH: flags&packet.TCPPsh != 0, ACK: flags&packet.TCPAck != 0,
	}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// receive waits for the next packet a device wrote.
func receive(t *testing.T, what string, c <-chan []byte) []byte {
	t.Helper()
	select {
	case p := <-c:
		return p
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing came out within 5s", what)
		return nil
	}
}

// TestGatewayInMemory runs the whole pump between two in-memory devices: a SYN from
// the inside comes out on the outside, the SYN-ACK comes back, an orphan under
// orphan: reset is answered with a RST toward the inside, and Run returns after
// cancel.
func TestGatewayInMemory(t *testing.T) {
	pol := policy.Default()
	pol.Orphan = policy.OrphanReset
	eng, err := policy.NewEngine(pol)
	if err != nil {
		t.Fatal(err)
	}
	inside, outside := tun.NewChannel("inside", 0), tun.NewChannel("outside", 0)
	gw, err := gateway.New(gateway.Config{Inside: inside, Outside: outside, Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})

	client := netip.MustParseAddrPort("198.18.0.2:40000")
	server := netip.MustParseAddrPort("198.19.0.2:80")

	// Each crosses as a router forwards it: the TTL one lower, the header checksum
	// what a fresh computation gives, nothing else changed.
	syn := tcp4(t, client, server, packet.TCPSyn, 1000, 0, nil)
	inside.Inbound <- syn
	if got, want := receive(t, "SYN from the inside", outside.Outbound), tcp4TTL(t, 63, client, server, packet.TCPSyn, 1000, 0, nil); !bytes.Equal(got, want) {
		t.Fatalf("SYN came out on the outside as\n got %x\nwant %x", got, want)
	}
	synAck := tcp4(t, server, client, packet.TCPSyn|packet.TCPAck, 5000, 1001, nil)
	outside.Inbound <- synAck
	if got, want := receive(t, "SYN-ACK from the outside", inside.Outbound), tcp4TTL(t, 63, server, client, packet.TCPSyn|packet.TCPAck, 5000, 1001, nil); !bytes.Equal(got, want) {
		t.Fatalf("SYN-ACK came out on the inside as\n got %x\nwant %x", got, want)
	}

	// A data segment of a connection the gateway never saw.
	stranger := netip.MustParseAddrPort("198.18.0.2:40001")
	orphan := tcp4(t, stranger, server, packet.TCPAck|packet.TCPPsh, 7000, 9000, []byte("hello"))
	inside.Inbound <- orphan
	rst := receive(t, "answer to the orphan", inside.Outbound)
	var info packet.Info
	if err := packet.Decode(rst, &info); err != nil {
		t.Fatalf("injected packet does not decode: %v (%x)", err, rst)
	}
	if !packet.ChecksumsValid(rst, &info) {
		t.Errorf("injected RST has a bad checksum: %x", rst)
	}
	p := gopacket.NewPacket(rst, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil {
		t.Fatalf("injected packet is not IPv4 TCP: %v", p)
	}
	from := netip.AddrPortFrom(netip.MustParseAddr(ip.SrcIP.String()), uint16(tcp.SrcPort))
	to := netip.AddrPortFrom(netip.MustParseAddr(ip.DstIP.String()), uint16(tcp.DstPort))
	if !tcp.RST || tcp.SYN || tcp.FIN || from != server || to != stranger || tcp.Seq != 9000 || len(tcp.Payload) != 0 {
		t.Errorf("injected %v -> %v RST=%v SYN=%v FIN=%v seq=%d payload=%d; want RST %v -> %v seq 9000 (the orphan's ack), no payload",
			from, to, tcp.RST, tcp.SYN, tcp.FIN, tcp.Seq, len(tcp.Payload), server, stranger)
	}
	select {
	case leaked := <-outside.Outbound:
		t.Errorf("the orphan leaked to the outside: %x", leaked)
	case <-time.After(100 * time.Millisecond):
	}
	if st := gw.Stats(); st[policy.Inside].Injected != 1 || st[policy.Outside].Injected != 0 {
		t.Errorf("injected counters inside %d, outside %d; want 1 and 0", st[policy.Inside].Injected, st[policy.Outside].Injected)
	}

	cancel()
	stopped = true
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
	if _, err := inside.Write([][]byte{syn}, 0); err == nil {
		t.Error("the inside device is still open after Run returned")
	}
}

// TestSetPcapSamePath: starting a recording to the file being recorded is refused
// without force (the recording goes on); with force it replaces the file with a whole,
// readable one that holds only what came after the restart (the old recording's last
// buffered packets must not land in it).
func TestSetPcapSamePath(t *testing.T) {
	eng, err := policy.NewEngine(policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	inside, outside := tun.NewChannel("inside", 0), tun.NewChannel("outside", 0)
	gw, err := gateway.New(gateway.Config{Inside: inside, Outside: outside, Engine: eng, TickInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "run.pcapng")
	if _, err := gw.SetPcap(path, false, control.Filter{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	client := netip.MustParseAddrPort("198.18.0.2:40000")
	server := netip.MustParseAddrPort("198.19.0.2:80")
	// Several packets before the restart, so that the first recording has buffered
	// bytes to flush when it closes.
	for i := range 20 {
		inside.Inbound <- tcp4(t, netip.AddrPortFrom(client.Addr(), uint16(41000+i)), server, packet.TCPSyn, 1000, 0, make([]byte, 200))
		receive(t, "SYN before the restart", outside.Outbound)
	}
	if _, err := gw.SetPcap(path, false, control.Filter{}); !errors.Is(err, capture.ErrRefused) {
		t.Fatalf("SetPcap to the same path without force: %v, want capture.ErrRefused", err)
	}
	if got := gw.PcapPath(); got != path {
		t.Fatalf("after a refused restart the gateway records to %q, want %q still", got, path)
	}
	ended, err := gw.SetPcap(path, true, control.Filter{})
	if err != nil {
		t.Fatalf("SetPcap to the same path with force: %v", err)
	}
	if ended.Path != path || ended.Packets != 20 || ended.Error != "" {
		t.Errorf("the replaced recording ended as %+v, want 20 packets in %s", ended, path)
	}
	inside.Inbound <- tcp4(t, client, server, packet.TCPSyn, 1000, 0, nil)
	receive(t, "SYN after the restart", outside.Outbound)
	if ended, err := gw.SetPcap("", false, control.Filter{}); err != nil || ended.Packets != 1 {
		t.Fatalf("stop: %+v, %v; want 1 packet", ended, err)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("open the restarted recording: %v", err)
	}
	var ports []uint16
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read packet %d of the restarted recording: %v", len(ports)+1, err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeIPv4, gopacket.Default)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			t.Fatalf("packet %d is not TCP: %v", len(ports)+1, p)
		}
		ports = append(ports, uint16(tcp.SrcPort))
	}
	if len(ports) != 1 || ports[0] != client.Port() {
		t.Errorf("the restarted recording holds packets from source ports %v, want only %d", ports, client.Port())
	}
}

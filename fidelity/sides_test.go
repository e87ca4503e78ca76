package fidelity

// The two sides the same traffic takes, and what a case may do on either:
//
//	 kernel side                                  idlegate side
//	 fidkNNNN-client --veth-- fidkNNNN-router     fidlNNNN-client --TUN-- gateway (this
//	   --veth-- fidkNNNN-server                     process, linux-conntrack) --TUN--
//	 router: ip_forward, nftables forward chain     fidlNNNN-server
//	   `policy accept; ct state invalid counter`
//	   (conntrack on, no rule drops anything),
//	   nf_conntrack_* sysctls = the lab's timeouts
//	 conntrack -E -o timestamp: the kernel's      Engine.Subscribe: idlegate's events
//	   events; a netlink dump every 100 ms reaps
//	   expired entries on time
//
// Both sides have the lab's addresses: client 198.18.0.2, server 198.19.0.2, the
// router (gateway) 198.18.0.1 toward the client. Nothing leaves these namespaces.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
)

var (
	clientAddr = lab.ClientAddr4
	serverAddr = lab.ServerAddr4
	routerAddr = lab.RouterAddr4
)

// side is one path: its client and server namespaces, its event recorder, and how
// to forget a connection's entry (conntrack -D; Engine.Delete).
type side struct {
	name           string
	client, server string
	rec            *recorder
	forget         func(port uint16) error
}

// env is one side's run of a case: T is the side's subtest (Fatal ends this side's
// traffic), port the case's port, later registers what must outlive the case's tail
// (closing its sockets would otherwise send FINs while its events are still
// collected).
type env struct {
	*testing.T
	s     *side
	port  uint16
	later func(func())
}

// nft loads a ruleset into namespace ns.
func nft(ns, ruleset string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := lab.StartIn(ns, cmd); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", ns, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// rawPorts are the client ports of the raw-socket client. The client namespace
// drops what its own kernel sends from them (the RSTs it answers segments of
// connections it knows nothing about with); the raw client marks its packets.
const (
	rawPortLo, rawPortHi = 31000, 31999
	rawMark              = 0x1f
)

// clientSetup prepares a client namespace: the raw client's rule and hostSetup.
func clientSetup(ns string) error {
	if err := nft(ns, clientRules()); err != nil {
		return err
	}
	return hostSetup(ns)
}

// hostSetup makes the TCP of a client or server namespace retransmit on timers
// that do not race the two sides' conntracks: exponential SYN retransmissions (1,
// 3, 7 s) instead of Linux 6's first four a second apart (tcp_syn_linear_timeouts),
// which would land each on a whole-second SYN_SENT expiry; and no tail loss probe
// (tcp_early_retrans), which retransmits a FIN some milliseconds after it when the
// peer delays its ACK, on one side and not the other, as their round trips differ
// (a second FIN in FIN_WAIT is LAST_ACK for both conntracks).
func hostSetup(ns string) error {
	return lab.Do(ns, func() error {
		for name, v := range map[string]string{"tcp_syn_linear_timeouts": "0", "tcp_early_retrans": "0"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/"+name, []byte(v+"\n"), 0); err != nil {
				return err
			}
		}
		return nil
	})
}

func clientRules() string {
	return fmt.Sprintf(`table inet fidraw {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp sport %d-%d meta mark != %#x drop
	}
}
`, rawPortLo, rawPortHi, rawMark)
}

// blackhole makes the server namespace drop every TCP segment to port: a server
// that is gone (or never answers).
func (e *env) blackhole() error {
	port := e.port
	return nft(e.s.server, fmt.Sprintf(`table inet fidbh%d {
	chain in {
		type filter hook input priority 0; policy accept;
		tcp dport %d drop
	}
}
`, port, port))
}

// watchKernel records the router's conntrack events (conntrack -E) and dumps its
// table every 100 ms so that expired entries are destroyed, and reported, on time:
// the kernel otherwise reaps them lazily, seconds late. It returns once conntrack -E
// is known to listen.
func watchKernel(t *testing.T, router string, rec *recorder) {
	t.Helper()
	cmd := exec.Command("conntrack", "-E", "-o", "timestamp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.StartIn(router, cmd); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			e, err := parseConntrackEvent(sc.Text())
			if err != nil {
				continue
			}
			if e.dport == probePort {
				once.Do(func() { close(ready) })
				continue
			}
			rec.add(e)
		}
	}()
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		cmd.Process.Kill() // by its pid: conntrack -E outlives its namespace
		cmd.Wait()
		<-done
	})
	// A userspace entry for a tuple no case uses tells when the listener is up.
	deadline := time.After(10 * time.Second)
	for {
		probe := exec.Command("conntrack", "-I", "-s", "198.18.0.250", "-d", "198.19.0.250", "-p", "udp",
			"--sport", strconv.Itoa(probePort), "--dport", strconv.Itoa(probePort), "--timeout", "1")
		probe.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := lab.StartIn(router, probe); err == nil {
			probe.Wait()
		}
		select {
		case <-ready:
			go reap(t, router, stop)
			return
		case <-time.After(300 * time.Millisecond):
		case <-deadline:
			t.Fatal("conntrack -E in the router namespace reported nothing in 10 s")
		}
	}
}

const probePort = 9

// reap dumps the router's conntrack table every 100 ms until stop: a dump destroys
// the expired entries it meets (ctnetlink_dump_table), which conntrack -E reports.
func reap(t *testing.T, router string, stop <-chan struct{}) {
	ns, err := lab.OpenNetns(router)
	if err != nil {
		t.Error(err)
		return
	}
	defer ns.Close()
	// A NETLINK_NETFILTER socket made inside the router's namespace (Netns.Netlink
	// is NETLINK_ROUTE only); it stays there, and is used from this goroutine.
	var h *netlink.Handle
	if err := ns.Run(func() (err error) {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
		return err
	}); err != nil {
		t.Error(err)
		return
	}
	defer h.Close()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		}
	}
}

// kernelForget deletes the router's entries of port, as conntrack -D does.
func kernelForget(router string) func(port uint16) error {
	return func(port uint16) error {
		cmd := exec.Command("conntrack", "-D", "-p", "tcp", "--dport", strconv.Itoa(int(port)))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := lab.StartIn(router, cmd); err != nil {
			return err
		}
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("conntrack -D --dport %d: %v: %s", port, err, out.String())
		}
		return nil
	}
}

// watchEngine records the engine's events.
func watchEngine(t *testing.T, e *policy.Engine, rec *recorder) {
	sub := e.Subscribe(1 << 14)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range sub.C {
			if x, ok := fromEngine(ev); ok {
				rec.add(x)
			}
		}
	}()
	t.Cleanup(func() {
		if n := sub.Dropped(); n > 0 {
			t.Errorf("the event subscription lost %d events", n)
		}
		sub.Close()
		<-done
	})
}

func engineForget(e *policy.Engine, now func() time.Time) func(port uint16) error {
	return func(port uint16) error {
		n := e.Delete(now(), func(x *conntrack.EntryInfo) bool { return x.Orig.DstPort == port })
		if n == 0 {
			return fmt.Errorf("no entry for port %d to delete", port)
		}
		return nil
	}
}

// The servers and clients a case uses, on one side.

// listen accepts TCP connections on port in the server namespace and hands each to
// handle; it stops at the end of the test.
func (e *env) listen(handle func(c *net.TCPConn)) {
	e.Helper()
	var ln net.Listener
	lc := net.ListenConfig{KeepAlive: -1} // Go would probe idle accepted connections every 15 s
	if err := lab.Do(e.s.server, func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(serverAddr, e.port).String())
		return err
	}); err != nil {
		e.Fatalf("%s: listen on %d: %v", e.s.name, e.port, err)
	}
	e.later(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.later(func() { c.Close() })
			go handle(c.(*net.TCPConn))
		}
	}()
}

// echo echoes until EOF, waits settle, then closes.
func echo(settle time.Duration) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		io.Copy(c, c)
		time.Sleep(settle)
		c.Close()
	}
}

// dial connects from the client namespace to the case's port (from local port lport,
// if not 0), with keepalive off unless ka says otherwise.
func (e *env) dial(lport uint16, ka *net.KeepAliveConfig) (*net.TCPConn, error) {
	e.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	if ka != nil {
		d.KeepAliveConfig = *ka
	}
	if lport != 0 {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientAddr, lport))
	}
	var c net.Conn
	err := lab.Do(e.s.client, func() (err error) {
		c, err = d.Dial("tcp4", netip.AddrPortFrom(serverAddr, e.port).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	e.later(func() { c.Close() })
	return c.(*net.TCPConn), nil
}

func (e *env) mustDial(ka *net.KeepAliveConfig) *net.TCPConn {
	e.Helper()
	c, err := e.dial(0, ka)
	if err != nil {
		e.Fatalf("%s: dial %d: %v", e.s.name, e.port, err)
	}
	return c
}

// roundTrip writes msg and reads its echo.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, buf, err)
	}
}

// reset closes c with an RST (SO_LINGER 0).
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// udpServer reads the datagrams to the case's port and, if answer, answers each.
func (e *env) udpServer(answer bool) {
	e.Helper()
	var c *net.UDPConn
	if err := lab.Do(e.s.server, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(serverAddr, e.port)))
		return err
	}); err != nil {
		e.Fatal(err)
	}
	e.later(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if answer {
				c.WriteToUDPAddrPort([]byte("answer"), from)
			}
		}
	}()
}

// udpClient is a UDP socket in the client namespace, connected to the server's port,
// with the IPv4 TTL ttl (0: the default).
func (e *env) udpClient(ttl int) *net.UDPConn {
	e.Helper()
	var c *net.UDPConn
	if err := lab.Do(e.s.client, func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(serverAddr, e.port)))
		return err
	}); err != nil {
		e.Fatal(err)
	}
	e.later(func() { c.Close() })
	if ttl > 0 {
		rc, _ := c.SyscallConn()
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl) })
	}
	return c
}

// icmpConn is a raw ICMP socket in the client namespace.
func (e *env) icmpConn() net.PacketConn {
	e.Helper()
	var c net.PacketConn
	if err := lab.Do(e.s.client, func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", clientAddr.String())
		return err
	}); err != nil {
		e.Fatal(err)
	}
	e.later(func() { c.Close() })
	return c
}

// ping sends one echo request with the case's port as identifier and waits for its
// reply.
func (e *env) ping() {
	e.Helper()
	id := e.port
	c := e.icmpConn()
	m := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'p', 'i', 'n', 'g'}
	binary.BigEndian.PutUint16(m[2:], packet.Checksum(m, 0))
	if _, err := c.WriteTo(m, &net.IPAddr{IP: net.IP(serverAddr.AsSlice())}); err != nil {
		e.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			e.Fatalf("%s: no echo reply: %v", e.s.name, err)
		}
		if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id {
			return
		}
	}
}

// rawConn is a TCP client written by hand on a raw socket in the client namespace,
// for the segments a socket would not send: an inexact or out-of-window RST, a
// SYN-FIN, a SYN reusing a tuple in TIME_WAIT, a SYN whose SYN-ACK it never answers.
// Its port is in [rawPortLo, rawPortHi] unless the kernel's own RSTs must go out.
type rawConn struct {
	t              *testing.T
	side           *side
	ip             *net.IPConn
	lport, port    uint16
	isn            uint32
	sndNxt, rcvNxt uint32
	rx             chan seg
}

// seg is a received TCP segment.
type seg struct {
	flags    uint8
	seq, ack uint32
	win      uint16
	payload  int
}

func (g seg) end() uint32 {
	e := g.seq + uint32(g.payload)
	if g.flags&(packet.TCPSyn) != 0 {
		e++
	}
	if g.flags&packet.TCPFin != 0 {
		e++
	}
	return e
}

func (e *env) raw(lport uint16, isn uint32) *rawConn {
	e.Helper()
	t, s, port := e.T, e.s, e.port
	var c net.PacketConn
	if err := lab.Do(s.client, func() (err error) {
		c, err = net.ListenPacket("ip4:tcp", clientAddr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ip := c.(*net.IPConn)
	rc, _ := ip.SyscallConn()
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, rawMark) })
	r := &rawConn{t: t, side: s, ip: ip, lport: lport, port: port, isn: isn, sndNxt: isn, rx: make(chan seg, 64)}
	e.later(func() { ip.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := ip.ReadFrom(buf)
			if err != nil {
				return
			}
			b := buf[:n]
			if n < 20 || binary.BigEndian.Uint16(b[0:]) != port || binary.BigEndian.Uint16(b[2:]) != lport {
				continue
			}
			g := seg{flags: b[13], seq: binary.BigEndian.Uint32(b[4:]), ack: binary.BigEndian.Uint32(b[8:]),
				win: binary.BigEndian.Uint16(b[14:]), payload: n - int(b[12]>>4)*4}
			select {
			case r.rx <- g:
			default:
			}
		}
	}()
	return r
}

// sendSeg sends one segment. wscale >= 0 adds MSS, SACK permitted and that window
// scale option (a SYN as Linux sends it, less timestamps).
func (r *rawConn) sendSeg(flags uint8, seq, ack uint32, win uint16, wscale int, payload []byte) {
	r.t.Helper()
	var opts []byte
	if wscale >= 0 {
		opts = []byte{2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, byte(wscale), 1, 1}
	}
	hl := 20 + len(opts)
	b := make([]byte, hl+len(payload))
	binary.BigEndian.PutUint16(b[0:], r.lport)
	binary.BigEndian.PutUint16(b[2:], r.port)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = byte(hl/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], win)
	copy(b[20:], opts)
	copy(b[hl:], payload)
	binary.BigEndian.PutUint16(b[16:], packet.Checksum(b, packet.PseudoHeaderSum(clientAddr, serverAddr, packet.ProtoTCP, len(b))))
	if _, err := r.ip.WriteTo(b, &net.IPAddr{IP: net.IP(serverAddr.AsSlice())}); err != nil {
		r.t.Fatalf("%s: raw send: %v", r.side.name, err)
	}
}

// send sends flags with the connection's next sequence numbers and advances them.
func (r *rawConn) send(flags uint8, payload string) {
	r.t.Helper()
	ack := uint32(0)
	if flags&packet.TCPAck != 0 {
		ack = r.rcvNxt
	}
	r.sendSeg(flags, r.sndNxt, ack, 1000, -1, []byte(payload))
	r.sndNxt += uint32(len(payload))
	if flags&(packet.TCPSyn|packet.TCPFin) != 0 {
		r.sndNxt++
	}
}

// expect waits up to 3 s for a segment with all of flags set, and takes its end as
// rcv.nxt.
func (r *rawConn) expect(flags uint8) seg {
	r.t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case g := <-r.rx:
			if g.flags&flags != flags {
				continue
			}
			if after := g.end(); int32(after-r.rcvNxt) > 0 || r.rcvNxt == 0 {
				r.rcvNxt = after
			}
			return g
		case <-timeout:
			r.t.Fatalf("%s: no segment with flags %#x from port %d", r.side.name, flags, r.port)
			return seg{}
		}
	}
}

// handshake opens the connection: SYN (with window scale 7), SYN-ACK, ACK.
func (r *rawConn) handshake() seg {
	r.t.Helper()
	r.sendSeg(packet.TCPSyn, r.isn, 0, 64240, 7, nil)
	r.sndNxt = r.isn + 1
	sa := r.expect(packet.TCPSyn | packet.TCPAck)
	r.send(packet.TCPAck, "")
	return sa
}

// errIs reports whether err is errno.
func errIs(err error, errno syscall.Errno) bool { return errors.Is(err, errno) }

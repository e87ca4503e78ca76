package replay

// A capture taken by the live gateway, replayed with the same policy, must give every
// packet the verdict the gateway gave it (the pcapng's comments).
//
//	  NAME-client netns               gateway.StartLab (this process)          NAME-server netns
//	+--------------------+          +-------------------------------+        +--------------------+
//	| gw0 198.18.0.2     |   TUN    | aws-nat-gateway x 0.004:      |  TUN   | gw0 198.19.0.2     |
//	| conn A: idle 2.5 s |<========>| established 1.4 s, orphan     |<======>| echo on :7000      |
//	|   then writes      |          | reset, NAT 198.19.0.1         |        | (net.Listen inside |
//	| conn B: busy       |          | --pcap live.pcapng            |        |  lab.Do)           |
//	+--------------------+          +-------------------------------+        +--------------------+
//
// Then Run replays live.pcapng through the same profile at the same scale. A second
// case picks the late write up under NAT (orphan: pickup): it leaves by a new port and
// the server's kernel resets it, which replay reports as nat-remap.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// needRoot skips a test that needs root, except in CI, where a skip would hide it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root for network namespaces, and CI must not skip it: run the tests as root")
	}
	t.Skip("needs root for network namespaces; run as root (CI=true makes this a failure)")
}

// verdict is what the gateway, or a replay, said about one packet.
type verdict struct {
	v   policy.Verdict
	r   policy.Reason
	dir policy.Dir
}

func (v verdict) String() string { return v.v.String() + " " + v.r.String() + " " + v.dir.String() }

func TestReplayMatchesLiveGateway(t *testing.T) {
	needRoot(t)
	// The NAT answers the late write with a RST (orphan reset), or picks it up with a
	// new outside port and the server's kernel answers the stranger with a RST.
	t.Run("orphan-reset", func(t *testing.T) { liveCase(t, policy.OrphanReset, Reset, "orphan") })
	t.Run("nat-remap", func(t *testing.T) { liveCase(t, policy.OrphanPickup, NATRemap, "pickup") })
}

func liveCase(t *testing.T, orphan policy.Orphan, outcome Outcome, reason string) {
	const scale = 0.004 // 350 s -> 1.4 s
	real, err := policy.ProfilePolicy("aws-nat-gateway")
	if err != nil {
		t.Fatal(err)
	}
	real.Orphan = orphan
	pol, err := real.Scale(scale)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	name := "rpl-" + hex.EncodeToString(b)
	base, err := os.MkdirTemp("", "ig-")
	if err != nil {
		t.Fatal(err)
	}
	pcapPath := filepath.Join(base, "live.pcapng")
	t.Cleanup(func() {
		if t.Failed() {
			kept := filepath.Join(os.TempDir(), name+".pcapng")
			if os.Rename(pcapPath, kept) == nil {
				t.Logf("the live capture is kept in %s", kept)
			}
		}
		os.RemoveAll(base)
	})
	t.Cleanup(func() { lab.Cleanup(name, base) })
	run, err := gateway.StartLab(context.Background(), lab.Config{Name: name, RunBase: base}, pol, gateway.LabOptions{Pcap: pcapPath})
	if err != nil {
		t.Fatalf("StartLab: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			run.Stop()
		}
	})

	// An echo server in the server namespace.
	var ln net.Listener
	if err := lab.Do(run.Lab.Server.Namespace, func() (err error) {
		ln, err = net.Listen("tcp", "198.19.0.2:7000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var served []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			served = append(served, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	dial := func() net.Conn {
		var c net.Conn
		err := lab.Do(run.Lab.Client.Namespace, func() (err error) {
			d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1} // no keepalive: the idle gap must stay silent
			c, err = d.Dial("tcp", "198.19.0.2:7000")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	echo := func(c net.Conn, msg string) error {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		_, err := io.ReadFull(c, buf)
		return err
	}

	a, bConn := dial(), dial()
	if err := echo(a, "hello"); err != nil {
		t.Fatalf("A: %v", err)
	}
	done := make(chan error, 1)
	go func() { // B talks every 400 ms, under the 1.4 s timeout
		for i := 0; i < 7; i++ {
			if err := echo(bConn, "tick"); err != nil {
				done <- err
				return
			}
			time.Sleep(400 * time.Millisecond)
		}
		done <- bConn.Close()
	}()
	time.Sleep(2500 * time.Millisecond) // A idles past 1.4 s
	errA := echo(a, "again")
	if !errors.Is(errA, syscall.ECONNRESET) {
		t.Errorf("A after the idle gap: %v, want ECONNRESET", errA)
	}
	if err := <-done; err != nil {
		t.Errorf("B: %v", err)
	}
	a.Close()
	time.Sleep(200 * time.Millisecond)
	ln.Close()
	stopped = true
	if err := run.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	// The server never learnt that A died (the NAT reset the client only).
	mu.Lock()
	for _, c := range served {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()

	// What the gateway said about each packet it read.
	capt, err := os.ReadFile(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	live := map[int]verdict{}
	cr, err := capture.NewReader(bytes.NewReader(capt))
	if err != nil {
		t.Fatal(err)
	}
	var rec capture.Record
	for n := 1; ; n++ {
		err := cr.Next(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Kind == capture.Arrival {
			live[n] = verdict{rec.Verdict, rec.Reason, rec.Dir}
		}
	}
	if len(live) < 10 {
		t.Fatalf("only %d packets crossed the gateway", len(live))
	}

	replayed := map[int]verdict{}
	rep, err := Run(pcapPath, bytes.NewReader(capt), Options{
		Profiles: []Profile{{Name: "aws-nat-gateway", Policy: real}},
		Scale:    scale,
		Trace: func(p PacketTrace) {
			replayed[p.Number] = verdict{p.Verdict, p.Reason, p.Dir}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Direction != DirInterfaces {
		t.Errorf("direction %s, want the capture's interfaces", rep.Direction)
	}
	for n, want := range live {
		if got, ok := replayed[n]; !ok || got != want {
			t.Errorf("packet %d: the gateway said %v, replay says %v", n, want, got)
		}
	}
	if len(replayed) != len(live) {
		t.Errorf("replayed %d packets, the gateway read %d", len(replayed), len(live))
	}
	// Per flow: A reset at its late write, B survived.
	var sawReset, sawSurvivor bool
	for i, fr := range rep.Profiles[0].Flows {
		f := rep.Flows[i]
		if f.Proto != "tcp" || f.Outside != "198.19.0.2:7000" {
			continue
		}
		switch fr.Outcome {
		case outcome:
			sawReset = fr.Reason == reason && fr.Idle > 1.4 && near(fr.Timeout, 1400*time.Millisecond)
		case Survived:
			sawSurvivor = true
		}
	}
	if !sawReset || !sawSurvivor || rep.Profiles[0].Broken != 1 {
		var text bytes.Buffer
		rep.Text(&text, true)
		t.Errorf("want one flow %s after its idle gap and one survivor:\n%s", outcome, text.String())
	}
	if testing.Verbose() {
		var text bytes.Buffer
		rep.Text(&text, true)
		t.Log("\n" + text.String())
	}
}

package idlegatetest_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/idlegatetest"
)

// Expire fast-forwards an idle period: under Linux's defaults a TCP connection lives
// 5 days idle, and Expire ends it now, exactly as the timeout would, without waiting.
// The gateway's events say what happened, and the next write meets its RST.
func ExampleLab_Expire() {
	lab, err := idlegatetest.Start(idlegatetest.Set("orphan", "reset"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()

	ln, err := lab.Listen("tcp", ":7000")
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c) // echo
		}
	}()
	c, err := lab.Dial("tcp", netip.AddrPortFrom(lab.ServerAddr(), 7000).String())
	if err != nil {
		fmt.Println(err)
		return
	}
	echo := func() error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 4))
		return err
	}
	fmt.Println("echo:", echo())

	n := lab.Expire(control.Filter{DPort: 7000})
	fmt.Println("expired:", n)
	for _, ev := range lab.Events() {
		if ev.Type == conntrack.EventDestroy {
			fmt.Println(ev.Type, ev.Orig.DstPort, ev.Reason)
		}
	}
	if err := echo(); errors.Is(err, syscall.ECONNRESET) {
		fmt.Println("echo after expiry: connection reset by peer")
	} else {
		fmt.Println("echo after expiry:", err)
	}
	// Output:
	// echo: <nil>
	// expired: 1
	// DESTROY 7000 expired
	// echo after expiry: connection reset by peer
}

// Table is the gateway's connection table as conntrack -L shows it. SetPolicy
// changes the running box: here its ESTABLISHED timeout, which applies at once to
// the connection already open, counted from its last packet.
func ExampleLab_Table() {
	lab, err := idlegatetest.Start(idlegatetest.Profile("azure-lb"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()

	ln, err := lab.Listen("tcp", ":8080")
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c)
		}
	}()
	c, err := lab.Dial("tcp", netip.AddrPortFrom(lab.ServerAddr(), 8080).String())
	if err != nil {
		fmt.Println(err)
		return
	}
	echo := func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("ping"))
		io.ReadFull(c, make([]byte, 4))
	}
	echo(c)
	for _, e := range lab.Table() {
		fmt.Println(conntrack.ProtoName(e.Proto), e.State, "port", e.Orig.DstPort, "timeout", e.Timeout)
	}

	if err := lab.SetPolicy(idlegatetest.Set("timeouts.tcp.established", "10m")); err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range lab.Table() {
		fmt.Println(conntrack.ProtoName(e.Proto), e.State, "port", e.Orig.DstPort, "timeout", e.Timeout)
	}
	// Output:
	// tcp ESTABLISHED port 8080 timeout 4m0s
	// tcp ESTABLISHED port 8080 timeout 10m0s
}

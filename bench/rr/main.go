// Command rr is a TCP request/response benchmark: the client sends a message of
// -size bytes and waits for the server to echo it back, on -conns connections
// at once, for -duration, then prints one JSON line with round trips per
// second and latency percentiles. It is what netperf's TCP_RR measures.
//
//	rr server -listen 198.19.0.2:7000
//	rr client -connect 198.19.0.2:7000 -size 64 -conns 1 -duration 10s
//
// Exit codes: 0 done, 1 a network failure, 2 bad usage. The server runs until
// it is killed.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// Result is the client's output line. Latencies are in microseconds, measured
// from the write of a request to the read of the last byte of its echo.
type Result struct {
	Conns      int     `json:"conns"`
	Size       int     `json:"size"`
	Seconds    float64 `json:"seconds"`
	RoundTrips int     `json:"round_trips"`
	PerSec     float64 `json:"per_sec"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	MaxUs      float64 `json:"max_us"`
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = server(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rr:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rr server -listen ADDR:PORT\n       rr client -connect ADDR:PORT [-size 64] [-conns 1] [-duration 10s]")
	os.Exit(2)
}

func server(args []string) error {
	fs := flag.NewFlagSet("rr server", flag.ExitOnError)
	listen := fs.String("listen", ":7000", "address to listen on")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			io.Copy(c, c) // echo every byte back as it arrives
		}()
	}
}

func client(args []string) error {
	fs := flag.NewFlagSet("rr client", flag.ExitOnError)
	connect := fs.String("connect", "", "server address ADDR:PORT")
	size := fs.Int("size", 64, "request and response size in bytes")
	conns := fs.Int("conns", 1, "connections, each with one request outstanding")
	dur := fs.Duration("duration", 10*time.Second, "how long to measure")
	fs.Parse(args)
	if *connect == "" || *size < 1 || *conns < 1 || *dur <= 0 {
		usage()
	}
	cs := make([]net.Conn, *conns)
	for i := range cs {
		c, err := net.DialTimeout("tcp", *connect, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		cs[i] = c
	}
	lats := make([][]time.Duration, *conns)
	errs := make([]error, *conns)
	start := time.Now()
	end := start.Add(*dur)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { lats[i], errs[i] = pingPong(c, *size, end) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	r := Result{Conns: *conns, Size: *size, Seconds: elapsed.Seconds(), RoundTrips: len(all)}
	if len(all) > 0 {
		r.PerSec = float64(len(all)) / elapsed.Seconds()
		r.P50us = us(percentile(all, 0.50))
		r.P99us = us(percentile(all, 0.99))
		r.MaxUs = us(all[len(all)-1])
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// pingPong does round trips on c until end and returns their latencies.
func pingPong(c net.Conn, size int, end time.Time) ([]time.Duration, error) {
	req := make([]byte, size)
	resp := make([]byte, size)
	lats := make([]time.Duration, 0, 1<<16)
	c.SetDeadline(end.Add(5 * time.Second)) // a lost echo fails the run instead of hanging it
	for {
		t0 := time.Now()
		if !t0.Before(end) {
			return lats, nil
		}
		if _, err := c.Write(req); err != nil {
			return lats, err
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return lats, err
		}
		lats = append(lats, time.Since(t0))
	}
}

// percentile is the nearest-rank percentile of sorted, 0 < p <= 1.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

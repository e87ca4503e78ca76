package idlegatetest_test

import (
	"bufio"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/idlegate/idlegate/idlegatetest"
)

// A database/sql pool keeps its idle connections open, and an AWS NAT gateway
// forgets a connection idle for 350 s: the next query on it meets the gateway's RST.
// The same pool dialing with the TCP keepalive that `idlegate advise` computes for
// the box keeps its connection. The lab runs the box's timeouts at a hundredth
// (350 s becomes 3.5 s) and Advice computes the keepalive for that; in production,
// Advice().RealKeepalive has the values for the real 350 s.
func Example() {
	lab, err := idlegatetest.Start(idlegatetest.Profile("aws-nat-gateway"), idlegatetest.TimeScale(0.01))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()

	// The database, in the server namespace: it answers each query upper-cased.
	ln, err := lab.Listen("tcp", ":5432")
	if err != nil {
		fmt.Println(err)
		return
	}
	go serve(ln)
	addr := netip.AddrPortFrom(lab.ServerAddr(), 5432).String()

	// Two pools of one connection each, whose driver dials with the net.Dialer it
	// is given, from the client namespace.
	ka := lab.Advice().Keepalive
	dialers := []struct {
		name   string
		dialer *net.Dialer
	}{
		{"no keepalive", &net.Dialer{KeepAlive: -1}},
		{"advised keepalive", &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: ka.Idle, Interval: ka.Interval, Count: ka.Count}}},
	}
	var pools []*sql.DB
	for _, d := range dialers {
		db := sql.OpenDB(connector{dial: func(ctx context.Context) (net.Conn, error) {
			return lab.DialWith(ctx, d.dialer, "tcp", addr)
		}})
		db.SetMaxOpenConns(1)
		defer db.Close()
		pools = append(pools, db)
	}

	query := func(db *sql.DB) string {
		var answer string
		err := db.QueryRow("select 1").Scan(&answer)
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			return "connection reset by peer"
		case err != nil:
			return err.Error()
		}
		return answer
	}
	for i, db := range pools {
		fmt.Printf("%s, first query: %s\n", dialers[i].name, query(db))
	}
	time.Sleep(lab.Advice().Timeout * 3 / 2) // the pools idle past the box's timeout
	for i, db := range pools {
		fmt.Printf("%s, after idling: %s\n", dialers[i].name, query(db))
	}
	// Output:
	// no keepalive, first query: SELECT 1
	// advised keepalive, first query: SELECT 1
	// no keepalive, after idling: connection reset by peer
	// advised keepalive, after idling: SELECT 1
}

// serve is the database: one line in, the line upper-cased out.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			lines := bufio.NewScanner(c)
			for lines.Scan() {
				fmt.Fprintln(c, strings.ToUpper(lines.Text()))
			}
		}()
	}
}

// connector is a database/sql driver for that database. Like real drivers (pgx's
// ConnConfig.DialFunc, lib/pq's Dialer) it dials with the function it is given, and
// like them it hands a network error to the caller once a query was sent: it cannot
// know whether the query ran.
type connector struct {
	dial func(context.Context) (net.Conn, error)
}

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, r: bufio.NewReader(nc)}, nil
}

func (c connector) Driver() driver.Driver { return c }

func (c connector) Open(string) (driver.Conn, error) {
	return nil, errors.New("open it with sql.OpenDB(connector{...})")
}

type conn struct {
	nc  net.Conn
	r   *bufio.Reader
	bad bool
}

func (c *conn) QueryContext(ctx context.Context, query string, _ []driver.NamedValue) (driver.Rows, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	c.nc.SetDeadline(deadline)
	if _, err := io.WriteString(c.nc, query+"\n"); err != nil {
		c.bad = true
		return nil, err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.bad = true
		return nil, err
	}
	return &rows{value: strings.TrimSuffix(line, "\n")}, nil
}

// IsValid tells the pool to discard a connection that failed.
func (c *conn) IsValid() bool { return !c.bad }

func (c *conn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("no prepared statements") }
func (c *conn) Begin() (driver.Tx, error)           { return nil, errors.New("no transactions") }
func (c *conn) Close() error                        { return c.nc.Close() }

type rows struct {
	value string
	done  bool
}

func (r *rows) Columns() []string { return []string{"answer"} }
func (r *rows) Close() error      { return nil }

func (r *rows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = r.value
	return nil
}

package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/idlegate/idlegate/policy"
)

// RunBase is where labs keep their run directories (lab.DefaultRunBase), and
// SocketFile the control socket's name in one.
const (
	RunBase    = "/run/idlegate"
	SocketFile = "control.sock"
)

// SocketPath is the control socket of lab name in RunBase.
func SocketPath(name string) string { return filepath.Join(RunBase, name, SocketFile) }

// Errors a caller branches on with errors.Is; each message says what to do.
var (
	// ErrNotRunning: no gateway answers for the lab (no socket, or a stale one).
	ErrNotRunning = errors.New("the lab's gateway is not running")
	// ErrPermission: the caller may not open the control socket (it is root's).
	ErrPermission = errors.New("the control socket is root's")
)

// Error is an answer of the API that is not a success: its HTTP status and its one
// sentence.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// labError is one of the sentinels said about one lab, in one sentence.
type labError struct {
	msg  string
	kind error
}

func (e *labError) Error() string { return e.msg }
func (e *labError) Unwrap() error { return e.kind }

// Client talks to one lab's gateway. Its methods are safe for concurrent use; each
// takes a context that bounds the request (for Events, the whole stream).
type Client struct {
	name   string // the lab, for messages ("" if unknown)
	socket string
	http   *http.Client
}

// Dial returns a client of lab name (in RunBase). It fails with ErrNotRunning if the
// lab has no control socket and with ErrPermission if the caller may not reach it;
// it sends nothing.
func Dial(name string) (*Client, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("lab name %q: a lab name is a-z, 0-9 and '-'", name)
	}
	c := New(SocketPath(name))
	c.name = name
	if _, err := os.Stat(c.socket); err != nil {
		return nil, c.statError(err)
	}
	return c, nil
}

// New returns a client of the control socket at path (a lab in another run base,
// or a test's). It sends nothing.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 2,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Socket is the path of the control socket.
func (c *Client) Socket() string { return c.socket }

func (c *Client) labName() string {
	if c.name != "" {
		return fmt.Sprintf("lab %q", c.name)
	}
	return "the lab at " + c.socket
}

func (c *Client) downHint() string {
	if c.name != "" {
		return "; `idlegate lab down --name " + c.name + "` removes what it left"
	}
	return ""
}

func (c *Client) statError(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return &labError{fmt.Sprintf("the control socket of %s is in %s, which only root may open: run this as root (sudo)", c.labName(), filepath.Dir(c.socket)), ErrPermission}
	case errors.Is(err, fs.ErrNotExist):
		if c.name != "" {
			return &labError{fmt.Sprintf("no lab named %q is running; start one with `idlegate lab up --name %s`", c.name, c.name), ErrNotRunning}
		}
		return &labError{fmt.Sprintf("no control socket at %s: is the lab running?", c.socket), ErrNotRunning}
	}
	return err
}

// connError explains a failure to reach the gateway.
func (c *Client) connError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
		return &labError{fmt.Sprintf("%s does not answer on its control socket (its gateway is not running)%s", c.labName(), c.downHint()), ErrNotRunning}
	case errors.Is(err, fs.ErrPermission):
		return c.statError(fs.ErrPermission)
	}
	return &labError{fmt.Sprintf("%s does not answer on its control socket (%v)%s", c.labName(), err, c.downHint()), ErrNotRunning}
}

// do sends a request to path with query q and JSON body in (if not nil), and decodes
// a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	resp, err := c.send(ctx, method, path, q, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: the gateway's answer does not decode: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns a successful response, whose body the caller
// closes, or the API's error.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	u := "http://lab" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.connError(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return nil, &Error{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

// Do sends a request for a route this package has no method for: method, path
// ("/v1/..."), query q and JSON body in (if not nil); it decodes the JSON answer
// into out (if not nil). An answer that is not a success is an *Error.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	return c.do(ctx, method, path, q, in, out)
}

// DoRaw is Do that copies the answer's body to w as it is (YAML, the metrics page).
func (c *Client) DoRaw(ctx context.Context, method, path string, q url.Values, in any, w io.Writer) error {
	resp, err := c.send(ctx, method, path, q, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// Lab describes the lab, with its live policy and uptime.
func (c *Client) Lab(ctx context.Context) (Lab, error) {
	var l Lab
	return l, c.do(ctx, "GET", "/v1/lab", nil, nil, &l)
}

// Version is the gateway's build.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	return v, c.do(ctx, "GET", "/v1/version", nil, nil, &v)
}

// Conns lists the connections f picks, as conntrack -L does.
func (c *Client) Conns(ctx context.Context, f Filter) ([]Conn, error) {
	var rows []Conn
	return rows, c.do(ctx, "GET", "/v1/conntrack", f.Query(), nil, &rows)
}

// Count is how many connections f picks.
func (c *Client) Count(ctx context.Context, f Filter) (int, error) {
	var a struct {
		Count int `json:"count"`
	}
	return a.Count, c.do(ctx, "GET", "/v1/conntrack/count", f.Query(), nil, &a)
}

// Delete forgets the connections f picks now, as conntrack -D does: the next packet
// of each is an orphan. f must pick something (not the zero Filter: use Flush). It
// returns how many it deleted.
func (c *Client) Delete(ctx context.Context, f Filter) (int, error) {
	var a struct {
		N int `json:"deleted"`
	}
	return a.N, c.do(ctx, "DELETE", "/v1/conntrack", f.Query(), nil, &a)
}

// Expire ends the connections f picks now, exactly as their idle timeout would:
// DESTROY reason expired (closed in TIME_WAIT and CLOSE), and the RSTs of
// reset_on_expire. f must not be the zero Filter. It returns how many it expired.
func (c *Client) Expire(ctx context.Context, f Filter) (int, error) {
	var a struct {
		N int `json:"expired"`
	}
	return a.N, c.do(ctx, "POST", "/v1/conntrack/expire", f.Query(), nil, &a)
}

// TimeoutRequest is the body of PATCH /v1/conntrack.
type TimeoutRequest struct {
	// Timeout is the time left, in seconds on the gateway's clock, as conntrack
	// -U --timeout sets it.
	Timeout float64 `json:"timeout_s"`
}

// SetTimeout gives the connections f picks left to live, as conntrack -U
// --timeout does (the next packet that refreshes one restarts its normal
// timeout). left is on the gateway's clock: on a scaled lab, scale it first.
// f must not be the zero Filter. It returns how many it changed.
func (c *Client) SetTimeout(ctx context.Context, f Filter, left time.Duration) (int, error) {
	var a struct {
		N int `json:"updated"`
	}
	return a.N, c.do(ctx, "PATCH", "/v1/conntrack", f.Query(), TimeoutRequest{Timeout: left.Seconds()}, &a)
}

// Flush forgets every connection and NAT mapping, as a middlebox reboot does.
func (c *Client) Flush(ctx context.Context) (int, error) {
	var a struct {
		N int `json:"flushed"`
	}
	return a.N, c.do(ctx, "POST", "/v1/flush", nil, struct{}{}, &a)
}

// Stats returns every counter.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	return s, c.do(ctx, "GET", "/v1/stats", nil, nil, &s)
}

// Policy is the policy in force (on a scaled lab, with scaled timeouts; Lab gives
// both).
func (c *Client) Policy(ctx context.Context) (policy.Policy, error) {
	var p policy.Policy
	return p, c.do(ctx, "GET", "/v1/policy", nil, nil, &p)
}

// SetPolicy changes policy keys live, each "key=value" as in a policy file
// ("timeouts.tcp.established=10s"); durations are in real units, which a scaled
// lab scales. It returns the policy after the change.
func (c *Client) SetPolicy(ctx context.Context, sets ...string) (PolicyView, error) {
	var v PolicyView
	return v, c.do(ctx, "POST", "/v1/policy", nil, map[string][]string{"set": sets}, &v)
}

// StartPcap starts recording to a new file (see PcapRequest) the packets f picks
// (f.CheckPacket: protocol, addresses and ports; the zero Filter records all).
func (c *Client) StartPcap(ctx context.Context, path string, force bool, f Filter) (PcapAnswer, error) {
	var a PcapAnswer
	return a, c.do(ctx, "POST", "/v1/pcap", f.Query(), PcapRequest{Path: path, Force: force}, &a)
}

// StopPcap stops recording; PcapAnswer.Ended says what the file holds.
func (c *Client) StopPcap(ctx context.Context) (PcapAnswer, error) {
	var a PcapAnswer
	return a, c.do(ctx, "POST", "/v1/pcap", nil, PcapRequest{}, &a)
}

// Pcap says what is being recorded.
func (c *Client) Pcap(ctx context.Context) (PcapInfo, error) {
	var p PcapInfo
	return p, c.do(ctx, "GET", "/v1/pcap", nil, nil, &p)
}

// PolicyYAML is the policy in force as a YAML document.
func (c *Client) PolicyYAML(ctx context.Context) (string, error) {
	var b bytes.Buffer
	err := c.DoRaw(ctx, "GET", "/v1/policy", url.Values{"format": {"yaml"}}, nil, &b)
	return b.String(), err
}

// Metrics is the gateway's Prometheus metrics page, in the text exposition format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	var b bytes.Buffer
	err := c.DoRaw(ctx, "GET", "/metrics", nil, nil, &b)
	return b.Bytes(), err
}

// Events follows the events f picks (f.Events: NEW, UPDATE and DESTROY when empty;
// VERDICT asks for one per packet, for this subscriber alone) until ctx is done or
// Close. The gateway never blocks on a slow reader: what this reader's buffer
// could not hold is dropped and reported by a LOST event.
func (c *Client) Events(ctx context.Context, f Filter) (*Events, error) {
	resp, err := c.send(ctx, "GET", "/v1/events", f.Query(), nil)
	if err != nil {
		return nil, err
	}
	return &Events{c: c, body: resp.Body, sc: bufio.NewScanner(resp.Body)}, nil
}

// Events is a stream of events.
type Events struct {
	c    *Client
	body io.ReadCloser
	sc   *bufio.Scanner
	raw  []byte
}

// ErrStreamEnded is Next's error when the gateway ended the stream: it stopped.
var ErrStreamEnded = errors.New("the gateway ended the event stream: it stopped")

// Next blocks until the next event. It returns an error matching ErrStreamEnded
// when the gateway stops, and ctx's error when the context ends.
func (e *Events) Next() (Event, error) {
	for e.sc.Scan() {
		e.raw = e.sc.Bytes()
		var ev Event
		if err := json.Unmarshal(e.raw, &ev); err != nil {
			return Event{}, fmt.Errorf("an event does not decode (%v): %s", err, e.raw)
		}
		return ev, nil
	}
	err := e.sc.Err()
	if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		return Event{}, &labError{fmt.Sprintf("%s ended the event stream: its gateway stopped%s", e.c.labName(), e.c.downHint()), ErrStreamEnded}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		return Event{}, err
	}
	return Event{}, &labError{fmt.Sprintf("%s's event stream broke (%v): its gateway went away%s", e.c.labName(), err, e.c.downHint()), ErrStreamEnded}
}

// Raw is the JSON line of the event Next returned last, valid until the next call.
func (e *Events) Raw() []byte { return e.raw }

// Close ends the stream; a Next blocked in another goroutine returns.
func (e *Events) Close() error { return e.body.Close() }

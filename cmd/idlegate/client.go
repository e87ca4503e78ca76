package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
)

// client talks to a running lab's control API over its unix socket.
type client struct {
	name string
	http *http.Client
}

func dialLab(name string) (*client, error) {
	if err := lab.CheckName(name); err != nil {
		return nil, usageError{err}
	}
	sock := filepath.Join(lab.RunDir(name, ""), gateway.SocketFile)
	if _, err := os.Stat(sock); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, lab.ErrNotRoot // the run directory is root's, mode 0700
		}
		return nil, lab.NoSuchLab(name)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &client{name: name, http: &http.Client{Transport: tr}}, nil
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *client) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://lab"+path, rd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		return c.connErr(err)
	}
	defer resp.Body.Close()
	return decodeAnswer(resp, out)
}

func (c *client) connErr(err error) error {
	return stateError{fmt.Sprintf("lab %q does not answer on its control socket (%v); if its gateway died, run `idlegate lab down --name %s`", c.name, errors.Unwrap(err), c.name), lab.ErrNoSuchLab}
}

func decodeAnswer(resp *http.Response, out any) error {
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		if resp.StatusCode < 500 {
			return usageError{errors.New(e.Error)}
		}
		return errors.New(e.Error)
	}
	if out == nil {
		return nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err := io.Copy(w, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// stream opens a long-lived GET (events) and returns its body.
func (c *client) stream(path string) (io.ReadCloser, error) {
	resp, err := c.http.Get("http://lab" + path)
	if err != nil {
		return nil, c.connErr(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeAnswer(resp, nil)
	}
	return resp.Body, nil
}

package main

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/lab"
)

// The CLI drives a running lab through package control, as any program may.

// requestTimeout bounds one request to a lab's control API (not an event stream).
const requestTimeout = 10 * time.Second

// labClient is a control.Client of one lab, named for messages.
type labClient struct {
	*control.Client
	name string
}

// dialLab returns a client of lab name's control API. A bad name is a usage error;
// a lab that is not running, or a control socket the caller may not open, is the
// control package's error (exit 4 and 3).
func dialLab(name string) (*labClient, error) {
	if err := lab.CheckName(name); err != nil {
		return nil, usageError{err}
	}
	c, err := control.Dial(name)
	if err != nil {
		return nil, err
	}
	return &labClient{Client: c, name: name}, nil
}

// ctx is the context of one request.
func (c *labClient) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), requestTimeout)
}

// ask dials lab name and makes one request of it, fn, within requestTimeout: the
// whole of most verbs' talk with the lab.
func ask[T any](name string, fn func(ctx context.Context, cl *labClient) (T, error)) (T, error) {
	cl, err := dialLab(name)
	if err != nil {
		var zero T
		return zero, err
	}
	ctx, cancel := cl.ctx()
	defer cancel()
	return fn(ctx, cl)
}

// do sends one request to path (which may carry a query) with a JSON body (if not
// nil) and decodes the JSON answer into out; an io.Writer out gets the answer as it
// is. It is for routes the control package has no method for.
func (c *labClient) do(method, path string, body, out any) error {
	ctx, cancel := c.ctx()
	defer cancel()
	p, rawq, _ := strings.Cut(path, "?")
	q, err := url.ParseQuery(rawq)
	if err != nil {
		return err
	}
	if w, ok := out.(io.Writer); ok {
		return c.Client.DoRaw(ctx, method, p, q, body, w)
	}
	return c.Client.Do(ctx, method, p, q, body, out)
}

// isAPIError reports whether err is the gateway's answer with that status.
func isAPIError(err error, status int) bool {
	var ae *control.Error
	return errors.As(err, &ae) && ae.Status == status
}

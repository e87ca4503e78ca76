package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Errno names the cause of a socket error as docs/agents.md's `err` field does: the errno name
// when there is one ("ECONNRESET", "ETIMEDOUT", ...), "timeout" when a deadline of ours passed,
// "EOF" when the peer closed, else the error's text. It returns "" for nil.
func Errno(err error) string {
	if err == nil {
		return ""
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		if name := unix.ErrnoName(en); name != "" {
			return name
		}
		return en.Error()
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	}
	return err.Error()
}

// Outcome maps the error that ended a connection to a `result` outcome: ECONNRESET and EPIPE
// are reset, ETIMEDOUT (TCP_USER_TIMEOUT, keepalive giving up, SYN retries exhausted) and a
// deadline of ours are timed-out, ECONNREFUSED is refused, EOF is closed, anything else error.
// A nil error is survived. Hung and dead are decided by the caller, not by an error.
func Outcome(err error) string {
	if err == nil {
		return Survived
	}
	switch Errno(err) {
	case "ECONNRESET", "EPIPE":
		return Reset
	case "ETIMEDOUT", "timeout":
		return TimedOut
	case "ECONNREFUSED":
		return Refused
	case "EOF":
		return Closed
	}
	return Failed
}

// isTimeout reports whether err is a deadline of ours (not the kernel's ETIMEDOUT).
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

// failed is the ending of a connection broken by err during op.
func failed(op string, err error) ending {
	return ending{outcome: Outcome(err), op: op, err: Errno(err), detail: err.Error()}
}

// closeReason is the `close` detail for a connection that ended with err.
func closeReason(err error) string {
	switch e := Errno(err); e {
	case "EOF":
		return "eof"
	case "":
		return "closed"
	default:
		return "error " + e
	}
}

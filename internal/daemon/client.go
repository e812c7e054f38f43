package daemon

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
	"syscall"
	"time"
)

// ErrNotRunning is wrapped by Client errors when no daemon answers on the socket.
var ErrNotRunning = errors.New("daemon not running")

// DefaultClientTimeout bounds one admin call; attach sits in sandbox launch paths.
const DefaultClientTimeout = 10 * time.Second

// Client talks to the admin API over the unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the daemon at socket; timeout 0 means
// DefaultClientTimeout.
func NewClient(socket string, timeout time.Duration) *Client {
	if timeout == 0 {
		timeout = DefaultClientTimeout
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr, Timeout: timeout}}
}

// Attach asks the daemon to attach netns.
func (c *Client) Attach(ctx context.Context, netns string) (Attachment, error) {
	var res Attachment
	err := c.call(ctx, http.MethodPost, PathAttach, NetnsRequest{Netns: netns}, &res)
	return res, err
}

// Detach asks the daemon to detach netns.
func (c *Client) Detach(ctx context.Context, netns string) (DetachResult, error) {
	var res DetachResult
	err := c.call(ctx, http.MethodPost, PathDetach, NetnsRequest{Netns: netns}, &res)
	return res, err
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var res Status
	err := c.call(ctx, http.MethodGet, PathStatus, nil, &res)
	return res, err
}

// Reload asks the daemon to reload its configuration.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var res ReloadResult
	err := c.call(ctx, http.MethodPost, PathReload, nil, &res)
	return res, err
}

// call does one request. Errors are one line: the daemon's own message, or what
// stopped the client from reaching it.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://hermes-netd"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")

	resp, err := c.http.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("reading the daemon's answer: %w", err)
	}

	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("daemon answered %s", resp.Status)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding the daemon's answer: %w", err)
	}
	return nil
}

func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w (no socket at %s): start it with `hermes-netd serve` "+
			"or systemctl start hermes-netd", ErrNotRunning, c.socket)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (stale socket at %s): start it with `hermes-netd serve` "+
			"or systemctl start hermes-netd", ErrNotRunning, c.socket)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("permission denied on %s: the admin socket is root-only, "+
			"run as root", c.socket)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Errorf("daemon on %s did not answer in time", c.socket)
	}
	return fmt.Errorf("talking to the daemon on %s: %w", c.socket, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

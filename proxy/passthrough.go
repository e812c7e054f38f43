package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// passthrough splices c to its original destination untouched: the peeked
// hello first, then both directions until each side has closed its half.
func (s *Server) passthrough(c net.Conn, peeked []byte, sb Sandbox, o Origin,
	sni string, pol *Policy, reason string) {

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeouts.Dial)
	up, err := s.dialUpstream(ctx, o.Dst, pol)
	cancel()
	if err != nil {
		s.refuse(c, sb, o, sni, "passthrough dial: "+err.Error())
		return
	}
	if !s.trackRaw(up) {
		up.Close()
		c.Close()
		return
	}
	defer s.untrackRaw(up)

	in, out, err := splice(c, up, peeked)
	attrs := []slog.Attr{
		slog.String(KeySandbox, sb.Name),
		slog.String(KeySandboxID, sb.key()),
		slog.Any(KeyPID, o.PID),
		slog.String(KeyDst, o.Dst.String()),
		slog.String(KeyHost, sni),
		slog.String(KeyDecision, DecisionPassthrough),
		slog.String(KeyReason, reason),
		slog.Int64(KeyBytesIn, in),
		slog.Int64(KeyBytesOut, out),
		slog.Duration(KeyDuration, time.Since(start)),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, msgPassthrough, attrs...)
}

// splice copies client→up (after first) and up→client at once. A clean EOF on
// one side is passed on as a half-close (CloseWrite), so protocols that
// finish sending before reading keep working; an error on either side closes
// both. It returns the bytes each way and the first error.
func splice(client, up net.Conn, first []byte) (in, out int64, err error) {
	defer client.Close()
	defer up.Close()

	// Copy on the accepted socket itself, not its counting wrapper, so that
	// io.Copy can use splice(2); the deferred Close above releases the count.
	client = rawConn(client)
	var (
		wg   sync.WaitGroup
		errs [2]error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, err := up.Write(first)
		in = int64(n)
		if err == nil {
			var m int64
			m, err = io.Copy(up, client) // TCPConn to TCPConn: splice(2)
			in += m
		}
		errs[0] = finishHalf(up, client, err)
	}()

	// The other direction runs on this goroutine, which would otherwise only
	// wait: a spliced connection holds two goroutine stacks, not three.
	var err1 error
	out, err1 = io.Copy(client, up)
	errs[1] = finishHalf(client, up, err1)
	wg.Wait()
	return in, out, errors.Join(errs[0], errs[1])
}

// finishHalf ends one direction: on a clean EOF it half-closes dst's write
// side; on an error it closes both so the other direction stops too.
func finishHalf(dst, src net.Conn, err error) error {
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if cerr := cw.CloseWrite(); cerr == nil {
				return nil
			}
		}
	}
	dst.Close()
	src.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil // the other direction closed us
	}
	return err
}

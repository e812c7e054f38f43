package audit

import (
	"context"
	"log/slog"
)

// Split returns a handler that sends records carrying a decision attribute (the
// proxy's per-request and per-refusal records) to audit, after counting them in c
// when c is not nil, and every other record to ops.
func Split(audit, ops slog.Handler, c *Counters) slog.Handler {
	return &splitHandler{audit: audit, ops: ops, counters: c}
}

type splitHandler struct {
	audit, ops slog.Handler
	counters   *Counters
	// pre holds attributes added with WithAttrs, in order, so that a decision
	// attached by a logger.With call is seen too. Groups are not flattened: a
	// decision key inside a group is not the proxy's decision key.
	pre   []slog.Attr
	group bool
}

func (h *splitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.audit.Enabled(ctx, l) || h.ops.Enabled(ctx, l)
}

func (h *splitHandler) Handle(ctx context.Context, r slog.Record) error {
	f := h.fields(r)
	if f.decision == "" {
		if !h.ops.Enabled(ctx, r.Level) {
			return nil
		}
		return h.ops.Handle(ctx, r)
	}

	h.counters.observe(f)
	if !h.audit.Enabled(ctx, r.Level) {
		return nil
	}
	return h.audit.Handle(ctx, r)
}

func (h *splitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.audit = h.audit.WithAttrs(as)
	n.ops = h.ops.WithAttrs(as)
	if !h.group {
		n.pre = append(append([]slog.Attr(nil), h.pre...), as...)
	}
	return &n
}

func (h *splitHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.audit = h.audit.WithGroup(name)
	n.ops = h.ops.WithGroup(name)
	n.group = n.group || name != ""
	return &n
}

// fields collects the attributes the counters need from pre and the record.
func (h *splitHandler) fields(r slog.Record) fields {
	var f fields
	for _, a := range h.pre {
		f.set(a)
	}
	if !h.group {
		r.Attrs(func(a slog.Attr) bool {
			f.set(a)
			return true
		})
	}
	return f
}

// fields are the attributes of one decision record that the counters use.
type fields struct {
	sandbox, sandboxID, provider, method, decision, reason string
}

func (f *fields) set(a slog.Attr) {
	switch a.Key {
	case KeySandbox:
		f.sandbox = a.Value.String()
	case KeySandboxID:
		f.sandboxID = a.Value.String()
	case KeyProvider:
		f.provider = a.Value.String()
	case KeyMethod:
		f.method = a.Value.String()
	case KeyDecision:
		f.decision = a.Value.String()
	case KeyReason:
		f.reason = a.Value.String()
	}
}

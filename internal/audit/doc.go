// Package audit writes hermes-netd's audit trail: one JSON line per intercepted
// request and one per refused connection, kept apart from the operational log.
//
// The proxy emits its decision records as ordinary slog records. Split routes every
// record that carries a decision to the audit handler and everything else to the
// operational handler; Counters tallies the decision records on their way so that
// `hermes-netd status` and /metrics can report them without a second source of truth.
package audit

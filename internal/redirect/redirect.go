//go:build linux

package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/netsetup"
)

// Mode is how connections are redirected.
type Mode string

// The modes. ModeAuto picks ModeEBPF where the kernel and the host allow it.
const (
	ModeAuto Mode = "auto"
	ModeEBPF Mode = "ebpf"
	ModeNFT  Mode = "nft"
)

// ParseMode checks a mode name from the config or the command line.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return ModeAuto, nil
	case ModeAuto, ModeEBPF, ModeNFT:
		return m, nil
	}
	return "", fmt.Errorf("unknown redirect mode %q; use auto, ebpf or nft", s)
}

// Listeners are the ports of the daemon's listeners inside one netns:
// 127.0.0.1:Port4 and [::1]:Port6. A zero port means no listener for that
// family; intercepted connections of that family are then refused.
type Listeners = bpf.Listeners

// Options configure New. Every field is optional.
type Options struct {
	Mode   Mode     // "" means ModeAuto
	Ports  []uint16 // intercepted TCP ports (UDP to them is refused); nil = {443}
	Strict bool     // nft table also rejects other egress except loopback and DNS
	// StrictDNS, with Strict, limits DNS (udp/tcp 53) to these destination
	// prefixes; empty lets DNS out to any host.
	StrictDNS  []netip.Prefix
	PinDir     string       // bpffs dir for the BPF pins; "" = bpf.DefaultPinDir
	CgroupRoot string       // cgroup2 dir to attach to; "" = the root, from mountinfo
	Logger     *slog.Logger // nil discards
}

// Redirector intercepts connections of attached namespaces. Its methods are safe
// for concurrent use.
type Redirector struct {
	mode   Mode
	reason string
	opts   Options
	log    *slog.Logger
	// progs is the BPF path; nil in ModeNFT and after Close or Uninstall.
	progs atomic.Pointer[bpf.Redirector]

	mu       sync.Mutex
	attached map[uint64]uint64 // netns inode -> netns cookie
}

// New sets up redirection in the mode opts ask for. In ModeAuto it uses the BPF
// path when bpf.Probe passes and the programs can be attached to the cgroup2
// root, else the nftables path, and logs once which and why. A forced ModeEBPF
// that cannot work is an error saying why. ModeNFT removes BPF pins an earlier
// run left in PinDir, so that stale registrations cannot redirect to old ports.
func New(opts Options) (*Redirector, error) {
	mode, err := ParseMode(string(opts.Mode))
	if err != nil {
		return nil, err
	}
	if opts.Ports == nil {
		opts.Ports = []uint16{443}
	}
	if opts.PinDir == "" {
		opts.PinDir = bpf.DefaultPinDir
	}
	if err := checkPorts(opts.Ports); err != nil {
		return nil, err
	}
	r := &Redirector{opts: opts, log: opts.Logger, attached: map[uint64]uint64{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}

	switch mode {
	case ModeNFT:
		r.mode, r.reason = ModeNFT, "forced by configuration"
		if err := r.removeStaleBPF(); err != nil {
			return nil, err
		}
	case ModeEBPF:
		if err := r.installBPF(); err != nil {
			return nil, fmt.Errorf("redirect mode ebpf: %w; use mode nft (or auto) here", err)
		}
		r.mode, r.reason = ModeEBPF, "forced by configuration"
	default:
		if err := r.installBPF(); err != nil {
			r.mode, r.reason = ModeNFT, "bpf path unavailable: "+err.Error()
		} else {
			r.mode, r.reason = ModeEBPF, "kernel supports the bpf path"
		}
	}

	r.log.Info("Redirect mode chosen", "mode", string(r.mode), "reason", r.reason)
	return r, nil
}

// installBPF probes the kernel, finds the cgroup2 root and installs the programs.
func (r *Redirector) installBPF() error {
	if err := bpf.Probe(); err != nil {
		return err
	}

	root := r.opts.CgroupRoot
	if root == "" {
		var err error
		if root, err = netsetup.Cgroup2Root(); err != nil {
			return err
		}
	}
	if err := netsetup.EnsureBPFFS(r.opts.PinDir); err != nil {
		return err
	}

	b, err := bpf.Install(r.opts.PinDir, root, r.opts.Ports)
	if err != nil {
		// Leave nothing half-installed behind when falling back.
		return errors.Join(err, bpf.Uninstall(r.opts.PinDir))
	}
	r.progs.Store(b)
	return nil
}

// removeStaleBPF uninstalls BPF pins left in PinDir by an earlier ebpf-mode run.
func (r *Redirector) removeStaleBPF() error {
	if _, err := os.Stat(r.opts.PinDir); err != nil {
		return nil
	}
	r.log.Info("Removing BPF redirect of an earlier run", "pin_dir", r.opts.PinDir)
	if err := bpf.Uninstall(r.opts.PinDir); err != nil {
		return fmt.Errorf("removing stale BPF pins in %s: %w", r.opts.PinDir, err)
	}
	return nil
}

// Mode is the mode in use: ModeEBPF or ModeNFT.
func (r *Redirector) Mode() Mode { return r.mode }

// Reason says why Mode was chosen.
func (r *Redirector) Reason() string { return r.reason }

func checkPorts(ports []uint16) error {
	if len(ports) == 0 {
		return errors.New("no intercepted ports; list at least one (443 by default)")
	}
	if slices.Contains(ports, 0) {
		return errors.New("port 0 cannot be intercepted; list real ports")
	}
	return nil
}

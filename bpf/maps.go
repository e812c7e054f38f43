//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
)

// maxPorts is the capacity of the hermes_ports map (HERMES_MAX_PORTS in hermes.h).
const maxPorts = 64

// Listeners are the ports of the daemon's listeners inside one network namespace:
// 127.0.0.1:Port4 and [::1]:Port6. A zero port means there is no listener for that
// family; intercepted connections of that family are then refused (EPERM), never
// let through.
type Listeners struct{ Port4, Port6 uint16 }

// Register starts interception for the network namespace with the given cookie
// (SO_NETNS_COOKIE of a socket made inside it), sending its intercepted
// connections to l. Registering again replaces l.
func (r *Redirector) Register(netnsCookie uint64, l Listeners) error {
	if netnsCookie == 0 {
		return errors.New("registering netns: cookie 0 is not a network namespace cookie")
	}
	if l.Port4 == 0 && l.Port6 == 0 {
		return fmt.Errorf("registering netns cookie %d: no listener port given", netnsCookie)
	}

	v := hermesHermesListener{Port4: l.Port4, Port6: l.Port6}
	if err := r.objs.HermesNetns.Put(netnsCookie, v); err != nil {
		return fmt.Errorf("registering netns cookie %d: %w", netnsCookie, err)
	}
	return nil
}

// Unregister stops interception for the network namespace with the given cookie.
// A cookie that is not registered is not an error.
func (r *Redirector) Unregister(netnsCookie uint64) error {
	err := r.objs.HermesNetns.Delete(netnsCookie)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregistering netns cookie %d: %w", netnsCookie, err)
	}
	return nil
}

// Registered returns every registered namespace cookie with its listeners.
func (r *Redirector) Registered() (map[uint64]Listeners, error) {
	var (
		cookie uint64
		v      hermesHermesListener
	)
	out := make(map[uint64]Listeners)
	it := r.objs.HermesNetns.Iterate()
	for it.Next(&cookie, &v) {
		out[cookie] = Listeners{Port4: v.Port4, Port6: v.Port6}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing registered netns: %w", err)
	}
	return out, nil
}

// SetPorts replaces the set of intercepted destination ports (TCP is redirected,
// UDP refused). Install calls it; it may be called again later.
func (r *Redirector) SetPorts(ports []uint16) error {
	if err := checkPorts(ports); err != nil {
		return err
	}

	old, err := r.Ports()
	if err != nil {
		return err
	}
	for _, p := range ports {
		if err := r.objs.HermesPorts.Put(p, uint8(1)); err != nil {
			return fmt.Errorf("adding intercepted port %d: %w", p, err)
		}
	}
	for _, p := range old {
		if slices.Contains(ports, p) {
			continue
		}
		err := r.objs.HermesPorts.Delete(p)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing intercepted port %d: %w", p, err)
		}
	}
	return nil
}

// Ports returns the intercepted destination ports, sorted.
func (r *Redirector) Ports() ([]uint16, error) {
	var (
		port  uint16
		v     uint8
		ports []uint16
	)
	it := r.objs.HermesPorts.Iterate()
	for it.Next(&port, &v) {
		ports = append(ports, port)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing intercepted ports: %w", err)
	}
	slices.Sort(ports)
	return ports, nil
}

func checkPorts(ports []uint16) error {
	if len(ports) == 0 {
		return errors.New("no intercepted port given; pass at least one, e.g. 443")
	}
	if len(ports) > maxPorts {
		return fmt.Errorf("%d intercepted ports given; at most %d are supported",
			len(ports), maxPorts)
	}
	if slices.Contains(ports, 0) {
		return errors.New("intercepted port 0 is not a port; remove it")
	}
	return nil
}

package secrets

import (
	"context"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce gathers the burst of events one write or rename makes.
const debounce = 100 * time.Millisecond

// Watch reloads the directory whenever a file in it is created, written,
// removed, renamed or changes mode, until ctx is done; it then returns nil.
// Atomic replacement by rename, as Set does, is picked up. Each change is
// logged as one line naming the key and its fingerprint.
func (s *Store) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching secrets dir %s: %w", s.dir, err)
	}
	defer w.Close()
	if err := w.Add(s.dir); err != nil {
		return fmt.Errorf("watching secrets dir %s: %w", s.dir, err)
	}

	// A change between Open and Add made no event; catch it now.
	s.reload()

	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op != 0 {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events; a reload recovers the state.
			s.logger.Warn("Secrets watch error", "dir", s.dir, "error", err)
			timer.Reset(debounce)
		case <-timer.C:
			s.reload()
		}
	}
}

// Reload rescans the directory now. Watch calls it on every change.
func (s *Store) Reload() error {
	next, err := scan(s.dir)
	if err != nil {
		return err
	}
	s.swap(next)
	return nil
}

func (s *Store) reload() {
	if err := s.Reload(); err != nil {
		// Why: keep the last good keys rather than drop every key because the
		// directory briefly went missing or had its mode changed.
		s.logger.Warn("Secrets reload refused", "dir", s.dir, "error", err)
	}
}

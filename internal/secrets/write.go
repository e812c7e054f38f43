package secrets

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// EnsureDir creates dir (mode 0700, root-owned when run as root) if it is
// missing, then checks it as Open does.
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating secrets dir %s: %w", dir, err)
	}
	return checkDir(dir)
}

// Set stores value as the key name in dir, atomically: a temporary file
// (0600, root-owned) in dir is written, synced and renamed over NAME.key, so
// a reader sees the old key or the new one, never a mix. value goes through
// ParseValue first (one trailing newline is dropped). dir is created if
// missing and must pass the same checks as in Open.
func Set(dir, name string, value []byte) error {
	if !ValidName(name) {
		return fmt.Errorf("key name %q: use 1-64 characters from a-z, 0-9, '_' and '-'",
			name)
	}
	v, err := ParseValue(value)
	if err != nil {
		return fmt.Errorf("key %s: %w", name, err)
	}
	if err := EnsureDir(dir); err != nil {
		return err
	}

	path := filepath.Join(dir, name+Suffix)
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := writeKeyFile(f, v); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming into %s: %w", path, err)
	}
	return syncDir(dir)
}

func writeKeyFile(f *os.File, v string) error {
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(0, 0); err != nil {
			return err
		}
	}
	if _, err := f.WriteString(v + "\n"); err != nil {
		return err
	}
	return f.Sync()
}

// Revoke removes the key name from dir. A missing key is an error wrapping
// ErrNoKey, so that a typo does not look like success.
func Revoke(dir, name string) error {
	if !ValidName(name) {
		return fmt.Errorf("key name %q: use 1-64 characters from a-z, 0-9, '_' and '-'",
			name)
	}
	path := filepath.Join(dir, name+Suffix)
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("revoking %s: %w: %s does not exist", name, ErrNoKey, path)
	}
	if err != nil {
		return fmt.Errorf("revoking %s: %w", name, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

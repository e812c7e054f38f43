package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// DefaultDir is where keys live unless the config says otherwise.
const DefaultDir = "/etc/hermes/secrets"

// Suffix ends every key file name.
const Suffix = ".key"

// maxKeySize caps a key file; no API key comes near it.
const maxKeySize = 64 << 10

// MinKeySize is the shortest key accepted. The proxy masks a key wherever an
// upstream reflects it in a response, so a very short key would be masked in
// every response it happens to appear in; no real API key is this short.
const MinKeySize = 8

// ErrNoKey means no usable key exists under a name: the file is missing or
// was refused (the wrapped error says which and why).
var ErrNoKey = errors.New("no usable key")

// ownerUID is the owner every key file and the directory must have. Tests
// running without root set it to their own uid.
var ownerUID uint32 = 0

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// ValidName reports whether name may name a key: 1-64 characters from a-z,
// 0-9, '_' and '-'.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Entry describes one key file for listings. Err is set when the file was
// refused; the key's value is never part of an Entry.
type Entry struct {
	Name        string
	Fingerprint string
	Err         error
}

// Store holds the keys of one directory. It is safe for concurrent use.
type Store struct {
	dir    string
	logger *slog.Logger

	mu      sync.RWMutex
	entries map[string]entry
}

type entry struct {
	key Key
	err error
}

// Open checks dir (root-owned, no group or other permission bits) and loads
// every NAME.key in it. A refused key file does not fail Open: it is logged,
// listed with its error, and Get returns the error. A nil logger discards.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{dir: dir, logger: logger, entries: map[string]entry{}}
	entries, err := scan(dir)
	if err != nil {
		return nil, err
	}
	s.swap(entries)
	return s, nil
}

// Dir returns the directory the store reads.
func (s *Store) Dir() string { return s.dir }

// Get returns the key named name. The error wraps ErrNoKey when the file is
// missing or was refused, and says how to fix it.
func (s *Store) Get(name string) (Key, error) {
	s.mu.RLock()
	e, ok := s.entries[name]
	s.mu.RUnlock()
	if !ok {
		return Key{}, fmt.Errorf("%w: no key named %q; create it with "+
			"`hermes-netd secrets set %s` (file %s)", ErrNoKey, name, name,
			filepath.Join(s.dir, name+Suffix))
	}
	if e.err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrNoKey, e.err)
	}
	return e.key, nil
}

// List returns every key file's name and fingerprint (or error), by name.
func (s *Store) List() []Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Entry, 0, len(s.entries))
	for name, e := range s.entries {
		out = append(out, Entry{Name: name, Fingerprint: e.key.Fingerprint(), Err: e.err})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// swap installs a fresh scan and logs one line per key that appeared,
// changed, was refused or went away.
func (s *Store) swap(next map[string]entry) {
	s.mu.Lock()
	prev := s.entries
	s.entries = next
	s.mu.Unlock()

	for name, e := range next {
		old, had := prev[name]
		switch {
		case e.err != nil:
			if !had || old.err == nil || old.err.Error() != e.err.Error() {
				s.logger.Warn("Secret refused", "name", name, "error", e.err)
			}
		case !had || old.err != nil:
			s.logger.Info("Secret loaded", "name", name, "fingerprint", e.key.Fingerprint())
		case old.key.Fingerprint() != e.key.Fingerprint():
			s.logger.Info("Secret changed", "name", name, "fingerprint", e.key.Fingerprint())
		}
	}
	for name, old := range prev {
		if _, ok := next[name]; !ok {
			s.logger.Info("Secret removed", "name", name, "fingerprint", old.key.Fingerprint())
		}
	}
}

// scan checks dir and reads every valid NAME.key in it. Files with other
// names (editor backups, Set's temporary files) are ignored.
func scan(dir string) (map[string]entry, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading secrets dir %s: %w", dir, err)
	}
	out := make(map[string]entry)
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), Suffix)
		if !ok || !ValidName(name) {
			continue
		}
		k, err := readKey(filepath.Join(dir, de.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed between ReadDir and open
		}
		out[name] = entry{key: k, err: err}
	}
	return out, nil
}

func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("secrets dir %s does not exist; create it: install -d -m 700 "+
			"-o root -g root %s: %w", dir, dir, err)
	}
	if err != nil {
		return fmt.Errorf("checking secrets dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("secrets dir %s is not a directory", dir)
	}
	return checkOwner(dir, fi, "chmod 700")
}

// readKey opens path and checks the open file, so the checks and the read
// see the same file even if it is replaced meanwhile.
func readKey(path string) (Key, error) {
	// O_NOFOLLOW: a symbolic link could point the daemon at any file on the
	// host, and its target's owner and mode are not what the checks below see
	// in the directory.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return Key{}, fmt.Errorf("secrets file %s is a symbolic link, which is refused; "+
			"fix: replace it with the key itself (hermes-netd secrets set %s)", path,
			strings.TrimSuffix(filepath.Base(path), Suffix))
	}
	if err != nil {
		return Key{}, fmt.Errorf("opening secrets file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Key{}, fmt.Errorf("checking secrets file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return Key{}, fmt.Errorf("secrets file %s is not a regular file", path)
	}
	if err := checkOwner(path, fi, "chmod 600"); err != nil {
		return Key{}, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeySize+1))
	if err != nil {
		return Key{}, fmt.Errorf("reading secrets file %s: %w", path, err)
	}
	if len(data) > maxKeySize {
		return Key{}, fmt.Errorf("secrets file %s is larger than %d bytes", path, maxKeySize)
	}
	value, err := ParseValue(data)
	if err != nil {
		return Key{}, fmt.Errorf("secrets file %s: %w", path, err)
	}
	return NewKey(value), nil
}

// checkOwner refuses fi unless it is owned by root and has no group or other
// permission bits, naming path, its mode and owner, and the fix.
func checkOwner(path string, fi fs.FileInfo, chmod string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("checking %s: no owner information", path)
	}
	mode := fi.Mode().Perm()
	if st.Uid == ownerUID && mode&0o077 == 0 {
		return nil
	}
	return fmt.Errorf("%s has mode %04o and owner uid %d, gid %d; it must be owned by "+
		"root with no group or other permissions; fix: %s %s; chown root:root %s",
		path, mode, st.Uid, st.Gid, chmod, path, path)
}

// ParseValue turns a key file's bytes into the key: one trailing "\n" or
// "\r\n" is removed; an empty key, one shorter than MinKeySize bytes, or one
// holding a control byte (CR, LF, NUL and the rest of 0x00-0x1f, 0x7f) is
// refused. Errors name the length or offset, never the bytes.
func ParseValue(data []byte) (string, error) {
	s := string(data)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", errors.New("key is empty")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("key has control byte 0x%02x at offset %d; a key must "+
				"be one line without CR, LF or NUL", c, i)
		}
	}
	if len(s) < MinKeySize {
		return "", fmt.Errorf("key is %d bytes, shorter than the minimum of %d; give "+
			"the whole API key (a key this short would be masked wherever it appears "+
			"in responses)", len(s), MinKeySize)
	}
	return s, nil
}

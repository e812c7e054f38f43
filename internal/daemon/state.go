package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// StateFile is the name of the state file inside the state directory.
const StateFile = "attached.json"

// stateVersion is bumped when the file's meaning changes incompatibly.
const stateVersion = 1

// Record is what the daemon remembers of one attached namespace.
type Record struct {
	Spec   string    `json:"spec"`   // as given to attach: name, path or pid:N
	Inode  uint64    `json:"inode"`  // nsfs inode: the namespace's identity across restarts
	Cookie uint64    `json:"cookie"` // netns cookie the redirect is keyed by
	Port4  uint16    `json:"port4"`  // listener on 127.0.0.1
	Port6  uint16    `json:"port6"`  // listener on ::1, 0 when the netns has no IPv6
	Since  time.Time `json:"since"`  // first attached
	// Retired is when the daemon stopped serving a namespace it judged gone
	// without being asked to detach it; zero for an attached one.
	Retired time.Time `json:"retired,omitzero"`
}

// State is the content of the state file.
type State struct {
	// Attached are the namespaces to take back at start.
	Attached []Record
	// Retired are namespaces that nothing could be found holding any more, so
	// the daemon stopped serving them; their redirect is left in place (fail
	// closed) because a socket made inside one can keep it alive unseen.
	Retired []Record
}

type stateDoc struct {
	Version  int      `json:"version"`
	Attached []Record `json:"attached"`
	Retired  []Record `json:"retired,omitempty"`
}

// LoadState reads the attached records of the state file at path. A missing
// file is an empty state.
func LoadState(path string) ([]Record, error) {
	st, err := ReadState(path)
	return st.Attached, err
}

// SaveState writes a state file holding recs as the attached records and no
// retired ones.
func SaveState(path string, recs []Record) error {
	return WriteState(path, State{Attached: recs})
}

// ReadState reads the state file at path. A missing file is an empty state.
func ReadState(path string) (State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading state %s: %w", path, err)
	}

	var doc stateDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return State{}, fmt.Errorf("parsing state %s: %w (move it aside to start afresh)",
			path, err)
	}
	if doc.Version != stateVersion {
		return State{}, fmt.Errorf("state %s has version %d, this hermes-netd reads %d "+
			"(move it aside to start afresh)", path, doc.Version, stateVersion)
	}
	return State{Attached: doc.Attached, Retired: doc.Retired}, nil
}

// WriteState writes st to path atomically (temporary file, fsync, rename), mode 0600.
func WriteState(path string, st State) error {
	recs := st.Attached
	if recs == nil {
		recs = []Record{}
	}
	doc := stateDoc{Version: stateVersion, Attached: recs, Retired: st.Retired}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	b = append(b, '\n')

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state dir %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".attached-*.tmp")
	if err != nil {
		return fmt.Errorf("writing state %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename

	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing state %s: %w", path, err)
	}
	return nil
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// file is the YAML shape of Config. Values that need parsing stay strings
// here so that validation can name the field and line of a bad one.
type file struct {
	StateDir           string                    `yaml:"state_dir"`
	SecretsDir         string                    `yaml:"secrets_dir"`
	Socket             string                    `yaml:"socket"`
	Mode               string                    `yaml:"mode"`
	Ports              []int                     `yaml:"ports"`
	ListenPort         int                       `yaml:"listen_port"`
	Strict             bool                      `yaml:"strict"`
	StrictDNS          []string                  `yaml:"strict_dns"`
	Default            string                    `yaml:"default"`
	Passthrough        []string                  `yaml:"passthrough"`
	PassthroughCheck   bool                      `yaml:"passthrough_check"`
	Hosts              map[string][]string       `yaml:"hosts"`
	IdentityEncoding   bool                      `yaml:"identity_encoding"`
	MaxConnsPerSandbox int                       `yaml:"max_connections_per_sandbox"`
	Providers          map[string]ProviderConfig `yaml:"providers"`
	UpstreamCAFiles    []string                  `yaml:"upstream_ca_files"`
	AllowUpstream      []string                  `yaml:"allow_upstream"`
	Timeouts           fileTimeouts              `yaml:"timeouts"`
	RateLimits         RateLimits                `yaml:"rate_limits"`
	Audit              fileAudit                 `yaml:"audit"`
}

type fileTimeouts struct {
	Handshake    string `yaml:"handshake"`
	ReadHeader   string `yaml:"read_header"`
	Idle         string `yaml:"idle"`
	UpstreamIdle string `yaml:"upstream_idle"`
	Shutdown     string `yaml:"shutdown"`
}

type fileAudit struct {
	File string `yaml:"file"`
}

// Load reads and validates the config at path. An empty path means
// DefaultPath. A missing file at DefaultPath gives the defaults; any other
// missing file is an error, since the operator named it.
func Load(path string) (*Config, error) {
	if path == "" {
		path = DefaultPath
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && path == DefaultPath {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data, path)
}

// Parse validates data as a config file; name is used in errors and as
// Config.Source.
func Parse(data []byte, name string) (*Config, error) {
	f := defaultFile()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: holds more than one YAML document; keep one",
			name)
	}

	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(name, err)
	}
	v := &validator{name: name, root: &root}
	c := v.build(&f)
	if v.err != nil {
		return nil, v.err
	}
	c.Source = name
	return c, nil
}

func defaultFile() file {
	d := Default()
	return file{
		StateDir:   d.StateDir,
		SecretsDir: d.SecretsDir,
		Socket:     d.Socket,
		Mode:       d.Mode,
		Ports:      []int{443},
		ListenPort: int(d.ListenPort),
		Default:    d.Default,

		PassthroughCheck:   d.PassthroughCheck,
		MaxConnsPerSandbox: d.MaxConnectionsPerSandbox,
		Timeouts: fileTimeouts{
			Handshake:    d.Timeouts.Handshake.String(),
			ReadHeader:   d.Timeouts.ReadHeader.String(),
			Idle:         d.Timeouts.Idle.String(),
			UpstreamIdle: d.Timeouts.UpstreamIdle.String(),
			Shutdown:     d.Timeouts.Shutdown.String(),
		},
	}
}

var (
	syntaxLineRE  = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	typeLineRE    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownRE     = regexp.MustCompile(`^field (\S+) not found in type .*$`)
	unmarshalToRE = regexp.MustCompile(`^cannot unmarshal (\S+) ` + "`" + `(.*)` + "`" +
		` into (.*)$`)
)

// yamlError rewrites the decoder's errors as "FILE:LINE: problem", one per
// line, without Go type names.
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			msgs = append(msgs, "config "+name+":"+describe(e))
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	if m := syntaxLineRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("config %s:%s: %s", name, m[1], m[2])
	}
	return fmt.Errorf("config %s: %w", name, err)
}

func describe(e string) string {
	m := typeLineRE.FindStringSubmatch(e)
	if m == nil {
		return " " + e
	}
	line, msg := m[1], m[2]
	if u := unknownRE.FindStringSubmatch(msg); u != nil {
		return line + ": unknown field " + u[1] + " (check its spelling and indentation; " +
			"internal/config/testdata/example.yaml lists every field)"
	}
	if u := unmarshalToRE.FindStringSubmatch(msg); u != nil {
		return line + ": " + fmt.Sprintf("value %q is not %s", u[2], kindName(u[3]))
	}
	return line + ": " + msg
}

func kindName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "config."):
		return "a mapping"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	}
	return "of the expected type"
}

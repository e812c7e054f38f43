package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"strconv"

	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

func itoa[T ~uint16 | ~int](v T) string { return strconv.Itoa(int(v)) }

func newReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

type secretsKey = secrets.Key

func testLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(&suiteLog, nil))
}

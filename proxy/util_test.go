package proxy

import (
	"bufio"
	"io"
	"strconv"
)

func itoa[T ~uint16 | ~int](v T) string { return strconv.Itoa(int(v)) }

func newReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

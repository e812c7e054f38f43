package proxy

import "sync"

// copyBufSize is the size of ReverseProxy's copy buffers: 32 KiB, its own
// default, so that one read can take two full TLS records of a bulk body.
const copyBufSize = 32 << 10

// copyBuffers is the ReverseProxy's BufferPool. Without one, ReverseProxy
// allocates a fresh 32 KiB buffer for every response, which was two thirds
// of the bytes allocated per proxied request. The pool holds array pointers
// so that neither Get nor Put allocates.
type copyBuffers struct{ pool sync.Pool }

func (b *copyBuffers) Get() []byte {
	if p, ok := b.pool.Get().(*[copyBufSize]byte); ok {
		return p[:]
	}
	return make([]byte, copyBufSize)
}

// Put takes back a buffer from Get; anything else is left to the collector.
func (b *copyBuffers) Put(buf []byte) {
	if cap(buf) != copyBufSize {
		return
	}
	b.pool.Put((*[copyBufSize]byte)(buf[:copyBufSize]))
}

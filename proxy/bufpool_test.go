package proxy

import "testing"

func TestCopyBuffers(t *testing.T) {
	var b copyBuffers
	buf := b.Get()
	if len(buf) != copyBufSize || cap(buf) != copyBufSize {
		t.Fatalf("Get: len %d cap %d, want %d", len(buf), cap(buf), copyBufSize)
	}
	b.Put(buf[:10])           // a resliced buffer of ours is still taken back
	b.Put(make([]byte, 1024)) // a foreign one is ignored, not converted (would panic)
	if got := b.Get(); len(got) != copyBufSize {
		t.Fatalf("Get after Put: len %d, want %d", len(got), copyBufSize)
	}
}

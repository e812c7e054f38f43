package bpf

// linux/bpf.h needs <asm/types.h>, which Debian keeps in a per-architecture
// directory that clang does not search when targeting BPF: both directories are
// listed, the one that exists is used.
//
//go:generate -command bpf2go go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel
//go:generate bpf2go -cflags "-O2 -g -Wall -Werror" hermes redirect.c -- -idirafter /usr/include/x86_64-linux-gnu -idirafter /usr/include/aarch64-linux-gnu

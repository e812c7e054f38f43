// Package e2e holds hermes-netd's end-to-end suite: the built daemon serving
// the host namespace of a testenv topology, a sandbox namespace attached to
// it, and real clients inside the sandbox (curl, the official OpenAI Node
// SDK, Go's net/http, Python's urllib) calling fake providers with no key, no
// proxy variables and only the hermes CA trusted.
//
// The tests are privileged (TestPrivilegedE2E...) and skip when not run as
// root. They run once per redirect mode, ebpf and nft, each in its own
// topology, state directory, admin socket and bpffs pin directory, and check
// at the end that none of it remains. The clients live in testdata: node
// (run `npm install` there, or vagrant/provision.sh), py and goclient.
package e2e

//go:build linux

package netsetup

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"golang.org/x/sys/unix"
)

// EnsureTable installs the hermes table for cfg in n, replacing any table of that
// name in one atomic batch (create-if-missing, delete, add), so the namespace is
// never without interception while the table is updated. Calling it again with the
// same config is harmless.
func (n *NS) EnsureTable(cfg TableConfig) error {
	t, err := TableRules(cfg)
	if err != nil {
		return fmt.Errorf("installing nftables table in netns %s: %w", n.spec, err)
	}

	c, err := nftables.New(nftables.WithNetNSFd(n.fd))
	if err != nil {
		return fmt.Errorf("opening nftables in netns %s: %w", n.spec, err)
	}

	nt := &nftables.Table{Name: t.Name, Family: nftables.TableFamilyINet}
	c.AddTable(nt)
	c.DelTable(nt)
	c.AddTable(nt)
	if err := t.queue(c, nt); err != nil {
		return fmt.Errorf("installing nftables table in netns %s: %w", n.spec, err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing nftables table in netns %s: %w", n.spec, err)
	}
	return nil
}

// queue adds the set, chains and rules of t to c's batch.
func (t Table) queue(c *nftables.Conn, nt *nftables.Table) error {
	set := &nftables.Set{Table: nt, ID: portsSetID, Name: PortsSetName,
		KeyType: nftables.TypeInetService}
	elems := make([]nftables.SetElement, 0, len(t.Ports))
	for _, p := range t.Ports {
		elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	if err := c.AddSet(set, elems); err != nil {
		return fmt.Errorf("adding set %s: %w", PortsSetName, err)
	}

	for _, ch := range t.Chains {
		policy := nftables.ChainPolicyAccept
		nc := c.AddChain(&nftables.Chain{
			Name: ch.Name, Table: nt, Type: ch.Type, Policy: &policy,
			Hooknum: &ch.Hook, Priority: &ch.Priority,
		})
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: nt, Chain: nc, Exprs: r.Exprs})
		}
	}
	return nil
}

// RemoveTable deletes the hermes table from n. A missing table is not an error.
func (n *NS) RemoveTable() error {
	c, err := nftables.New(nftables.WithNetNSFd(n.fd))
	if err != nil {
		return fmt.Errorf("opening nftables in netns %s: %w", n.spec, err)
	}

	// Adding first makes the delete succeed whether or not the table existed,
	// and both happen in one batch.
	nt := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	c.AddTable(nt)
	c.DelTable(nt)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing nftables table from netns %s: %w", n.spec, err)
	}
	return nil
}

// HasTable reports whether n holds the hermes table.
func (n *NS) HasTable() (bool, error) {
	c, err := nftables.New(nftables.WithNetNSFd(n.fd))
	if err != nil {
		return false, fmt.Errorf("opening nftables in netns %s: %w", n.spec, err)
	}
	_, err = c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("listing nftables tables in netns %s: %w", n.spec, err)
	}
	return true, nil
}

// NftText is the table as `nft list table inet hermes` prints it, one statement
// per line with leading whitespace removed and blank lines dropped.
func (t Table) NftText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", t.Name)
	fmt.Fprintf(&b, "set %s {\ntype inet_service\n", PortsSetName)
	ports := make([]string, len(t.Ports))
	for i, p := range t.Ports {
		ports[i] = fmt.Sprint(p)
	}
	fmt.Fprintf(&b, "elements = { %s }\n}\n", strings.Join(ports, ", "))
	for _, ch := range t.Chains {
		fmt.Fprintf(&b, "chain %s {\n", ch.Name)
		fmt.Fprintf(&b, "type %s hook output priority %s; policy accept;\n",
			ch.Type, priorityName(ch.Priority))
		for _, r := range ch.Rules {
			b.WriteString(r.Nft + "\n")
		}
		b.WriteString("}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// priorityName is the priority as nft prints it: symbolic for filter, numeric for
// the nat output chain (nft 1.0 has no symbolic name for it in the output hook).
func priorityName(p nftables.ChainPriority) string {
	if p == *nftables.ChainPriorityFilter {
		return "filter"
	}
	return fmt.Sprint(int32(p))
}

// CoreDNS with only the plugins the test node's cluster DNS uses (see the Corefile in
// tests/node/manifests/coredns.yaml), so it builds in a fraction of the time of the full
// server. This is how CoreDNS documents custom builds: the same coremain, fewer plugins.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}

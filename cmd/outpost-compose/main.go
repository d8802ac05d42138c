// Command outpost-compose is the edge agent's compose helper: it deploys
// or removes one edge stack with Compose, as outpost-agent asks on its
// standard input, and exits. It ships beside outpost-agent, which runs it
// for each deploy so that the long-lived agent never loads Compose (see
// package outpost/edgeagent/stacks/compose). It is not run by hand.
package main

import (
	"os"

	"outpost/edgeagent/stacks/compose"
)

func main() {
	os.Exit(compose.Main(os.Stdin, os.Stdout, os.Stderr))
}

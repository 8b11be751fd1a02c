// Command local is Postern's final delivery agent, run as "local" and as
// "virtual"; see package postern/pkg/local. Run with local.ChildArg first
// it is instead the short-lived process that does one delivery step with a
// recipient's rights (pkg/local child.go).
package main

import (
	"os"

	"postern/pkg/local"
	"postern/pkg/server"
)

func main() {
	if local.IsChild(os.Args) {
		os.Exit(local.ChildMain())
	}
	server.Main(server.Program{Name: "local", New: local.New})
}

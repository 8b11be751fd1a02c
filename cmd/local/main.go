// Command local is Postern's final delivery agent, run as "local" and as
// "virtual"; see package postern/pkg/local.
package main

import (
	"postern/pkg/local"
	"postern/pkg/server"
)

func main() { server.Main(server.Program{Name: "local", New: local.New}) }

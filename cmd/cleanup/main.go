// Command cleanup completes messages and writes them into the queue; see
// package postern/pkg/cleanup.
package main

import (
	"postern/pkg/cleanup"
	"postern/pkg/server"
)

func main() { server.Main(server.Program{Name: "cleanup", New: cleanup.New}) }

// Command qmgr is Postern's queue manager; see package postern/pkg/qmgr.
package main

import (
	"postern/pkg/qmgr"
	"postern/pkg/server"
)

func main() { server.Main(server.Program{Name: "qmgr", New: qmgr.New}) }

// Command showq lists the queue for users who may not read it: mailq,
// sendmail -bp and `postern queue` connect to it; see
// postern/pkg/queuectl showq.go.
package main

import (
	"postern/pkg/queuectl"
	"postern/pkg/server"
)

func main() { server.Main(server.Program{Name: "showq", New: queuectl.NewShowq}) }

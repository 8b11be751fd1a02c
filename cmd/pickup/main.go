// Command pickup feeds mail from maildrop/ to cleanup; see package
// postern/pkg/pickup.
package main

import (
	"postern/pkg/pickup"
	"postern/pkg/server"
)

func main() { server.Main(server.Program{Name: "pickup", New: pickup.New}) }

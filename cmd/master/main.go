// Command master is Postern's supervisor; see package postern/pkg/master.
package main

import (
	"os"

	"postern/pkg/master"
)

func main() { os.Exit(master.Main(os.Args[1:])) }

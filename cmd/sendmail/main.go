// Command sendmail is Postern's Sendmail-compatible submission program,
// also mailq and newaliases by name; see package postern/pkg/sendmail.
package main

import (
	"os"

	"postern/pkg/sendmail"
)

func main() { os.Exit(sendmail.Main(os.Args[1:])) }

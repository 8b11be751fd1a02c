// Command postdrop is the set-group-ID step that writes a message into
// maildrop/ for sendmail; see package postern/pkg/sendmail/drop.
package main

import (
	"os"

	"postern/pkg/sendmail/drop"
)

func main() { os.Exit(drop.PostdropMain(os.Args[1:], os.Stderr)) }

// Command postdrop is the set-group-ID step that writes a message into
// maildrop/ for sendmail; see package postern/pkg/sendmail/drop. Run as
// "postdrop showq ..." it is instead the set-group-ID step through which
// mailq reaches the showq service in public/ (pkg/queuectl showq.go).
package main

import (
	"os"

	"postern/pkg/queuectl"
	"postern/pkg/sendmail/drop"
)

func main() {
	if queuectl.IsShowqRelay(os.Args) {
		os.Exit(queuectl.ShowqRelayMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(drop.PostdropMain(os.Args[1:], os.Stderr))
}

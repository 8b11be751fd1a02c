// Command postdrop is the set-group-ID step that writes a message into
// maildrop/ for sendmail; see package postern/pkg/sendmail/drop. Run as
// "postdrop showq ..." or "postdrop flush ..." it is instead the
// set-group-ID step through which mailq and sendmail -q reach the showq
// and qmgr services in public/ (pkg/queuectl showq.go, flush.go).
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
	if queuectl.IsFlushRelay(os.Args) {
		os.Exit(queuectl.FlushRelayMain(os.Args[2:], os.Stderr))
	}
	os.Exit(drop.PostdropMain(os.Args[1:], os.Stderr))
}

// Command smtp is Postern's SMTP and LMTP delivery agent, run as "smtp"
// (also for the relay service) and as "lmtp"; see package
// postern/pkg/smtpclient.
package main

import (
	"postern/pkg/server"
	"postern/pkg/smtpclient"
)

func main() { server.Main(server.Program{Name: "smtp", New: smtpclient.New}) }

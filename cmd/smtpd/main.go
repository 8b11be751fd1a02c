// Command smtpd is Postern's SMTP server; see package postern/pkg/smtpd.
package main

import (
	"postern/pkg/server"
	"postern/pkg/smtpd"
)

func main() { server.Main(server.Program{Name: "smtpd", New: smtpd.New}) }

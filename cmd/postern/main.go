// Command postern is the admin's command; see package postern/pkg/admin.
package main

import (
	"os"

	"postern/pkg/admin"
)

func main() { os.Exit(admin.Main(os.Args[1:], os.Stdout, os.Stderr)) }

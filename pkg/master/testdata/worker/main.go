// Command worker is the test daemon of pkg/master's integration tests.
// Its role follows argv[0], as the master runs it under master.cf
// command names: "trig", "qmgr" and "pickup" are trigger services that
// append each request byte to the file named by their first argument (if
// any); "crash" fails at startup; any other name is an echo service that
// greets with "hello PROGRAM MYHOSTNAME PID" and echoes lines.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"postern/pkg/server"
)

type echo struct{ sc *server.Context }

func (e echo) Handle(ctx context.Context, conn net.Conn) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fmt.Fprintf(conn, "hello %s %s %d\n", e.sc.Program, e.sc.Config.Get("myhostname"), os.Getpid())
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := conn.Write([]byte(line)); err != nil {
			return
		}
	}
}

type trigger struct{ path string }

func (t trigger) Wake(_ context.Context, b byte) {
	if t.path == "" {
		return
	}
	f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	f.Write([]byte{b})
	f.Close()
}

func newService(_ context.Context, sc *server.Context) (any, error) {
	switch sc.Program {
	case "crash":
		return nil, errors.New("crashing on purpose")
	case "trig", "qmgr", "pickup":
		t := trigger{}
		if len(sc.Args) > 0 {
			t.path = sc.Args[0]
		}
		return t, nil
	}
	return echo{sc}, nil
}

func main() { server.Main(server.Program{Name: "worker", New: newService}) }

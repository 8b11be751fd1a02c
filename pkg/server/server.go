// Package server is the one skeleton every Postern daemon runs in: smtpd,
// cleanup, qmgr, local, smtp, pickup. It is Postfix's single_server,
// multi_server and trigger_server recast for Go: a daemon supplies a
// Program whose New returns a Handler (one call per accepted connection)
// or a Trigger (one call per wake-up byte), and the skeleton does the
// rest.
//
// Main owns, in this order: the command line (-c DIR -n NAME -t TYPE
// -o name=value ... -v, then the service's remaining master.cf
// arguments), main.cf (config.Load of config.Dir(-c)) with the -o
// overrides applied on top ($service_name in a value expands to the
// master.cf service name, as in Postfix), the log (maillog, tagged
// syslog_name/PROGRAM where PROGRAM is the base name of argv[0]), the
// inherited listener and status socket (see proto.go), the privilege
// check, the working directory (queue_directory), the accept loop, the
// session bound (MaxProc), use and idle limits, and every way of
// stopping. Daemon code never calls Accept, os.Exit or signal.Notify.
//
// # Modes
//
// Handler services (smtpd, cleanup, local, smtp): each accepted
// connection runs Handle in its own goroutine, at most MaxProc at once;
// further clients wait in the kernel's listen backlog, which is how
// master.cf's maxproc bounds a service. The skeleton closes the
// connection when Handle returns. After max_use × MaxProc sessions
// (max_use × default_process_limit when MaxProc is 0), or max_idle
// without a session, the worker retires: it tells the master, which
// starts a replacement on the same listener at once, stops accepting,
// lets its sessions finish and exits 0. The product keeps Postfix's
// turnover rate, whose max_use counts per process and whose maxproc
// counts processes.
//
// Trigger services (qmgr, pickup): clients connect, write one or more
// request bytes ('W' wake up, 'F' flush, ...) and close; Wake is called
// once per byte, serially, in arrival order. No reply is sent. Trigger
// services ignore max_use and max_idle, as Postfix's qmgr and pickup do.
//
// # Stopping
//
// EOF on the status socket (the master reloads, removes the service or is
// gone), or retirement: stop accepting, let running sessions finish (at
// most GracefulTimeout), then cancel the context given to New and to
// Context.Go goroutines, wait for them at most StopTimeout, exit 0.
// SIGTERM or SIGINT: stop accepting, cancel the context at once, wait at
// most StopTimeout, exit 0. SIGHUP is ignored (reload is the master's).
// A fatal startup error is logged as "fatal: ..." and exits 1.
//
// # Security
//
// The skeleton trusts its command line, environment and inherited
// descriptors: only the master starts workers. It refuses to run without
// a master (no EnvListen) and, when master.cf marks the service
// unprivileged, refuses to serve as root: dropping privileges is the
// master's job, done by exec with SysProcAttr.Credential before any Go
// code of the worker runs, never with setuid inside a running process.
// Peers of the listener are untrusted; the skeleton bounds their number
// (MaxProc) and, for triggers, the bytes and time one connection may use.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"postern/pkg/config"
	"postern/pkg/maillog"
)

// Timeouts of a stopping worker.
const (
	// GracefulTimeout bounds how long a retiring or reloaded worker lets
	// its sessions run before it cancels them.
	GracefulTimeout = 10 * time.Minute
	// StopTimeout bounds the wait for handlers and goroutines after the
	// context is cancelled. The master's own kill timeout is longer.
	StopTimeout = 5 * time.Second
)

// Trigger connection limits: a trigger client writes a byte or a few and
// closes; anything beyond these bounds is a misbehaving peer.
const (
	triggerMaxConns = 16
	triggerMaxBytes = 64
	triggerTimeout  = 5 * time.Second
)

// Context is what a daemon's New receives.
type Context struct {
	Config  *config.Config // main.cf with the service's -o overrides applied
	Service string         // -n: master.cf service name, e.g. "smtp" or "127.0.0.1:2525"
	Type    string         // -t: inet, unix, fifo, ...
	Program string         // base name of argv[0]: "smtpd", "virtual", "lmtp"
	Args    []string       // master.cf arguments after the skeleton's own flags
	Log     *maillog.Logger
	Verbose bool
	MaxProc int // concurrent sessions bound (0 = unlimited)
	// Go starts a goroutine owned by the skeleton: ctx is cancelled on
	// shutdown, and the skeleton waits for f to return (at most
	// StopTimeout) before it exits.
	Go func(f func(ctx context.Context))
}

// Handler serves one connection. The skeleton calls Handle in its own
// goroutine, at most MaxProc at once, and closes conn when it returns.
// ctx is cancelled when the worker must stop at once (SIGTERM); Stopping(ctx)
// is closed earlier, when it stops taking new connections (reload,
// max_use, max_idle): a handler that keeps a connection open between
// requests then ends it after the request in progress.
type Handler interface {
	Handle(ctx context.Context, conn net.Conn)
}

type stoppingKey struct{}

// Stopping returns a channel closed once the worker that passed ctx to
// Handle stops accepting connections (nil, never closed, for other
// contexts).
func Stopping(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(stoppingKey{}).(chan struct{})
	return ch
}

// Trigger receives wake-up requests: each byte a client writes calls
// Wake, serially.
type Trigger interface {
	Wake(ctx context.Context, b byte)
}

// Program describes a daemon.
type Program struct {
	Name string // program name for logs when argv[0] is empty
	// New builds the service. It returns a Handler or a Trigger; an error
	// is fatal. ctx lives until the worker stops.
	New func(ctx context.Context, sc *Context) (any, error)
}

// Main runs the program as a worker of the master and never returns.
func Main(p Program) {
	os.Exit(run(p, os.Args))
}

// args is the parsed command line.
type args struct {
	dir       string
	service   string
	typ       string
	overrides [][2]string
	verbose   bool
	rest      []string
}

// parseArgs reads the skeleton's flags. Parsing stops at the first
// argument that is not one of them; that and everything after it is left
// to the daemon (Context.Args). "-o name=value" and "-oname=value" are
// both accepted, as getopt does; "-D" (Postfix's debugger hook) is
// accepted and ignored.
func parseArgs(argv []string) (args, error) {
	var a args
	i := 0
	value := func(opt string) (string, error) {
		if len(argv[i]) > 2 {
			return argv[i][2:], nil
		}
		if i+1 >= len(argv) {
			return "", fmt.Errorf("option %s requires a value", opt)
		}
		i++
		return argv[i], nil
	}
	for ; i < len(argv); i++ {
		s := argv[i]
		if s == "--" {
			i++
			break
		}
		if len(s) < 2 || s[0] != '-' {
			break
		}
		opt := s[:2]
		switch opt {
		case "-c", "-n", "-t", "-o":
			v, err := value(opt)
			if err != nil {
				return a, err
			}
			switch opt {
			case "-c":
				a.dir = v
			case "-n":
				a.service = v
			case "-t":
				a.typ = v
			case "-o":
				name, val, ok := strings.Cut(v, "=")
				name = strings.TrimSpace(name)
				if !ok || name == "" {
					return a, fmt.Errorf("bad -o argument %q: want name=value", v)
				}
				a.overrides = append(a.overrides, [2]string{name, strings.TrimSpace(val)})
			}
		case "-v", "-D":
			if strings.Trim(s[1:], "vD") != "" {
				return a, fmt.Errorf("unknown option %q", s)
			}
			if strings.Contains(s, "v") {
				a.verbose = true
			}
		default:
			goto done
		}
	}
done:
	a.rest = argv[i:]
	return a, nil
}

// run is Main returning its exit status.
func run(p Program, argv []string) int {
	program := p.Name
	if len(argv) > 0 && argv[0] != "" {
		program = filepath.Base(argv[0])
	}
	early := func(format string, v ...any) int {
		fmt.Fprintf(os.Stderr, "%s: fatal: %s\n", program, fmt.Sprintf(format, v...))
		return ExitFatal
	}
	var rest []string
	if len(argv) > 1 {
		rest = argv[1:]
	}
	a, err := parseArgs(rest)
	if err != nil {
		return early("%v", err)
	}
	// A worker's heap is small (a few MB) and its garbage is per-message
	// buffers: collecting less often trades a few MB for CPU on every
	// message. GOGC in the environment still decides when set.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	listenName := os.Getenv(EnvListen)
	if listenName == "" {
		return early("no listener from the master: %s is started by the Postern master(8) from master.cf; use \"postern start\"", program)
	}
	cfg, err := config.Load(config.Dir(a.dir))
	if err != nil {
		return early("%v", err)
	}
	if a.service == "" {
		a.service = program
	}
	// Postfix's daemons define these two for $name expansion in -o
	// values (e.g. syslog_name=postfix/$service_name).
	cfg.Set("service_name", a.service)
	cfg.Set("process_name", program)
	for _, o := range a.overrides {
		cfg.Set(o[0], o[1])
	}
	log, err := maillog.New(maillog.Options{
		SyslogName:   cfg.Get("syslog_name"),
		Program:      program,
		Facility:     cfg.Get("syslog_facility"),
		File:         cfg.Get("maillog_file"),
		FilePrefixes: nonEmpty(cfg.List("maillog_file_prefixes")),
		Hostname:     cfg.Get("myhostname"),
		Verbose:      a.verbose,
	})
	if err != nil {
		return early("%v", err)
	}
	defer log.Close()
	fatal := func(format string, v ...any) int {
		log.Fatal(format, v...)
		return ExitFatal
	}

	if os.Geteuid() == 0 && os.Getenv(EnvUnpriv) != "n" {
		return fatal("service %s runs as root but master.cf marks it unprivileged (unpriv column not n); the master starts it as mail_owner", a.service)
	}
	var lns []net.Listener
	for i, name := range strings.Fields(listenName) {
		fd := uintptr(ListenFD)
		if i > 0 {
			fd = uintptr(MoreListenFD + i - 1)
		}
		lf := os.NewFile(fd, name)
		ln, err := net.FileListener(lf)
		lf.Close()
		if err != nil {
			return fatal("listener %s on fd %d: %v", name, fd, err)
		}
		lns = append(lns, ln)
	}
	status := os.NewFile(StatusFD, "status")
	if _, err := status.Stat(); err != nil {
		return fatal("status socket on fd %d: %v", StatusFD, err)
	}
	qdir := cfg.Get("queue_directory")
	if err := os.Chdir(qdir); err != nil {
		return fatal("chdir %s: %v", qdir, err)
	}
	maxProc, _ := strconv.Atoi(os.Getenv(EnvMaxProc))
	if maxProc < 0 {
		maxProc = 0
	}
	log.Debug("starting: service %s type %s listener %s generation %s maxproc %d",
		a.service, a.typ, listenName, os.Getenv(EnvGeneration), maxProc)

	w := newWorker(log, lns, status)
	sc := &Context{
		Config:  cfg,
		Service: a.service,
		Type:    a.typ,
		Program: program,
		Args:    a.rest,
		Log:     log,
		Verbose: a.verbose,
		MaxProc: maxProc,
		Go:      w.goFunc,
	}
	signal.Ignore(syscall.SIGHUP)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	svc, err := p.New(w.ctx, sc)
	if err != nil {
		w.cancel()
		return fatal("%v", err)
	}
	switch s := svc.(type) {
	case Handler:
		slots := maxProc
		if slots == 0 {
			slots = cfg.Int("default_process_limit")
		}
		limit := 0
		if mu := cfg.Int("max_use"); mu > 0 && slots > 0 {
			limit = mu * slots
		}
		w.serveHandler(s, maxProc, limit, cfg.Duration("max_idle"))
	case Trigger:
		w.serveTrigger(s)
	default:
		w.cancel()
		return fatal("%s: New returned %T, neither a server.Handler nor a server.Trigger", program, svc)
	}
	go w.watchStatus()
	return w.wait(sigs)
}

// nonEmpty returns nil for an empty list, so maillog applies its default.
func nonEmpty(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

// worker is the running state of one worker process.
type worker struct {
	log    *maillog.Logger
	lns    []net.Listener
	status *os.File
	ctx    context.Context
	cancel context.CancelFunc

	stopOnce  sync.Once
	stopped   chan struct{} // closed when accepting stops
	retireCh  chan string   // reason the worker retires
	eofCh     chan struct{} // status socket EOF
	fatalCh   chan error    // accept loop failure
	sessions  sync.WaitGroup
	goroutine sync.WaitGroup

	statusMu sync.Mutex
	used     bool
}

func newWorker(log *maillog.Logger, lns []net.Listener, status *os.File) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	ctx = context.WithValue(ctx, stoppingKey{}, stopped)
	return &worker{
		log:      log,
		lns:      lns,
		status:   status,
		ctx:      ctx,
		cancel:   cancel,
		stopped:  stopped,
		retireCh: make(chan string, 1),
		eofCh:    make(chan struct{}),
		fatalCh:  make(chan error, 1),
	}
}

func (w *worker) goFunc(f func(ctx context.Context)) {
	w.goroutine.Add(1)
	go func() {
		defer w.goroutine.Done()
		f(w.ctx)
	}()
}

// notify writes a status notice; errors mean the master is gone, which
// watchStatus reports as EOF.
func (w *worker) notify(b byte) {
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	w.status.Write([]byte{b})
}

// markUsed sends StatusUsed once.
func (w *worker) markUsed() {
	w.statusMu.Lock()
	first := !w.used
	w.used = true
	w.statusMu.Unlock()
	if first {
		w.notify(StatusUsed)
	}
}

// watchStatus reports EOF (or any error) on the status socket.
func (w *worker) watchStatus() {
	buf := make([]byte, 64)
	for {
		if _, err := w.status.Read(buf); err != nil {
			close(w.eofCh)
			return
		}
	}
}

// stopAccepting closes the listener once; the master's copy stays open.
func (w *worker) stopAccepting() {
	w.stopOnce.Do(func() {
		close(w.stopped)
		for _, ln := range w.lns {
			ln.Close()
		}
	})
}

func (w *worker) retire(reason string) {
	select {
	case w.retireCh <- reason:
	default:
	}
}

func (w *worker) acceptError(err error) {
	select {
	case <-w.stopped:
		return
	default:
	}
	select {
	case w.fatalCh <- err:
	default:
	}
}

// accept waits for a connection, retrying transient errors (EMFILE,
// ECONNABORTED) with a growing pause as net/http does. It returns nil
// once accepting has stopped or failed for good.
func (w *worker) accept(ln net.Listener) net.Conn {
	var pause time.Duration
	for {
		conn, err := ln.Accept()
		if err == nil {
			return conn
		}
		if errors.Is(err, net.ErrClosed) {
			w.acceptError(err)
			return nil
		}
		var ne net.Error
		if !errors.As(err, &ne) && !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) && !errors.Is(err, syscall.ECONNABORTED) {
			w.acceptError(err)
			return nil
		}
		if pause == 0 {
			pause = 5 * time.Millisecond
		} else if pause *= 2; pause > time.Second {
			pause = time.Second
		}
		w.log.Warning("accept: %v; retrying in %v", err, pause)
		select {
		case <-time.After(pause):
		case <-w.stopped:
			return nil
		}
	}
}

// serveHandler runs the accept loops of a Handler service, one per
// listener, sharing the session bound and the use count.
func (w *worker) serveHandler(h Handler, maxProc, maxUse int, maxIdle time.Duration) {
	var sem chan struct{}
	if maxProc > 0 {
		sem = make(chan struct{}, maxProc)
	}
	var (
		mu     sync.Mutex
		active int
		served int
		idle   *time.Timer
	)
	if maxIdle > 0 {
		idle = time.AfterFunc(maxIdle, func() {
			mu.Lock()
			defer mu.Unlock()
			if active == 0 {
				w.retire(fmt.Sprintf("idle for %v (max_idle)", maxIdle))
			}
		})
	}
	// begin counts a new session; it reports false when max_use was
	// reached before it, and then the connection is not served.
	begin := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if maxUse > 0 && served >= maxUse {
			return false
		}
		served++
		active++
		if idle != nil {
			idle.Stop()
		}
		if maxUse > 0 && served >= maxUse {
			w.retire(fmt.Sprintf("served %d sessions (max_use)", served))
		}
		return true
	}
	end := func() {
		mu.Lock()
		defer mu.Unlock()
		active--
		if active == 0 && idle != nil {
			idle.Reset(maxIdle)
		}
	}
	for _, ln := range w.lns {
		go func() {
			for {
				if sem != nil {
					select {
					case sem <- struct{}{}:
					case <-w.stopped:
						return
					}
				}
				conn := w.accept(ln)
				if conn == nil {
					return
				}
				w.markUsed()
				if !begin() {
					// Another listener's loop took the last use;
					// the client is dropped, as a Postfix process
					// that exits after max_use leaves the next
					// client to a fresh process. Rare: only with
					// several listeners.
					conn.Close()
					if sem != nil {
						<-sem
					}
					return
				}
				w.sessions.Add(1)
				go func() {
					defer func() {
						conn.Close()
						if sem != nil {
							<-sem
						}
						end()
						w.sessions.Done()
					}()
					h.Handle(w.ctx, conn)
				}()
				if maxUse > 0 {
					mu.Lock()
					done := served >= maxUse
					mu.Unlock()
					if done {
						return
					}
				}
			}
		}()
	}
}

// serveTrigger runs the accept loops of a Trigger service: connection
// readers feed one goroutine that calls Wake in arrival order.
func (w *worker) serveTrigger(t Trigger) {
	reqs := make(chan byte, 256)
	w.goFunc(func(ctx context.Context) {
		for {
			select {
			case b := <-reqs:
				t.Wake(ctx, b)
			case <-ctx.Done():
				return
			}
		}
	})
	sem := make(chan struct{}, triggerMaxConns)
	for _, ln := range w.lns {
		go func() {
			for {
				select {
				case sem <- struct{}{}:
				case <-w.stopped:
					return
				}
				conn := w.accept(ln)
				if conn == nil {
					return
				}
				w.markUsed()
				w.sessions.Add(1)
				go func() {
					defer func() {
						conn.Close()
						<-sem
						w.sessions.Done()
					}()
					w.readTrigger(conn, reqs)
				}()
			}
		}()
	}
}

// readTrigger forwards the request bytes of one trigger client as they
// arrive, up to triggerMaxBytes within triggerTimeout.
func (w *worker) readTrigger(conn net.Conn, reqs chan<- byte) {
	conn.SetReadDeadline(time.Now().Add(triggerTimeout))
	buf := make([]byte, triggerMaxBytes)
	for total := 0; total < triggerMaxBytes; {
		n, err := conn.Read(buf[:triggerMaxBytes-total])
		total += n
		for _, b := range buf[:n] {
			select {
			case reqs <- b:
			case <-w.ctx.Done():
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitTimeout waits for wg at most d; it reports whether wg finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration, abort <-chan os.Signal) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	case <-abort:
		return false
	}
}

// wait runs until a stop condition and carries out the stop.
func (w *worker) wait(sigs chan os.Signal) int {
	graceful := true
	select {
	case sig := <-sigs:
		w.log.Debug("stopping on signal %v", sig)
		graceful = false
	case <-w.eofCh:
		w.log.Debug("status socket closed: stopping after the running sessions")
	case reason := <-w.retireCh:
		w.log.Debug("retiring: %s", reason)
		w.notify(StatusRetiring)
	case err := <-w.fatalCh:
		w.stopAccepting()
		w.cancel()
		waitTimeout(&w.sessions, StopTimeout, nil)
		w.log.Fatal("accept: %v", err)
		return ExitFatal
	}
	w.stopAccepting()
	if graceful && !waitTimeout(&w.sessions, GracefulTimeout, sigs) {
		w.log.Warning("sessions still running; cancelling them")
	}
	w.cancel()
	all := &sync.WaitGroup{}
	all.Add(1)
	go func() {
		w.sessions.Wait()
		w.goroutine.Wait()
		all.Done()
	}()
	if !waitTimeout(all, StopTimeout, nil) {
		w.log.Warning("exiting with handlers still running after %v", StopTimeout)
	}
	return ExitOK
}

// Package master is Postern's supervisor, Postfix's master(8): it reads
// main.cf and master.cf, opens every service's listener, runs one worker
// process per service, restarts workers that die, and reloads or stops
// the whole instance on a signal. cmd/master is its command:
//
//	master [-c DIR] [-d] [-v]
//
// -d keeps the master in the foreground (systemd, tests). Without -d it
// starts itself again in a new session and returns once that copy is
// ready (listeners open, pid file written), or failed, printing why.
//
// # One worker per service
//
// Postfix runs up to maxproc processes per service, one client each.
// Postern runs one worker process per service that serves up to maxproc
// sessions at once as goroutines (pkg/server): the same concurrency bound
// without a process per client, and with one place that decides whether a
// further client is taken. A second worker of a service exists only while
// an old one finishes its sessions after a reload, or after it retired on
// max_use or max_idle (it says so on its status socket and the master
// starts a replacement at once). The worker contract (descriptors,
// environment, notices, exit codes) is pkg/server's proto.go.
//
// # Services
//
// Resolve maps each master.cf line to a program in daemon_directory.
// Postfix's stock master.cf runs unchanged: a program Postern has
// (smtpd, cleanup, qmgr, pickup, smtp, local) runs as itself; virtual,
// lmtp and oqmgr run local, smtp and qmgr under their Postfix name; every
// other Postfix program (trivial-rewrite, bounce, tlsmgr, ...) is
// skipped with one log line saying which Postern program does its job.
// unix-dgram (postlog) and pass services are skipped the same way.
// Addresses gives the sockets: inet "host:port", "[v6]:port" or a bare
// port on every inet_interfaces address; unix and fifo services are
// stream sockets in $queue_directory/private or public, mode 0666 (the
// directory's mode guards them).
//
// Wake-ups: every wakeup seconds the master connects to the service and
// writes 'W'; with "N?" only once the service has been used. Failures are
// quiet except with -v.
//
// # Lifecycle
//
// Start: load both files, resolve mail_owner (root only), create or
// repair the queue tree and data_directory (Prepare), chdir to
// queue_directory, take the instance
// lock $data_directory/master.lock (a second master of the instance
// fails), open every listener (a failure is fatal), write
// $queue_directory/pid/master.pid, log "daemon started -- version X,
// configuration DIR", start the workers: those with a wake-up timer
// (qmgr, pickup) at once, the others on demand, when a client first waits
// on one of their listeners (the master polls them; a waiting client sits
// in the listen backlog meanwhile), as Postfix's master does.
//
// A worker that exits abnormally is logged ("warning: process PATH pid N
// exit status S" or "killed by signal S") and restarted (on demand, as
// above), unless
// it never served and died within startupWindow of its start: then
// "warning: PATH: bad command startup -- throttling" and the next start
// waits service_throttle_time. A worker that exits 0 is restarted too
// (throttled the same way if it exits within a second without serving,
// to break a restart loop).
//
// SIGHUP: re-read both files; a broken file is logged with its file:line
// and the running configuration stays. Otherwise "reload -- version X,
// configuration DIR", then: removed services lose their worker (told to
// finish, via its status socket) and their listeners; new services are
// opened and started; every other service gets a fresh worker on its kept
// listener while the old worker finishes its sessions, so new sessions
// see the new configuration at once and running ones are not cut. A
// service whose listener changed (type, private, address) is closed and
// opened again.
//
// SIGTERM or SIGINT: "terminating on signal N", close every status
// socket and send SIGTERM to every worker, SIGKILL after killTimeout,
// reap them all, remove the pid file, exit 0.
//
// # Security
//
// The master runs as root or as the invoking user and trusts main.cf,
// master.cf and daemon_directory, which only root may write in a system
// install. It never reads mail or talks to clients: it opens sockets and
// passes them on. Started as root it starts a service with unpriv=y (the
// default) as mail_owner via SysProcAttr.Credential at exec, so no
// Postern code of that worker ever runs as root; unpriv=n services
// (local) keep root. Not root, nothing changes identity. Wake-up triggers
// carry no data.
package master

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"postern/pkg/config"
	"postern/pkg/maillog"
	"postern/pkg/mastercf"
	"postern/pkg/server"

	"golang.org/x/sys/unix"
)

const (
	// startupWindow: a worker that dies this young without having served
	// throttles its service.
	startupWindow = 5 * time.Second
	// killTimeout is how long stop waits after SIGTERM before SIGKILL.
	killTimeout = 10 * time.Second
	// readyEnv tells a detached master which descriptor to report
	// readiness on.
	readyEnv = "POSTERN_MASTER_READY_FD"
)

// Main runs the master with its command line (without argv[0]) and
// returns the exit status.
func Main(args []string) int {
	fs := flag.NewFlagSet("master", flag.ContinueOnError)
	dir := fs.String("c", "", "configuration directory")
	fg := fs.Bool("d", false, "stay in the foreground")
	verbose := fs.Bool("v", false, "verbose logging")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "master: fatal: unexpected argument %q\nusage: master [-c DIR] [-d] [-v]\n", fs.Arg(0))
		return 2
	}
	if !*fg {
		return detach(args)
	}
	return run(config.Dir(*dir), *verbose)
}

// detach starts "master -d" in a new session and waits until it reports
// ready on a pipe, or exits; the child's early stderr is copied to ours.
func detach(args []string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "master: fatal: %v\n", err)
		return 1
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "master: fatal: %v\n", err)
		return 1
	}
	er, ew, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "master: fatal: %v\n", err)
		return 1
	}
	cmd := exec.Command(exe, append([]string{"-d"}, args...)...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), readyEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = ew
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "master: fatal: start %s: %v\n", exe, err)
		return 1
	}
	w.Close()
	ew.Close()
	copied := make(chan struct{})
	go func() {
		io.Copy(os.Stderr, er)
		close(copied)
	}()
	b, _ := io.ReadAll(io.LimitReader(r, 64))
	r.Close()
	if strings.HasPrefix(string(b), "ready") {
		// The child points its stderr at /dev/null once ready, which
		// ends the copy.
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
		cmd.Process.Release()
		return 0
	}
	cmd.Wait()
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	if code := cmd.ProcessState.ExitCode(); code > 0 {
		return code
	}
	return 1
}

// becomeReady tells a waiting detach parent that startup succeeded and
// drops the stdio it shared with it.
func becomeReady() {
	fdText := os.Getenv(readyEnv)
	if fdText == "" {
		return
	}
	os.Unsetenv(readyEnv)
	if fd, err := strconv.Atoi(fdText); err == nil {
		f := os.NewFile(uintptr(fd), "ready")
		f.Write([]byte("ready\n"))
		f.Close()
	}
	if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			syscall.Dup3(int(null.Fd()), fd, 0)
		}
		null.Close()
	}
}

// service is the running state of one master.cf service.
type service struct {
	def   mastercf.Service
	plan  Plan
	addrs []Address
	lns   []*os.File // the master's copies, kept across workers
	cur   *proc      // the worker that accepts, if any
	old   map[*proc]bool
	used  atomic.Bool
	// throttleGen invalidates pending throttle restarts.
	throttleGen int
	throttled   bool
	removed     bool
	wakeStop    chan struct{}
	// waiting is the goroutine that waits for the first client of a
	// service started on demand (see awaitDemand); demand is set once
	// one came.
	waiting *demandWait
	demand  bool
}

// demandWait is one wait for a client on a service's listeners; closing
// cancel ends it.
type demandWait struct {
	cancel *os.File // write end of a pipe the waiter polls too
}

// proc is one worker process.
type proc struct {
	svc     *service
	cmd     *exec.Cmd
	pid     int
	status  *os.File // the master's end of the status socket
	started time.Time
	used    bool
	closed  bool
}

type statusEvent struct {
	p *proc
	b byte
}

type restartReq struct {
	s   *service
	gen int
}

// supervisor is a running master.
type supervisor struct {
	dir      string
	verbose  bool
	cfg      *config.Config
	log      *maillog.Logger
	owner    Owner
	gen      int
	services map[string]*service
	order    []string
	procs    map[*proc]bool
	exits    chan *proc
	statuses chan statusEvent
	restarts chan restartReq
	demands  chan *service
	done     chan struct{}
	stopping bool
}

func newLog(cfg *config.Config, verbose bool) (*maillog.Logger, error) {
	prefixes := cfg.List("maillog_file_prefixes")
	if len(prefixes) == 0 {
		prefixes = nil
	}
	return maillog.New(maillog.Options{
		SyslogName:   cfg.Get("syslog_name"),
		Program:      "master",
		Facility:     cfg.Get("syslog_facility"),
		File:         cfg.Get("maillog_file"),
		FilePrefixes: prefixes,
		Hostname:     cfg.Get("myhostname"),
		Verbose:      verbose,
	})
}

func run(dir string, verbose bool) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	early := func(format string, v ...any) int {
		fmt.Fprintf(os.Stderr, "master: fatal: %s\n", fmt.Sprintf(format, v...))
		return 1
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return early("%v", err)
	}
	log, err := newLog(cfg, verbose)
	if err != nil {
		return early("%v", err)
	}
	toStderr := cfg.Get("maillog_file") != "/dev/stderr"
	fatal := func(format string, v ...any) int {
		log.Fatal(format, v...)
		if toStderr {
			early(format, v...)
		}
		return 1
	}
	m := &supervisor{
		dir:      dir,
		verbose:  verbose,
		cfg:      cfg,
		log:      log,
		gen:      1,
		services: map[string]*service{},
		procs:    map[*proc]bool{},
		exits:    make(chan *proc),
		statuses: make(chan statusEvent),
		restarts: make(chan restartReq),
		demands:  make(chan *service),
		done:     make(chan struct{}),
	}
	defer func() { m.log.Close() }()
	if m.owner, err = LookupOwner(cfg); err != nil {
		return fatal("%v", err)
	}
	changes, err := Prepare(cfg, m.owner)
	for _, c := range changes {
		log.Warning("%s", c)
	}
	if err != nil {
		return fatal("%v", err)
	}
	// Like Postfix's daemons, every process of the instance works in
	// queue_directory, which is how tools find them (DESIGN §8).
	if err := os.Chdir(cfg.Get("queue_directory")); err != nil {
		return fatal("%v", err)
	}
	lockFile, err := lock(LockFile(cfg))
	if err != nil {
		return fatal("%v", err)
	}
	defer lockFile.Close()
	defs, problems, err := mastercf.Load(dir, cfg.Int("default_process_limit"))
	if err != nil {
		return fatal("%v", err)
	}
	m.logProblems(problems)
	for _, s := range m.plan(defs) {
		if err := m.open(s); err != nil {
			m.closeAll()
			return fatal("%v", err)
		}
		m.add(s)
	}
	pidFile := PidFile(cfg)
	if err := writePid(pidFile); err != nil {
		m.closeAll()
		return fatal("write pid file: %v", err)
	}
	becomeReady()
	log.Printf("daemon started -- version %s, configuration %s", cfg.Get("mail_version"), dir)
	for _, key := range m.order {
		m.start(m.services[key])
	}
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				m.reload()
				continue
			}
			m.terminate(sig.(syscall.Signal))
			os.Remove(pidFile)
			return 0
		case p := <-m.exits:
			m.exited(p)
		case ev := <-m.statuses:
			m.status(ev)
		case r := <-m.restarts:
			if r.s.removed || r.gen != r.s.throttleGen || m.stopping {
				continue
			}
			r.s.throttled = false
			m.start(r.s)
		case s := <-m.demands:
			if s.waiting == nil {
				continue // cancelled meanwhile
			}
			m.cancelDemand(s)
			s.demand = true
			m.start(s)
		}
	}
}

func (m *supervisor) logProblems(problems []config.Problem) {
	for _, p := range problems {
		if p.Line > 0 {
			m.log.Warning("%s:%d: %s", p.File, p.Line, p.Msg)
		} else {
			m.log.Warning("%s: %s", p.File, p.Msg)
		}
	}
}

// plan resolves services for the current configuration, logging each
// skipped one once.
func (m *supervisor) plan(defs []mastercf.Service) []*service {
	daemonDir := m.cfg.Get("daemon_directory")
	var out []*service
	for _, d := range defs {
		p := Resolve(d, daemonDir)
		if p.Skip != "" {
			m.log.Printf("%s", p.Skip)
			continue
		}
		addrs, err := Addresses(m.cfg, d)
		if err != nil {
			m.log.Error("%s:%d: %v", d.File, d.Line, err)
			continue
		}
		if d.Wakeup > 0 && d.Type != mastercf.TypeInet && d.Type != mastercf.TypeUnix && d.Type != mastercf.TypeFifo {
			d.Wakeup = 0
		}
		out = append(out, &service{def: d, plan: p, addrs: addrs, old: map[*proc]bool{}})
	}
	return out
}

// open opens the listeners of s.
func (m *supervisor) open(s *service) error {
	for _, a := range s.addrs {
		f, err := listen(a)
		if err != nil {
			for _, l := range s.lns {
				l.Close()
			}
			s.lns = nil
			return fmt.Errorf("service %s: %w", s.def.Key(), err)
		}
		s.lns = append(s.lns, f)
	}
	return nil
}

// listen opens one socket and returns the master's copy of it.
func listen(a Address) (*os.File, error) {
	if a.Network == "unix" {
		if fi, err := os.Lstat(a.Address); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("%s exists and is not a socket", a.Address)
			}
			// A stale socket of an earlier master: the instance
			// lock says no other master uses it.
			os.Remove(a.Address)
		}
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: a.Address, Net: "unix"})
		if err != nil {
			return nil, err
		}
		l.SetUnlinkOnClose(false)
		f, err := l.File()
		l.Close()
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(a.Address, 0o666); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	l, err := net.Listen(a.Network, a.Address)
	if err != nil {
		return nil, err
	}
	f, err := l.(*net.TCPListener).File()
	l.Close()
	return f, err
}

// add registers an opened service and starts its wake-up timer.
func (m *supervisor) add(s *service) {
	m.services[s.def.Key()] = s
	m.order = append(m.order, s.def.Key())
	m.startWakeup(s)
}

func (m *supervisor) startWakeup(s *service) {
	if s.def.Wakeup <= 0 {
		return
	}
	s.wakeStop = make(chan struct{})
	go wakeLoop(m.log, &s.used, s.def.Key(), s.def.Wakeup, s.def.WakeupIfUsed, DialAddress(s.addrs[0]), s.wakeStop)
}

func (m *supervisor) stopWakeup(s *service) {
	if s.wakeStop != nil {
		close(s.wakeStop)
		s.wakeStop = nil
	}
}

// wakeLoop sends a 'W' trigger every interval.
func wakeLoop(log *maillog.Logger, used *atomic.Bool, key string, interval time.Duration, ifUsed bool, a Address, stop chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if ifUsed && !used.Load() {
			continue
		}
		c, err := net.DialTimeout(a.Network, a.Address, 2*time.Second)
		if err == nil {
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Write([]byte{'W'})
			c.Close()
		}
		if err != nil {
			log.Debug("wakeup %s: %v", key, err)
		}
	}
}

// DialAddress is where a client reaches a listener: a wildcard host
// becomes the loopback address of its family.
func DialAddress(a Address) Address {
	if a.Network == "unix" {
		return a
	}
	host, port, err := net.SplitHostPort(a.Address)
	if err != nil {
		return a
	}
	switch {
	case host == "" || host == "0.0.0.0":
		host = "127.0.0.1"
	case host == "::":
		host = "::1"
	}
	return Address{a.Network, net.JoinHostPort(host, port)}
}

// env is a worker's environment: import_environment, then the contract.
func (m *supervisor) env(s *service) []string {
	var env []string
	for _, item := range m.cfg.List("import_environment") {
		if strings.Contains(item, "=") {
			env = append(env, item)
		} else if v, ok := os.LookupEnv(item); ok {
			env = append(env, item+"="+v)
		}
	}
	names := make([]string, len(s.addrs))
	for i, a := range s.addrs {
		names[i] = a.String()
	}
	unpriv := "n"
	if s.def.Unpriv {
		unpriv = "y"
	}
	return append(env,
		"MAIL_CONFIG="+m.dir,
		server.EnvListen+"="+strings.Join(names, " "),
		server.EnvGeneration+"="+strconv.Itoa(m.gen),
		server.EnvMaxProc+"="+strconv.Itoa(s.def.Maxproc),
		server.EnvUnpriv+"="+unpriv,
		server.EnvServiceType+"="+s.def.Type,
	)
}

// start starts the accepting worker of s.
// start starts the worker of s: at once for a service with a wake-up
// timer (qmgr, pickup), otherwise once a client waits on one of its
// listeners, as Postfix's master starts services on demand: an
// instance runs only the processes its mail needs (the master holds
// the listeners, so no client is refused meanwhile).
func (m *supervisor) start(s *service) {
	if s.cur != nil || s.removed || m.stopping || s.throttled {
		return
	}
	if s.def.Wakeup <= 0 && !s.demand {
		m.awaitDemand(s)
		return
	}
	s.demand = false
	m.spawn(s)
}

// awaitDemand waits, in a goroutine, until a listener of s has a client
// waiting, then hands s to the main loop (m.demands).
func (m *supervisor) awaitDemand(s *service) {
	if s.waiting != nil || len(s.lns) == 0 {
		return
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		m.log.Warning("service %s: %v; starting it now", s.def.Key(), err)
		m.spawn(s)
		return
	}
	r, w := os.NewFile(uintptr(pipe[0]), "demand"), os.NewFile(uintptr(pipe[1]), "demand")
	s.waiting = &demandWait{cancel: w}
	fds := make([]unix.PollFd, 0, len(s.lns)+1)
	for _, l := range s.lns {
		fds = append(fds, unix.PollFd{Fd: int32(l.Fd()), Events: unix.POLLIN})
	}
	fds = append(fds, unix.PollFd{Fd: int32(r.Fd()), Events: unix.POLLIN})
	go func() {
		defer r.Close()
		for {
			_, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if err != nil || fds[len(fds)-1].Revents != 0 {
				return // cancelled (or the poll failed: stop waiting)
			}
			break
		}
		select {
		case m.demands <- s:
		case <-m.done:
		}
	}()
}

// cancelDemand ends a pending wait of s.
func (m *supervisor) cancelDemand(s *service) {
	if s.waiting != nil {
		s.waiting.cancel.Close()
		s.waiting = nil
	}
}

// spawn starts a worker process for s now.
func (m *supervisor) spawn(s *service) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		m.log.Warning("%s: status socket: %v", s.plan.Path, err)
		m.throttle(s)
		return
	}
	// Non-blocking so that the reader goroutine uses the poller and
	// Close interrupts it, which the worker then sees as EOF.
	syscall.SetNonblock(fds[0], true)
	mine, theirs := os.NewFile(uintptr(fds[0]), "status"), os.NewFile(uintptr(fds[1]), "status")
	argv := []string{s.plan.Argv0, "-c", m.dir, "-n", s.def.Name, "-t", s.def.Type}
	for _, o := range s.def.Overrides {
		argv = append(argv, "-o", o.Name+"="+o.Value)
	}
	argv = append(argv, s.def.Args...)
	extra := append([]*os.File{s.lns[0], theirs}, s.lns[1:]...)
	cmd := &exec.Cmd{
		Path:        s.plan.Path,
		Args:        argv,
		Env:         m.env(s),
		Dir:         m.cfg.Get("queue_directory"),
		ExtraFiles:  extra,
		Stderr:      os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{},
	}
	if os.Geteuid() == 0 && s.def.Unpriv {
		cmd.SysProcAttr.Credential = &syscall.Credential{
			Uid:    uint32(m.owner.UID),
			Gid:    uint32(m.owner.GID),
			Groups: []uint32{uint32(m.owner.GID)},
		}
	}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		mine.Close()
		m.log.Warning("%s: %v", s.plan.Path, err)
		m.throttle(s)
		return
	}
	p := &proc{svc: s, cmd: cmd, pid: cmd.Process.Pid, status: mine, started: time.Now()}
	s.cur = p
	m.procs[p] = true
	m.log.Debug("service %s: started %s pid %d", s.def.Key(), s.plan.Path, p.pid)
	go func() {
		cmd.Wait()
		m.exits <- p
	}()
	go m.readStatus(p)
}

func (m *supervisor) readStatus(p *proc) {
	buf := make([]byte, 16)
	for {
		n, err := p.status.Read(buf)
		for _, b := range buf[:n] {
			select {
			case m.statuses <- statusEvent{p, b}:
			case <-m.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// closeStatus tells p to stop accepting and finish.
func (p *proc) closeStatus() {
	if !p.closed {
		p.closed = true
		p.status.Close()
	}
}

// retire moves the accepting worker of s to the draining set.
func (m *supervisor) retire(s *service) {
	if p := s.cur; p != nil {
		s.cur = nil
		s.old[p] = true
		p.closeStatus()
	}
}

func (m *supervisor) status(ev statusEvent) {
	p, s := ev.p, ev.p.svc
	switch ev.b {
	case server.StatusUsed:
		p.used = true
		s.used.Store(true)
	case server.StatusRetiring:
		if s.cur == p {
			m.log.Debug("service %s: pid %d retires", s.def.Key(), p.pid)
			s.cur = nil
			s.old[p] = true
			m.start(s)
		}
	}
}

// throttle delays the next start of s by service_throttle_time.
func (m *supervisor) throttle(s *service) {
	s.throttleGen++
	s.throttled = true
	r := restartReq{s, s.throttleGen}
	time.AfterFunc(m.cfg.Duration("service_throttle_time"), func() {
		select {
		case m.restarts <- r:
		case <-m.done:
		}
	})
}

// exited handles a reaped worker.
func (m *supervisor) exited(p *proc) {
	delete(m.procs, p)
	p.closeStatus()
	s := p.svc
	st := p.cmd.ProcessState
	ws, _ := st.Sys().(syscall.WaitStatus)
	abnormal := !st.Success()
	if abnormal && !(m.stopping && ws.Signaled()) {
		if ws.Signaled() {
			m.log.Warning("process %s pid %d killed by signal %d", s.plan.Path, p.pid, ws.Signal())
		} else {
			m.log.Warning("process %s pid %d exit status %d", s.plan.Path, p.pid, ws.ExitStatus())
		}
	}
	if s.cur != p {
		delete(s.old, p)
		return
	}
	s.cur = nil
	if m.stopping || s.removed {
		return
	}
	age := time.Since(p.started)
	if !p.used && (abnormal && age < startupWindow || age < time.Second) {
		m.log.Warning("%s: bad command startup -- throttling", s.plan.Path)
		m.throttle(s)
		return
	}
	m.start(s)
}

// remove stops a service: its workers finish, its listeners close.
func (m *supervisor) remove(s *service) {
	s.removed = true
	m.stopWakeup(s)
	m.cancelDemand(s)
	m.retire(s)
	for p := range s.old {
		p.closeStatus()
	}
	for _, l := range s.lns {
		l.Close()
	}
	s.lns = nil
	for _, a := range s.addrs {
		if a.Network == "unix" {
			os.Remove(a.Address)
		}
	}
	delete(m.services, s.def.Key())
	m.order = slices.DeleteFunc(m.order, func(k string) bool { return k == s.def.Key() })
}

// closeAll closes every listener (startup failure).
func (m *supervisor) closeAll() {
	for _, s := range m.services {
		for _, l := range s.lns {
			l.Close()
		}
	}
}

func sameAddrs(a, b []Address) bool { return slices.Equal(a, b) }

// reload re-reads the configuration and replaces workers; see the package
// doc.
func (m *supervisor) reload() {
	cfg, err := config.Load(m.dir)
	if err != nil {
		m.log.Error("%v", err)
		m.log.Warning("reload failed: keeping the running configuration")
		return
	}
	defs, problems, err := mastercf.Load(m.dir, cfg.Int("default_process_limit"))
	if err != nil {
		m.log.Error("%v", err)
		m.log.Warning("reload failed: keeping the running configuration")
		return
	}
	if log, err := newLog(cfg, m.verbose); err != nil {
		m.log.Warning("reload: %v; logging as before", err)
	} else {
		m.log.Close()
		m.log = log
	}
	m.cfg = cfg
	m.gen++
	m.log.Printf("reload -- version %s, configuration %s", cfg.Get("mail_version"), m.dir)
	m.logProblems(problems)
	if owner, err := LookupOwner(cfg); err != nil {
		m.log.Warning("%v; keeping the previous mail_owner", err)
	} else {
		m.owner = owner
	}
	plans := m.plan(defs)
	wanted := map[string]*service{}
	for _, s := range plans {
		wanted[s.def.Key()] = s
	}
	for _, key := range slices.Clone(m.order) {
		s := m.services[key]
		if n, ok := wanted[key]; !ok || n.def.Type != s.def.Type || !sameAddrs(n.addrs, s.addrs) {
			m.remove(s)
		}
	}
	var order []string
	for _, n := range plans {
		key := n.def.Key()
		order = append(order, key)
		if s, ok := m.services[key]; ok {
			m.stopWakeup(s)
			s.def, s.plan = n.def, n.plan
			m.startWakeup(s)
			m.retire(s)
			s.throttleGen++
			s.throttled = false
			m.start(s)
			continue
		}
		if err := m.open(n); err != nil {
			m.log.Error("%v", err)
			order = order[:len(order)-1]
			continue
		}
		m.add(n)
		m.start(n)
	}
	m.order = order
}

// terminate stops every worker and waits until all are reaped.
func (m *supervisor) terminate(sig syscall.Signal) {
	m.log.Printf("terminating on signal %d", int(sig))
	m.stopping = true
	for _, s := range m.services {
		m.stopWakeup(s)
		m.cancelDemand(s)
	}
	for p := range m.procs {
		p.closeStatus()
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.NewTimer(killTimeout)
	defer deadline.Stop()
	killed := false
	for len(m.procs) > 0 {
		select {
		case p := <-m.exits:
			m.exited(p)
		case <-m.statuses:
		case <-m.restarts:
		case <-m.demands:
		case <-deadline.C:
			if killed {
				m.log.Warning("%d worker processes did not exit", len(m.procs))
				m.closeAll()
				close(m.done)
				return
			}
			for p := range m.procs {
				m.log.Warning("process %s pid %d did not stop; killing it", p.svc.plan.Path, p.pid)
				p.cmd.Process.Signal(syscall.SIGKILL)
			}
			killed = true
			deadline.Reset(5 * time.Second)
		}
	}
	m.closeAll()
	close(m.done)
}

// Package control implements "postern start", "stop", "reload" and
// "status", as Postfix's postfix-script does for postfix(1). Each
// function takes the configuration directory (-c; "" means
// config.Dir's default) and two writers, prints Postfix-shaped lines
// ("postern: starting the Postern mail system"; informational lines on
// stdout, warnings and fatal errors on stderr) and returns the exit
// status for the command.
//
// The instance is found through its files, never by process name: the
// master's pid is in $queue_directory/pid/master.pid and the master
// holds an flock on $data_directory/master.lock while it runs
// (master.Running). A pid file whose process is gone or whose lock is
// free is stale and means "not running".
//
// Start returns 0 only when the master is ready: its pid file exists and
// every inet listener of master.cf accepts a TCP connection. Stop returns
// 0 only when the master has exited, which it does after reaping every
// worker, and no process of daemon_directory still works in
// queue_directory.
package control

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"postern/pkg/config"
	"postern/pkg/maillog"
	"postern/pkg/master"
	"postern/pkg/mastercf"
)

// Timeouts of Start and Stop.
const (
	StartTimeout = 30 * time.Second
	StopTimeout  = 30 * time.Second
)

const pollInterval = 50 * time.Millisecond

// env is one command's configuration and output.
type env struct {
	cfg            *config.Config
	dir            string
	stdout, stderr io.Writer
	log            *maillog.Logger // nil when the log cannot be opened
}

func load(dir string, stdout, stderr io.Writer) (*env, int) {
	dir = config.Dir(dir)
	cfg, err := config.Load(dir)
	if err != nil {
		fmt.Fprintf(stderr, "postern: fatal: %v\n", err)
		return nil, 1
	}
	e := &env{cfg: cfg, dir: dir, stdout: stdout, stderr: stderr}
	prefixes := cfg.List("maillog_file_prefixes")
	if len(prefixes) == 0 {
		prefixes = nil
	}
	e.log, _ = maillog.New(maillog.Options{
		SyslogName:   cfg.Get("syslog_name"),
		Program:      "postern-script",
		Facility:     cfg.Get("syslog_facility"),
		File:         cfg.Get("maillog_file"),
		FilePrefixes: prefixes,
		Hostname:     cfg.Get("myhostname"),
	})
	return e, 0
}

func (e *env) close() {
	if e.log != nil {
		e.log.Close()
	}
}

func (e *env) info(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	fmt.Fprintf(e.stdout, "postern: %s\n", msg)
	if e.log != nil {
		e.log.Printf("%s", msg)
	}
}

func (e *env) warning(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	fmt.Fprintf(e.stderr, "postern: warning: %s\n", msg)
	if e.log != nil {
		e.log.Warning("%s", msg)
	}
}

func (e *env) fatal(format string, v ...any) int {
	msg := fmt.Sprintf(format, v...)
	fmt.Fprintf(e.stderr, "postern: fatal: %s\n", msg)
	if e.log != nil {
		e.log.Fatal("%s", msg)
	}
	return 1
}

// Start prepares the instance (queue tree, data_directory), starts
// $daemon_directory/master, and waits until it is ready.
func Start(dir string, stdout, stderr io.Writer) int {
	e, code := load(dir, stdout, stderr)
	if e == nil {
		return code
	}
	defer e.close()
	if _, ok := master.Running(e.cfg); ok {
		return e.fatal("the Postern mail system is already running")
	}
	owner, err := master.LookupOwner(e.cfg)
	if err != nil {
		return e.fatal("%v", err)
	}
	changes, err := master.Prepare(e.cfg, owner)
	for _, c := range changes {
		e.warning("%s", c)
	}
	if err != nil {
		return e.fatal("%v", err)
	}
	defs, _, err := mastercf.Load(e.dir, e.cfg.Int("default_process_limit"))
	if err != nil {
		return e.fatal("%v", err)
	}
	var inet []master.Address
	daemonDir := e.cfg.Get("daemon_directory")
	for _, d := range defs {
		if d.Type != mastercf.TypeInet || master.Resolve(d, daemonDir).Skip != "" {
			continue
		}
		addrs, err := master.Addresses(e.cfg, d)
		if err != nil {
			return e.fatal("%s:%d: %v", d.File, d.Line, err)
		}
		for _, a := range addrs {
			inet = append(inet, master.DialAddress(a))
		}
	}
	prog := filepath.Join(daemonDir, "master")
	e.info("starting the Postern mail system")
	// master without -d detaches itself and exits once its copy is
	// ready, or with the reason it is not.
	var out bytes.Buffer
	cmd := exec.Command(prog, "-c", e.dir)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Dir = "/"
	if err := cmd.Run(); err != nil {
		if out.Len() > 0 {
			e.stderr.Write(out.Bytes())
		}
		return e.fatal("mail system startup failed: %s: %v", prog, err)
	}
	deadline := time.Now().Add(StartTimeout)
	var pid int
	for {
		var ok bool
		if pid, ok = master.Running(e.cfg); ok {
			break
		}
		if time.Now().After(deadline) {
			return e.fatal("mail system startup failed: no master pid file %s after %v", master.PidFile(e.cfg), StartTimeout)
		}
		time.Sleep(pollInterval)
	}
	for _, a := range inet {
		for {
			c, err := net.DialTimeout(a.Network, a.Address, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if _, ok := master.Running(e.cfg); !ok {
				return e.fatal("mail system startup failed: the master (pid %d) exited; see the mail log", pid)
			}
			if time.Now().After(deadline) {
				return e.fatal("mail system startup failed: %s does not accept connections after %v: %v", a.Address, StartTimeout, err)
			}
			time.Sleep(pollInterval)
		}
	}
	return 0
}

// Stop sends SIGTERM to the master and waits until the instance is gone.
func Stop(dir string, stdout, stderr io.Writer) int {
	e, code := load(dir, stdout, stderr)
	if e == nil {
		return code
	}
	defer e.close()
	pid, ok := master.Running(e.cfg)
	if !ok {
		return e.fatal("the Postern mail system is not running")
	}
	e.info("stopping the Postern mail system")
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return e.fatal("signal master pid %d: %v", pid, err)
	}
	deadline := time.Now().Add(StopTimeout)
	for !gone(pid) {
		if time.Now().After(deadline) {
			return e.fatal("the master (pid %d) did not stop within %v", pid, StopTimeout)
		}
		time.Sleep(pollInterval)
	}
	for {
		left := instanceProcs(e.cfg.Get("queue_directory"), e.cfg.Get("daemon_directory"))
		if len(left) == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			return e.fatal("processes of the instance still running after %v: %v", StopTimeout, left)
		}
		time.Sleep(pollInterval)
	}
}

// Reload sends SIGHUP to the master.
func Reload(dir string, stdout, stderr io.Writer) int {
	e, code := load(dir, stdout, stderr)
	if e == nil {
		return code
	}
	defer e.close()
	pid, ok := master.Running(e.cfg)
	if !ok {
		return e.fatal("the Postern mail system is not running")
	}
	e.info("refreshing the Postern mail system")
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return e.fatal("signal master pid %d: %v", pid, err)
	}
	return 0
}

// Status reports whether the master runs: 0 and its pid, or 1.
func Status(dir string, stdout, stderr io.Writer) int {
	dir = config.Dir(dir)
	cfg, err := config.Load(dir)
	if err != nil {
		fmt.Fprintf(stderr, "postern: fatal: %v\n", err)
		return 1
	}
	if pid, ok := master.Running(cfg); ok {
		fmt.Fprintf(stdout, "postern: the Postern mail system is running: PID: %d\n", pid)
		return 0
	}
	fmt.Fprintf(stdout, "postern: the Postern mail system is not running\n")
	return 1
}

// gone reports whether pid has exited. The master is not our child, so
// an exited master may linger as a zombie until its new parent reaps it;
// that counts as gone.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}

// instanceProcs lists the live processes that run a program of
// daemonDir with queueDir as their working directory: the processes of
// this instance (DESIGN §8). Without /proc it finds none.
func instanceProcs(queueDir, daemonDir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	qdir, _ := filepath.EvalSymlinks(queueDir)
	ddir, _ := filepath.EvalSymlinks(daemonDir)
	var out []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil || cwd != qdir {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || filepath.Dir(strings.TrimSuffix(exe, " (deleted)")) != ddir {
			continue
		}
		if !gone(pid) {
			out = append(out, pid)
		}
	}
	return out
}

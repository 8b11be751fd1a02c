package master

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds master and the test worker under several names; built
// once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "postern-master-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// World-readable, so workers started as mail_owner can exec them.
	os.Chmod(dir, 0o755)
	out, err := exec.Command("go", "build", "-o", dir+"/", "postern/cmd/master", "./testdata/worker").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	for _, name := range []string{"echo", "trig", "crash", "local", "smtpd", "cleanup", "smtp", "qmgr", "pickup"} {
		if err := os.Link(filepath.Join(dir, "worker"), filepath.Join(dir, name)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// instance is one Postern instance in a temporary directory.
type instance struct {
	t      *testing.T
	dir    string // config directory and root of everything else
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
}

func newInstance(t *testing.T, masterCF, mainExtra string) *instance {
	t.Helper()
	dir := t.TempDir()
	// Workers started as mail_owner (nobody) read main.cf and chdir to
	// the queue.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	in := &instance{t: t, dir: dir}
	in.writeMain(mainExtra)
	in.writeMaster(masterCF)
	return in
}

func (in *instance) writeMain(extra string) {
	in.t.Helper()
	cf := fmt.Sprintf(`queue_directory = %[1]s/q
data_directory = %[1]s/d
daemon_directory = %[2]s
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
service_throttle_time = 1s
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mail_owner = nobody
setgid_group = nogroup
myhostname = one.example
%[3]s`, in.dir, binDir, extra)
	if err := os.WriteFile(filepath.Join(in.dir, "main.cf"), []byte(cf), 0o644); err != nil {
		in.t.Fatal(err)
	}
}

func (in *instance) writeMaster(text string) {
	in.t.Helper()
	if err := os.WriteFile(filepath.Join(in.dir, "master.cf"), []byte(text), 0o644); err != nil {
		in.t.Fatal(err)
	}
}

func (in *instance) pidFile() string { return filepath.Join(in.dir, "q", "pid", "master.pid") }

// start runs master -d and waits for its pid file.
func (in *instance) start() {
	in.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "master"), "-d", "-c", in.dir)
	cmd.Stderr = &in.stderr
	if err := cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.cmd = cmd
	in.done = make(chan struct{})
	go func() {
		cmd.Wait()
		close(in.done)
	}()
	in.t.Cleanup(func() {
		select {
		case <-in.done:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-in.done
		}
	})
	in.waitFor("pid file", 10*time.Second, func() bool {
		b, err := os.ReadFile(in.pidFile())
		return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(cmd.Process.Pid)
	})
}

// exitCode waits for the master to exit; -1 on timeout.
func (in *instance) exitCode(d time.Duration) int {
	select {
	case <-in.done:
		return in.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

func (in *instance) waitFor(what string, d time.Duration, cond func() bool) {
	in.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			in.t.Fatalf("timed out after %v waiting for %s\nmaillog:\n%s\nstderr:\n%s", d, what, in.maillog(), in.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (in *instance) maillog() string {
	b, _ := os.ReadFile(filepath.Join(in.dir, "maillog"))
	return string(b)
}

func (in *instance) waitLog(substr string) {
	in.t.Helper()
	in.waitFor(fmt.Sprintf("%q in the maillog", substr), 10*time.Second, func() bool {
		return strings.Contains(in.maillog(), substr)
	})
}

// session is a client of an echo service.
type session struct {
	c       net.Conn
	r       *bufio.Reader
	program string
	host    string
	pid     int
}

// dial connects to an echo service and reads its greeting.
func dial(t *testing.T, port int, d time.Duration) (*session, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), d)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	s := &session{c: c, r: bufio.NewReader(c)}
	c.SetReadDeadline(time.Now().Add(d))
	line, err := s.r.ReadString('\n')
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, err
	}
	var hello string
	if _, err := fmt.Sscan(line, &hello, &s.program, &s.host, &s.pid); err != nil {
		return nil, fmt.Errorf("greeting %q: %v", line, err)
	}
	return s, nil
}

func mustDial(t *testing.T, port int) *session {
	t.Helper()
	s, err := dial(t, port, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *session) echo(t *testing.T, text string) {
	t.Helper()
	fmt.Fprintf(s.c, "%s\n", text)
	s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := s.r.ReadString('\n')
	if err != nil || line != text+"\n" {
		t.Fatalf("echo %q: got %q, %v", text, line, err)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func TestServe(t *testing.T) {
	port, vport := freePort(t), freePort(t)
	in := newInstance(t, "", "")
	wakes := filepath.Join(in.dir, "wakes")
	in.writeMaster(fmt.Sprintf(`# service type private unpriv chroot wakeup maxproc command
127.0.0.1:%d inet n n n - 2 echo
%d inet n n n - - virtual
trig unix n n n 1 1 trig %s
postlog unix-dgram n - n - 1 postlogd
rewrite unix - - n - - trivial-rewrite
`, port, vport, wakes))
	in.start()

	// maxproc 2: a third session waits until one ends.
	s1 := mustDial(t, port)
	s2 := mustDial(t, port)
	if s1.program != "echo" || s1.host != "one.example" || s1.pid != s2.pid {
		t.Errorf("sessions %+v %+v: want program echo, one.example, one worker process", s1, s2)
	}
	if _, err := dial(t, port, 300*time.Millisecond); err == nil {
		t.Fatal("a third session was served with maxproc 2")
	}
	s1.c.Close()
	s3 := mustDial(t, port)
	s3.echo(t, "three")

	// virtual runs local under its own name; a bare port listens on
	// inet_interfaces.
	if v := mustDial(t, vport); v.program != "virtual" {
		t.Errorf("virtual service runs as %q, want argv0 virtual", v.program)
	}

	in.waitFor("two wake-ups", 10*time.Second, func() bool {
		b, _ := os.ReadFile(wakes)
		return len(b) >= 2 && strings.Trim(string(b), "W") == ""
	})
	fi, err := os.Stat(filepath.Join(in.dir, "q", "public", "trig"))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Errorf("public/trig: %v %v, want a socket with mode 0666", fi, err)
	}
	log := in.maillog()
	for _, want := range []string{
		"/master[" + strconv.Itoa(in.cmd.Process.Pid) + "]: daemon started -- version ",
		", configuration " + in.dir,
		"service postlog/unix-dgram (postlogd)",
		"service rewrite/unix (trivial-rewrite) not started: address rewriting and resolution are built into qmgr",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("maillog lacks %q:\n%s", want, log)
		}
	}
}

func TestRestartAndThrottle(t *testing.T) {
	port := freePort(t)
	in := newInstance(t, fmt.Sprintf(`127.0.0.1:%d inet n n n - - echo
crashy unix - n n - - crash
`, port), "")
	in.start()
	s := mustDial(t, port)
	s.c.Close()
	syscall.Kill(s.pid, syscall.SIGKILL)
	in.waitLog(fmt.Sprintf("warning: process %s pid %d killed by signal 9", filepath.Join(binDir, "echo"), s.pid))
	s2 := mustDial(t, port)
	if s2.pid == s.pid {
		t.Fatal("same worker pid after SIGKILL")
	}

	// Services start on demand: a client waiting on crashy's socket
	// makes the master start it, again after each throttle while the
	// client waits.
	waiting, err := net.Dial("unix", filepath.Join(in.dir, "q", "private", "crashy"))
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	crash := filepath.Join(binDir, "crash")
	in.waitLog(fmt.Sprintf("warning: %s: bad command startup -- throttling", crash))
	time.Sleep(2500 * time.Millisecond)
	log := in.maillog()
	n := strings.Count(log, crash+": bad command startup -- throttling")
	if n < 2 || n > 5 {
		t.Errorf("%d throttled restarts in ~2.5s with service_throttle_time 1s, want 2-5:\n%s", n, log)
	}
	if !strings.Contains(log, "fatal: crashing on purpose") || !strings.Contains(log, "exit status 1") {
		t.Errorf("maillog lacks the worker's fatal line or its exit status:\n%s", log)
	}
}

func TestReload(t *testing.T) {
	port, port2 := freePort(t), freePort(t)
	in := newInstance(t, fmt.Sprintf("127.0.0.1:%d inet n n n - - echo\ntrig unix n n n - 1 trig\n", port), "")
	in.start()
	old := mustDial(t, port)
	if old.host != "one.example" {
		t.Fatalf("greeting host %q", old.host)
	}
	trigSock := filepath.Join(in.dir, "q", "public", "trig")
	if _, err := os.Stat(trigSock); err != nil {
		t.Fatal(err)
	}

	in.writeMain("myhostname = two.example\n")
	in.writeMaster(fmt.Sprintf("127.0.0.1:%d inet n n n - - echo\n127.0.0.1:%d inet n n n - - echo\n", port, port2))
	in.cmd.Process.Signal(syscall.SIGHUP)
	in.waitLog("reload -- version ")
	var fresh *session
	in.waitFor("a session with the new main.cf", 10*time.Second, func() bool {
		s, err := dial(t, port, 5*time.Second)
		if err != nil {
			return false
		}
		s.c.Close()
		fresh = s
		return s.host == "two.example"
	})
	if fresh.pid == old.pid {
		t.Error("new sessions are served by the old worker")
	}
	// The running session goes on in the old worker.
	old.echo(t, "still here")
	if !alive(old.pid) {
		t.Fatal("old worker gone while its session runs")
	}
	old.c.Close()
	in.waitFor("the old worker to exit", 10*time.Second, func() bool { return !alive(old.pid) })

	if s := mustDial(t, port2); s.host != "two.example" {
		t.Errorf("new service greets with %q", s.host)
	}
	in.waitFor("the removed unix socket to go", 10*time.Second, func() bool {
		_, err := os.Stat(trigSock)
		return errors.Is(err, os.ErrNotExist)
	})

	// A broken master.cf is reported and the running configuration
	// stays.
	in.writeMaster("this is not a service line\n")
	in.cmd.Process.Signal(syscall.SIGHUP)
	in.waitLog(filepath.Join(in.dir, "master.cf") + ":1: ")
	in.waitLog("reload failed: keeping the running configuration")
	mustDial(t, port2).echo(t, "after a failed reload")
}

func TestStopAndSecondMaster(t *testing.T) {
	port := freePort(t)
	in := newInstance(t, fmt.Sprintf("127.0.0.1:%d inet n n n - - echo\ntrig unix n n n 60 1 trig\n", port), "")
	in.start()
	s := mustDial(t, port)

	second := exec.Command(filepath.Join(binDir, "master"), "-d", "-c", in.dir)
	out, _ := second.CombinedOutput()
	if second.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "already running") {
		t.Errorf("second master: exit %d, output %q; want 1 and \"already running\"", second.ProcessState.ExitCode(), out)
	}
	if _, ok := Running(loadConfig(t, in.dir)); !ok {
		t.Error("Running reports the instance stopped")
	}

	in.cmd.Process.Signal(syscall.SIGTERM)
	if code := in.exitCode(20 * time.Second); code != 0 {
		t.Fatalf("master exit %d, want 0\n%s", code, in.stderr.String())
	}
	if alive(s.pid) {
		t.Error("worker alive after the master exited")
	}
	if _, err := os.Stat(in.pidFile()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after exit: %v", err)
	}
	if !strings.Contains(in.maillog(), "terminating on signal 15") {
		t.Errorf("maillog lacks the terminating line:\n%s", in.maillog())
	}
	if _, ok := Running(loadConfig(t, in.dir)); ok {
		t.Error("Running reports a stopped instance running")
	}
}

// TestUnprivileged runs a service with the default unpriv=y as root: the
// master starts it as mail_owner.
func TestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	port := freePort(t)
	in := newInstance(t, fmt.Sprintf("127.0.0.1:%d inet n - n - - echo\n", port), "")
	in.start()
	s := mustDial(t, port)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nUid:\t65534\t65534\t65534\t65534\n") {
		t.Errorf("worker credentials:\n%s", b)
	}
}

func TestDetach(t *testing.T) {
	port := freePort(t)
	in := newInstance(t, fmt.Sprintf("127.0.0.1:%d inet n n n - - echo\n", port), "")
	cmd := exec.Command(filepath.Join(binDir, "master"), "-c", in.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("master: %v\n%s", err, out)
	}
	cfg := loadConfig(t, in.dir)
	pid, ok := Running(cfg)
	if !ok {
		t.Fatal("detached master not running")
	}
	defer func() {
		syscall.Kill(pid, syscall.SIGTERM)
		in.waitFor("the detached master to exit", 20*time.Second, func() bool { return !alive(pid) })
	}()
	mustDial(t, port).echo(t, "detached")

	// A failing start prints why and exits non-zero.
	bad := newInstance(t, "127.0.0.1:1 inet n n n - - nosuchprogram\nbroken\n", "")
	cmd = exec.Command(filepath.Join(binDir, "master"), "-c", bad.dir)
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "master.cf:2: ") {
		t.Errorf("bad start: %v, output %q", err, out)
	}
}

// TestStockMasterCFRuns starts a master on the benchmark's master.cf
// (Postfix's stock service list, default unpriv column) with the test
// worker standing in for Postern's programs: every service Postern has
// runs, every other one is skipped with one line, and nothing fails.
func TestStockMasterCFRuns(t *testing.T) {
	text, err := os.ReadFile("testdata/bench-master.cf.in")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	in := newInstance(t, strings.ReplaceAll(string(text), "@PORT@", strconv.Itoa(port)), "")
	in.start()
	if s := mustDial(t, port); s.program != "smtpd" {
		t.Errorf("smtpd service runs %q", s.program)
	}
	for _, name := range []string{"qmgr", "pickup", "cleanup", "smtp", "relay", "local", "virtual", "lmtp"} {
		sock := filepath.Join(in.dir, "q", "private", name)
		if name == "qmgr" || name == "pickup" || name == "cleanup" {
			sock = filepath.Join(in.dir, "q", "public", name)
		}
		if _, err := os.Stat(sock); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	log := in.maillog()
	if n := strings.Count(log, "/master["+strconv.Itoa(in.cmd.Process.Pid)+"]: service "); n != 16 {
		t.Errorf("%d skip lines, want 16:\n%s", n, log)
	}
	for _, bad := range []string{"warning: process", "bad command startup", "fatal:", "error:"} {
		if strings.Contains(log, bad) {
			t.Errorf("maillog has %q:\n%s", bad, log)
		}
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	if code := in.exitCode(20 * time.Second); code != 0 {
		t.Fatalf("master exit %d\n%s", code, in.stderr.String())
	}
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// TestStartOnDemand: a service without a wake-up timer gets its worker
// only once a client waits on its listener, and that client is served.
func TestStartOnDemand(t *testing.T) {
	port := freePort(t)
	in := newInstance(t, fmt.Sprintf("127.0.0.1:%d inet n n n - - echo\n", port), "")
	in.start()
	time.Sleep(300 * time.Millisecond)
	if kids := children(in.cmd.Process.Pid); len(kids) != 0 {
		t.Fatalf("workers %v running before any client", kids)
	}
	s := mustDial(t, port)
	s.echo(t, "first client")
	if kids := children(in.cmd.Process.Pid); len(kids) != 1 || kids[0] != s.pid {
		t.Errorf("workers %v after the first client, want [%d]", kids, s.pid)
	}
}

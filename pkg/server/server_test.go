package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a worker: with helperEnv set, TestMain runs
// Main with the program named there instead of the tests.
const helperEnv = "SERVER_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "echo":
		Main(Program{Name: "echod", New: newEcho})
	case "trigger":
		Main(Program{Name: "trigd", New: newTrigger})
	case "bad":
		Main(Program{Name: "bad", New: func(context.Context, *Context) (any, error) { return 42, nil }})
	}
}

type echo struct{ sc *Context }

func newEcho(_ context.Context, sc *Context) (any, error) { return echo{sc}, nil }

// Handle greets with the values the tests check, then echoes lines until
// the client closes or the worker is told to stop at once.
func (e echo) Handle(ctx context.Context, conn net.Conn) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	e.sc.Log.Printf("session %s", e.sc.Service)
	fmt.Fprintf(conn, "hello %s %s %d %s\n", e.sc.Config.Get("syslog_name"), e.sc.Program, e.sc.MaxProc, strings.Join(e.sc.Args, ","))
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

func newTrigger(_ context.Context, sc *Context) (any, error) {
	return trigger{os.Getenv("TRIGGER_FILE")}, nil
}

func (t trigger) Wake(_ context.Context, b byte) {
	f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	f.Write([]byte{b})
	f.Close()
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		argv []string
		want args
		err  bool
	}{
		{argv: nil, want: args{rest: []string{}}},
		{
			argv: []string{"-c", "/etc/x", "-n", "smtp", "-t", "inet", "-o", "a=b", "-osyslog_name=p/$service_name", "-v", "extra", "-o", "x=y"},
			want: args{dir: "/etc/x", service: "smtp", typ: "inet", verbose: true,
				overrides: [][2]string{{"a", "b"}, {"syslog_name", "p/$service_name"}},
				rest:      []string{"extra", "-o", "x=y"}},
		},
		{argv: []string{"-o", "empty="}, want: args{overrides: [][2]string{{"empty", ""}}, rest: []string{}}},
		{argv: []string{"-D", "-S", "x"}, want: args{rest: []string{"-S", "x"}}},
		{argv: []string{"--", "-v"}, want: args{rest: []string{"-v"}}},
		{argv: []string{"-c"}, err: true},
		{argv: []string{"-o", "novalue"}, err: true},
		{argv: []string{"-vx"}, err: true},
	}
	for _, tc := range tests {
		got, err := parseArgs(tc.argv)
		if (err != nil) != tc.err {
			t.Errorf("parseArgs(%q) error %v, want error %v", tc.argv, err, tc.err)
			continue
		}
		if tc.err {
			continue
		}
		if got.rest == nil {
			got.rest = []string{}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseArgs(%q) = %+v, want %+v", tc.argv, got, tc.want)
		}
	}
}

// instance is a worker started as the master would start it.
type instance struct {
	t      *testing.T
	dir    string
	addr   string
	ln     *os.File // the "master's" copy of the listener
	status *os.File // the "master's" end of the status socket
	cmd    *exec.Cmd
	done   chan error
}

func writeMainCF(t *testing.T, dir string, extra string) {
	t.Helper()
	cf := fmt.Sprintf("queue_directory = %s\nmaillog_file = %s/maillog\nmaillog_file_prefixes = %s\n%s", dir, dir, dir, extra)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs the test binary as worker mode with a fresh loopback
// listener and status socketpair.
func start(t *testing.T, mode, mainExtra string, env []string, argv ...string) *instance {
	t.Helper()
	dir := t.TempDir()
	writeMainCF(t, dir, mainExtra)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "status"), os.NewFile(uintptr(fds[1]), "status")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{
		Path:       exe,
		Args:       append([]string{mode + "d", "-c", dir, "-n", "svc", "-t", "inet"}, argv...),
		Env:        append([]string{helperEnv + "=" + mode, EnvListen + "=inet:" + addr, EnvUnpriv + "=n", "TRIGGER_FILE=" + filepath.Join(dir, "wakes")}, env...),
		ExtraFiles: []*os.File{lf, theirs},
		Stderr:     os.Stderr,
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	in := &instance{t: t, dir: dir, addr: addr, ln: lf, status: mine, cmd: cmd, done: make(chan error, 1)}
	go func() { in.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		in.wait(10 * time.Second)
		lf.Close()
		mine.Close()
	})
	return in
}

// wait returns the exit code, or -1 on timeout.
func (in *instance) wait(d time.Duration) int {
	select {
	case <-in.done:
		in.done <- nil // let later waits return at once
		return in.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// dial connects and reads the greeting, failing the test after d.
func (in *instance) dial(d time.Duration) (net.Conn, *bufio.Reader, string) {
	in.t.Helper()
	c, err := net.DialTimeout("tcp", in.addr, d)
	if err != nil {
		in.t.Fatal(err)
	}
	in.t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(d))
	line, err := r.ReadString('\n')
	if err != nil {
		in.t.Fatalf("greeting: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	return c, r, strings.TrimSpace(line)
}

// readStatus reads notices from the worker until n bytes or timeout.
func (in *instance) readStatus(n int, d time.Duration) string {
	in.status.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, n)
	got := 0
	for got < n {
		m, err := in.status.Read(buf[got:])
		got += m
		if err != nil {
			break
		}
	}
	return string(buf[:got])
}

func TestNoMaster(t *testing.T) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-n", "x")
	cmd.Env = []string{helperEnv + "=echo"}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != ExitFatal {
		t.Fatalf("exit %v, want %d", err, ExitFatal)
	}
	if !strings.Contains(string(out), "no listener from the master") {
		t.Errorf("output %q lacks the reason", out)
	}
}

func TestEchoOverridesAndLog(t *testing.T) {
	in := start(t, "echo", "", []string{EnvMaxProc + "=3"}, "-o", "syslog_name=test/$service_name", "-S", "arg")
	c, r, greet := in.dial(5 * time.Second)
	if want := "hello test/svc echod 3 -S,arg"; greet != want {
		t.Errorf("greeting %q, want %q", greet, want)
	}
	fmt.Fprintf(c, "ping\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := r.ReadString('\n'); line != "ping\n" {
		t.Errorf("echo %q", line)
	}
	if s := in.readStatus(1, 5*time.Second); s != string(StatusUsed) {
		t.Errorf("status notice %q, want %q", s, StatusUsed)
	}
	log, _ := os.ReadFile(filepath.Join(in.dir, "maillog"))
	if !strings.Contains(string(log), fmt.Sprintf("test/svc/echod[%d]: session svc", in.cmd.Process.Pid)) {
		t.Errorf("maillog lacks the session line:\n%s", log)
	}
}

func TestMaxProcBoundsSessions(t *testing.T) {
	in := start(t, "echo", "", []string{EnvMaxProc + "=2"})
	c1, _, _ := in.dial(5 * time.Second)
	in.dial(5 * time.Second)
	c3, err := net.DialTimeout("tcp", in.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	r3 := bufio.NewReader(c3)
	c3.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := r3.ReadString('\n'); err == nil {
		t.Fatal("third session served while maxproc=2 sessions run")
	}
	c1.Close()
	c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r3.ReadString('\n'); err != nil {
		t.Fatalf("third session not served after one ended: %v", err)
	}
}

func TestMaxUseRetires(t *testing.T) {
	in := start(t, "echo", "max_use = 2\n", []string{EnvMaxProc + "=1"})
	c1, _, _ := in.dial(5 * time.Second)
	c1.Close()
	c2, r2, _ := in.dial(5 * time.Second)
	if s := in.readStatus(2, 5*time.Second); s != "UR" {
		t.Fatalf("status notices %q, want UR", s)
	}
	// The retiring worker still serves its running session.
	fmt.Fprintf(c2, "still\n")
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := r2.ReadString('\n'); line != "still\n" {
		t.Errorf("running session after retirement: %q", line)
	}
	if code := in.wait(300 * time.Millisecond); code != -1 {
		t.Fatalf("worker exited (%d) with a session running", code)
	}
	c2.Close()
	if code := in.wait(10 * time.Second); code != ExitOK {
		t.Fatalf("exit %d, want %d", code, ExitOK)
	}
}

func TestMaxIdleRetires(t *testing.T) {
	in := start(t, "echo", "max_idle = 1s\n", nil)
	if s := in.readStatus(1, 10*time.Second); s != string(StatusRetiring) {
		t.Fatalf("status notice %q, want %q", s, StatusRetiring)
	}
	if code := in.wait(10 * time.Second); code != ExitOK {
		t.Fatalf("exit %d, want %d", code, ExitOK)
	}
}

func TestStatusEOFDrains(t *testing.T) {
	in := start(t, "echo", "", nil)
	c, r, _ := in.dial(5 * time.Second)
	in.status.Close()
	time.Sleep(200 * time.Millisecond)
	// No new sessions: the connection lands in the backlog of the
	// listener this test holds, and nobody greets it.
	c2, err := net.DialTimeout("tcp", in.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := bufio.NewReader(c2).ReadString('\n'); err == nil {
		t.Error("a new session was served after the status socket closed")
	}
	fmt.Fprintf(c, "again\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := r.ReadString('\n'); line != "again\n" {
		t.Errorf("running session: %q", line)
	}
	c.Close()
	if code := in.wait(10 * time.Second); code != ExitOK {
		t.Fatalf("exit %d, want %d", code, ExitOK)
	}
}

func TestSIGTERMCancels(t *testing.T) {
	in := start(t, "echo", "", nil)
	c, r, _ := in.dial(5 * time.Second)
	in.cmd.Process.Signal(syscall.SIGTERM)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("session still open after SIGTERM")
	}
	if code := in.wait(10 * time.Second); code != ExitOK {
		t.Fatalf("exit %d, want %d", code, ExitOK)
	}
}

func TestTrigger(t *testing.T) {
	in := start(t, "trigger", "max_use = 1\nmax_idle = 1s\n", nil)
	for _, req := range []string{"W", "FW"} {
		c, err := net.DialTimeout("tcp", in.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(req))
		c.Close()
	}
	path := filepath.Join(in.dir, "wakes")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if len(b) == 3 {
			if s := string(b); s != "WFW" && s != "FWW" {
				t.Errorf("wake-ups %q", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wake-ups %q after 10s, want 3", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Triggers ignore max_use and max_idle.
	if code := in.wait(1500 * time.Millisecond); code != -1 {
		t.Fatalf("trigger worker exited (%d)", code)
	}
	in.status.Close()
	if code := in.wait(10 * time.Second); code != ExitOK {
		t.Fatalf("exit %d, want %d", code, ExitOK)
	}
}

func TestNewReturnsNeither(t *testing.T) {
	in := start(t, "bad", "", nil)
	if code := in.wait(10 * time.Second); code != ExitFatal {
		t.Fatalf("exit %d, want %d", code, ExitFatal)
	}
	log, _ := os.ReadFile(filepath.Join(in.dir, "maillog"))
	if !strings.Contains(string(log), "fatal: ") {
		t.Errorf("no fatal line in maillog:\n%s", log)
	}
}

func TestRootRefusedWhenUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	in := start(t, "echo", "", []string{EnvUnpriv + "=y"})
	if code := in.wait(10 * time.Second); code != ExitFatal {
		t.Fatalf("exit %d, want %d", code, ExitFatal)
	}
	log, _ := os.ReadFile(filepath.Join(in.dir, "maillog"))
	if !strings.Contains(string(log), "marks it unprivileged") {
		t.Errorf("maillog lacks the refusal:\n%s", log)
	}
}

func TestStoppingOutsideWorker(t *testing.T) {
	if ch := Stopping(context.Background()); ch != nil {
		t.Errorf("Stopping of a plain context = %v, want nil", ch)
	}
}

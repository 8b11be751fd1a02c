package control

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

var binDir string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "postern-control-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("go", "build", "-o", dir+"/", "postern/cmd/master", "postern/pkg/master/testdata/worker").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	if err := os.Link(filepath.Join(dir, "worker"), filepath.Join(dir, "echo")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// instance writes a configuration directory with one echo service per
// port and returns it.
func instance(t *testing.T, ports ...int) string {
	t.Helper()
	dir := t.TempDir()
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
`, dir, binDir)
	var mcf strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&mcf, "%d inet n n n - - echo\n", p)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(mcf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// run calls f and returns its status and output.
func run(f func(string, *bytes.Buffer, *bytes.Buffer) int, dir string) (int, string, string) {
	var out, errb bytes.Buffer
	code := f(dir, &out, &errb)
	return code, out.String(), errb.String()
}

func start(dir string, o, e *bytes.Buffer) int  { return Start(dir, o, e) }
func stop(dir string, o, e *bytes.Buffer) int   { return Stop(dir, o, e) }
func reload(dir string, o, e *bytes.Buffer) int { return Reload(dir, o, e) }
func status(dir string, o, e *bytes.Buffer) int { return Status(dir, o, e) }

func workerPid(t *testing.T, port int) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	f := strings.Fields(line)
	pid, _ := strconv.Atoi(f[len(f)-1])
	return pid
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func TestRoundTrip(t *testing.T) {
	p1, p2 := freePort(t), freePort(t)
	dir := instance(t, p1, p2)
	t.Cleanup(func() { Stop(dir, &bytes.Buffer{}, &bytes.Buffer{}) })

	if code, out, errs := run(status, dir); code != 1 || !strings.Contains(out, "is not running") {
		t.Errorf("status before start: %d %q %q", code, out, errs)
	}
	code, out, errs := run(start, dir)
	if code != 0 || !strings.Contains(out, "postern: starting the Postern mail system") {
		t.Fatalf("start: %d %q %q", code, out, errs)
	}
	// Ready means every inet listener accepts, at once.
	for _, p := range []int{p1, p2} {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
		if err != nil {
			t.Fatalf("port %d after start: %v", p, err)
		}
		c.Close()
	}
	code, out, _ = run(status, dir)
	b, _ := os.ReadFile(filepath.Join(dir, "q", "pid", "master.pid"))
	mpid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if code != 0 || out != fmt.Sprintf("postern: the Postern mail system is running: PID: %d\n", mpid) {
		t.Errorf("status: %d %q (pid file %q)", code, out, b)
	}
	if code, _, errs := run(start, dir); code != 1 || !strings.Contains(errs, "postern: fatal: the Postern mail system is already running") {
		t.Errorf("second start: %d %q", code, errs)
	}
	if code, out, _ := run(reload, dir); code != 0 || out != "postern: refreshing the Postern mail system\n" {
		t.Errorf("reload: %d %q", code, out)
	}
	w1 := workerPid(t, p1)
	w2 := workerPid(t, p2)

	if code, out, errs := run(stop, dir); code != 0 || !strings.Contains(out, "stopping the Postern mail system") {
		t.Fatalf("stop: %d %q %q", code, out, errs)
	}
	for _, pid := range []int{mpid, w1, w2} {
		if alive(pid) && !gone(pid) {
			t.Errorf("pid %d alive after stop returned", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "q", "pid", "master.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after stop: %v", err)
	}
	if code, _, _ := run(status, dir); code != 1 {
		t.Errorf("status after stop: %d", code)
	}
	if code, _, errs := run(stop, dir); code != 1 || errs != "postern: fatal: the Postern mail system is not running\n" {
		t.Errorf("stop when stopped: %d %q", code, errs)
	}
	if code, _, errs := run(reload, dir); code != 1 || !strings.Contains(errs, "not running") {
		t.Errorf("reload when stopped: %d %q", code, errs)
	}
}

func TestStartFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := instance(t, busy.Addr().(*net.TCPAddr).Port)
	code, _, errs := run(start, dir)
	if code != 1 || !strings.Contains(errs, "address already in use") || !strings.Contains(errs, "startup failed") {
		t.Errorf("start with a busy port: %d %q", code, errs)
	}
	if code, _, _ := run(status, dir); code != 1 {
		t.Errorf("status after a failed start: %d", code)
	}
}

func TestStalePidFile(t *testing.T) {
	dir := instance(t)
	if err := os.MkdirAll(filepath.Join(dir, "q", "pid"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Our own pid is alive but holds no instance lock: stale.
	os.WriteFile(filepath.Join(dir, "q", "pid", "master.pid"), []byte(fmt.Sprintf("%10d\n", os.Getpid())), 0o644)
	if code, out, _ := run(status, dir); code != 1 || !strings.Contains(out, "not running") {
		t.Errorf("status with a stale pid file: %d %q", code, out)
	}
	os.WriteFile(filepath.Join(dir, "q", "pid", "master.pid"), []byte("999999999\n"), 0o644)
	if code, _, _ := run(status, dir); code != 1 {
		t.Errorf("status with a dead pid: %d", code)
	}
}

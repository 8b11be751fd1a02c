// Package itest holds Postern's integration tests: they build the real
// programs, start a whole instance in a temporary directory on a free
// loopback port, talk to it with real clients, and stop it by PID.
package itest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds the programs built once for the whole test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "postern-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Unprivileged workers (mail_owner) must be able to run the programs.
	if err := os.Chmod(dir, 0755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go env GOMOD:", err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/...")
	build.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Instance is one running Postern.
type Instance struct {
	t       *testing.T
	Dir     string // run directory
	Conf    string // config directory
	Port    int    // SMTP port on 127.0.0.1
	Addr    string // "127.0.0.1:port"
	Maillog string
	Mail    string // virtual_mailbox_base
	UID     int
	GID     int
}

// Options change the generated configuration.
type Options struct {
	MainCf   string // extra main.cf lines (later definitions win)
	MasterCf string // extra master.cf lines
	NoStart  bool
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

// NewInstance writes a configuration and starts the instance; the test's
// cleanup stops it and checks that every process is gone.
func NewInstance(t *testing.T, o Options) *Instance {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// The workers run as mail_owner and must reach the run directory;
		// t.TempDir creates it and its parent mode 0700.
		for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0755)
		}
	}
	in := &Instance{t: t, Dir: dir, Conf: filepath.Join(dir, "conf"), Port: freePort(t),
		Maillog: filepath.Join(dir, "maillog"), Mail: filepath.Join(dir, "mail"), UID: os.Getuid(), GID: os.Getgid()}
	in.Addr = fmt.Sprintf("127.0.0.1:%d", in.Port)
	owner := ""
	if os.Geteuid() == 0 {
		name := "postern"
		u, err := user.Lookup(name)
		if err != nil {
			name = "nobody"
			u, err = user.Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
		}
		owner = "mail_owner = " + name
		// A fresh machine (CI) has no posterndrop group until make install.
		if _, err := user.LookupGroup("posterndrop"); err != nil {
			g, err := user.LookupGroupId(u.Gid)
			if err != nil {
				t.Fatal(err)
			}
			owner += "\nsetgid_group = " + g.Name
		}
		in.UID, _ = strconv.Atoi(u.Uid)
		in.GID, _ = strconv.Atoi(u.Gid)
	}
	for _, d := range []string{"conf", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0755); err != nil {
			t.Fatal(err)
		}
	}
	mainCf := fmt.Sprintf(`queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
myhostname = mta.itest.test
mydomain = itest.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = itest.test
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = texthash:%[1]s/conf/vmailbox
virtual_minimum_uid = 0
virtual_uid_maps = static:%[2]d
virtual_gid_maps = static:%[3]d
service_throttle_time = 1s
%[4]s
%[5]s
`, dir, in.UID, in.GID, owner, o.MainCf)
	masterCf := fmt.Sprintf(`127.0.0.1:%d inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
virtual   unix  -       n       n       -       -       virtual
local     unix  -       n       n       -       -       local
%s
`, in.Port, o.MasterCf)
	vmailbox := "user@itest.test itest.test/user/\nother@itest.test itest.test/other/\nmbox@itest.test itest.test/mbox\n"
	in.write("main.cf", mainCf)
	in.write("master.cf", masterCf)
	in.write("vmailbox", vmailbox)
	t.Cleanup(in.cleanup)
	if !o.NoStart {
		in.Start()
	}
	return in
}

func (in *Instance) write(name, text string) {
	in.t.Helper()
	if err := os.WriteFile(filepath.Join(in.Conf, name), []byte(text), 0644); err != nil {
		in.t.Fatal(err)
	}
}

// AppendMainCf adds lines to main.cf (for reload tests).
func (in *Instance) AppendMainCf(lines string) {
	in.t.Helper()
	f, err := os.OpenFile(filepath.Join(in.Conf, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		in.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(lines + "\n"); err != nil {
		in.t.Fatal(err)
	}
}

// Postern runs the postern command against this instance.
func (in *Instance) Postern(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "postern"), append([]string{"-c", in.Conf}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		return out.String(), fmt.Errorf("postern %v: timed out", args)
	}
}

// Start starts the instance and fails the test if it does not come up.
func (in *Instance) Start() {
	in.t.Helper()
	if out, err := in.Postern("start"); err != nil {
		in.t.Fatalf("postern start: %v\n%s\n%s", err, out, in.Log())
	}
}

// MasterPID reads the master's pid file.
func (in *Instance) MasterPID() int {
	b, err := os.ReadFile(filepath.Join(in.Dir, "queue", "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Children lists the master's child processes as pid → program name.
func (in *Instance) Children() map[int]string {
	out := map[int]string{}
	master := in.MasterPID()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		r := strings.LastIndexByte(s, ')')
		if r < 0 {
			continue
		}
		f := strings.Fields(s[r+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if ppid == master && master != 0 {
			out[pid] = s[strings.IndexByte(s, '(')+1 : r]
		}
	}
	return out
}

// Stop stops the instance.
func (in *Instance) Stop() {
	in.t.Helper()
	if out, err := in.Postern("stop"); err != nil {
		in.t.Fatalf("postern stop: %v\n%s", err, out)
	}
}

func (in *Instance) cleanup() {
	pid := in.MasterPID()
	if pid == 0 || !alive(pid) {
		return
	}
	kids := in.Children()
	if out, err := in.Postern("stop"); err != nil {
		in.t.Errorf("postern stop: %v\n%s", err, out)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for k := range kids {
		if alive(k) {
			in.t.Errorf("process %d still alive after stop", k)
			syscall.Kill(k, syscall.SIGKILL)
		}
	}
	if in.t.Failed() {
		in.t.Logf("maillog:\n%s", in.Log())
	}
}

// Log returns the maillog so far.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(in.Maillog)
	return string(b)
}

// WaitLog waits until the maillog contains s.
func (in *Instance) WaitLog(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(in.Log(), s) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// WaitMaildir waits until the Maildir new/ of a mailbox path holds n
// files and returns their paths, sorted.
func (in *Instance) WaitMaildir(rel string, n int, timeout time.Duration) []string {
	in.t.Helper()
	dir := filepath.Join(in.Mail, rel, "new")
	deadline := time.Now().Add(timeout)
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) >= n {
			var out []string
			for _, e := range ents {
				out = append(out, filepath.Join(dir, e.Name()))
			}
			sort.Strings(out)
			return out
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("%s: %d files after %v, want %d\n%s", dir, len(ents), timeout, n, in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

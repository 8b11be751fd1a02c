package itest

import (
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

// dovecot is a throwaway Dovecot LMTP server: its own configuration, run
// and state directories and Maildirs in a temporary directory, an inet
// listener on a free loopback port and a Unix socket.
type dovecot struct {
	t      *testing.T
	Dir    string
	Port   int
	Socket string // absolute path of the LMTP Unix socket
	Mail   string // homes are Mail/<domain>/<user>, Maildir under each
	Log    string
}

// dovecotSocket is the name of the Unix listener, relative to base_dir.
const dovecotSocket = "dovecot-lmtp"

// startDovecot writes a minimal dovecot.conf and runs `dovecot -F` as a
// child; the test's cleanup stops it by its PID. Mail is stored as uid:gid
// (not root: Dovecot refuses to deliver as root).
func startDovecot(t *testing.T, uid, gid int) *dovecot {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		t.Skip("dovecot not installed: apt-get install dovecot-lmtpd")
	}
	dir := t.TempDir()
	// The Postern lmtp agent runs as mail_owner and must reach the
	// socket; Dovecot's delivery user must reach its home.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	dv := &dovecot{t: t, Dir: dir, Port: freePort(t), Mail: filepath.Join(dir, "mail"), Log: filepath.Join(dir, "dovecot.log")}
	dv.Socket = filepath.Join(dir, "run", dovecotSocket)
	if err := os.Mkdir(dv.Mail, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dv.Mail, uid, gid); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	// Dovecot's own processes run as default_internal_user and
	// default_login_user: the package's dovecot and dovenull accounts as
	// root, the caller otherwise (no privilege change is possible then).
	internal, internalGroup, login := "dovecot", "dovecot", "dovenull"
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
		if err != nil {
			t.Fatal(err)
		}
		internal, internalGroup, login = u.Username, g.Name, u.Username
	} else if _, err := user.Lookup("dovenull"); err != nil {
		t.Fatalf("dovecot is installed but its dovenull account is missing (reinstall dovecot-core): %v", err)
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = %[2]s
default_internal_group = %[3]s
default_login_user = %[4]s
first_valid_uid = 1
first_valid_gid = 0
mail_location = maildir:~/Maildir
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=%[5]d gid=%[6]d home=%[7]s/%%d/%%n
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[8]d
  }
  unix_listener %[9]s {
    mode = 0666
  }
}
# Not root, nothing can chroot.
service anvil {
  chroot =
}
`, dir, internal, internalGroup, login, uid, gid, dv.Mail, dv.Port, dovecotSocket)
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "dovecot.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// Dovecot's master stops its children on SIGTERM.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("dovecot (pid %d) did not stop on SIGTERM; killed", cmd.Process.Pid)
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("dovecot log:\n%s", dv.readLog())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			b, _ := os.ReadFile(filepath.Join(dir, "dovecot.out"))
			t.Fatalf("dovecot exited at start: %v\n%s\n%s", err, b, dv.readLog())
		default:
		}
		if dv.accepts("tcp", fmt.Sprintf("127.0.0.1:%d", dv.Port)) && dv.accepts("unix", dv.Socket) {
			return dv
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot does not accept LMTP connections after 15s\n%s", dv.readLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// accepts reports whether a connection to addr gets Dovecot's LMTP greeting.
func (dv *dovecot) accepts(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "220 ")
}

func (dv *dovecot) readLog() string {
	b, _ := os.ReadFile(dv.Log)
	return string(b)
}

// waitMaildir waits until the Maildir of domain/user holds n messages (in
// new/ or cur/) and returns their contents, sorted.
func (dv *dovecot) waitMaildir(domain, user string, n int, timeout time.Duration) []string {
	dv.t.Helper()
	base := filepath.Join(dv.Mail, domain, user, "Maildir")
	deadline := time.Now().Add(timeout)
	for {
		var files []string
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(base, sub))
			for _, e := range ents {
				files = append(files, filepath.Join(base, sub, e.Name()))
			}
		}
		if len(files) >= n {
			var out []string
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					dv.t.Fatal(err)
				}
				out = append(out, string(b))
			}
			sort.Strings(out)
			return out
		}
		if time.Now().After(deadline) {
			dv.t.Fatalf("%s: %d messages after %v, want %d\n%s", base, len(files), timeout, n, dv.readLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDovecotLMTP delivers through Postern's lmtp agent into a real
// Dovecot (dovecot-lmtpd) over TCP and over its Unix socket.
func TestDovecotLMTP(t *testing.T) {
	for _, network := range []string{"inet", "unix"} {
		t.Run(network, func(t *testing.T) {
			in := NewInstance(t, Options{
				NoStart:  true,
				MasterCf: "lmtp      unix  -       -       n       -       -       lmtp",
			})
			// Dovecot stores as Postern's mail owner: any account but root.
			dv := startDovecot(t, in.UID, in.GID)
			nexthop := fmt.Sprintf("inet:127.0.0.1:%d", dv.Port)
			relay := fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d,", dv.Port)
			if network == "unix" {
				nexthop = "unix:" + dv.Socket
				relay = "[" + dv.Socket + "],"
			}
			in.AppendMainCf("virtual_transport = lmtp:" + nexthop)
			in.Start()
			msgs := []struct {
				to   []string
				body string
			}{
				{[]string{"user@itest.test"}, "Subject: one\r\n\r\nfirst message\r\n.leading dot\r\n"},
				{[]string{"other@itest.test"}, "Subject: two\r\n\r\nsecond message\r\n\r\n\r\ntrailing blank lines kept\r\n"},
				{[]string{"user@itest.test", "other@itest.test"}, "Subject: three\r\n\r\nthird message, for both\r\n" + strings.Repeat("x", 998) + "\r\n"},
			}
			var ids []string
			for _, m := range msgs {
				text, err := send(t, in.Addr, "sender@example.org", m.to, m.body)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, strings.TrimPrefix(text, "2.0.0 Ok: queued as "))
			}
			got := map[string][]string{
				"user":  dv.waitMaildir("itest.test", "user", 2, 20*time.Second),
				"other": dv.waitMaildir("itest.test", "other", 2, 20*time.Second),
			}
			for i, m := range msgs {
				// Bodies as stored: LF line ends, dot-stuffing undone.
				_, body, _ := strings.Cut(strings.ReplaceAll(m.body, "\r\n", "\n"), "\n\n")
				for _, rcpt := range m.to {
					box := strings.TrimSuffix(rcpt, "@itest.test")
					found := false
					for _, stored := range got[box] {
						// Dovecot adds Return-Path:, its Received: and, for a
						// message to one recipient, Delivered-To:.
						if strings.HasPrefix(stored, "Return-Path: <sender@example.org>\n") &&
							strings.Contains(stored, "\n"+strings.SplitN(strings.ReplaceAll(m.body, "\r\n", "\n"), "\n", 2)[0]+"\n") &&
							strings.HasSuffix(stored, "\n\n"+body) &&
							strings.Contains(stored, "by mta.itest.test (Postern) with ESMTP id "+ids[i]) &&
							(len(m.to) > 1 || strings.Contains(stored, "\nDelivered-To: "+rcpt+"\n")) {
							found = true
						}
					}
					if !found {
						t.Errorf("message %d (%s) not in %s's Maildir intact; have:\n%s", i, ids[i], rcpt, strings.Join(got[box], "\n----\n"))
					}
					line := ids[i] + ": to=<" + rcpt + ">, "
					if !in.WaitLog(line, 10*time.Second) {
						t.Errorf("no delivery line for %s", line)
						continue
					}
					l := grepLines(in.Log(), line)
					if !strings.Contains(l, relay) || !strings.Contains(l, "dsn=2.0.0, status=sent (250 2.0.0 <"+rcpt+"> ") || !strings.HasSuffix(l, " Saved)") {
						t.Errorf("delivery line for %s: want %s status=sent (250 2.0.0 <%s> ... Saved):\n%s", rcpt, relay, rcpt, l)
					}
				}
				if !in.WaitLog(ids[i]+": removed", 10*time.Second) {
					t.Errorf("%s not removed from the queue", ids[i])
				}
			}
			if t.Failed() {
				t.Logf("dovecot log:\n%s", dv.readLog())
			}
		})
	}
}

package itest

import (
	"bytes"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// localDomain is the mydestination of the local delivery tests.
const localDomain = "localhost.itest.test"

// unixUser is a throwaway account.
type unixUser struct {
	Name     string
	UID, GID int
	Home     string
}

// needRoot skips tests that create Unix accounts when not root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("local delivery to Unix accounts needs root to create throwaway users (useradd); skipped")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd not found; local delivery tests skipped")
	}
}

// addUser creates an account with its home below dir; the test's cleanup
// removes it.
func addUser(t *testing.T, dir, tag string) unixUser {
	t.Helper()
	name := fmt.Sprintf("pt%s%d", tag, time.Now().UnixNano()%1000000)
	home := filepath.Join(dir, "home", name)
	if err := os.MkdirAll(filepath.Dir(home), 0755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("useradd", "-M", "-N", "-d", home, "-s", "/bin/sh", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uu := unixUser{Name: name, Home: home}
	uu.UID, _ = strconv.Atoi(u.Uid)
	uu.GID, _ = strconv.Atoi(u.Gid)
	if err := os.Mkdir(home, 0700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uu.UID, uu.GID); err != nil {
		t.Fatal(err)
	}
	return uu
}

// waitFile waits until path exists with at least n bytes.
func waitFile(t *testing.T, in *Instance, path string, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if st, err := os.Stat(path); err == nil && st.Size() >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written after %v\n%s", path, timeout, in.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func owner(t *testing.T, path string) (int, int) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return int(s.Uid), int(s.Gid)
}

// splitMbox splits an mbox file into its messages at "From " lines that
// follow an empty line (or start the file), checking the separators.
func splitMbox(t *testing.T, data string) []string {
	t.Helper()
	if !strings.HasPrefix(data, "From ") {
		t.Fatalf("mbox does not start with a From_ line: %q", data)
	}
	if !strings.HasSuffix(data, "\n\n") {
		t.Fatalf("mbox does not end with an empty line: %q", data)
	}
	from := regexp.MustCompile(`^From \S+  [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}$`)
	var msgs []string
	for _, part := range strings.Split("\n\n"+data, "\n\nFrom ")[1:] {
		nl := strings.IndexByte(part, '\n')
		if !from.MatchString("From " + part[:nl]) {
			t.Errorf("bad From_ line %q", "From "+part[:nl])
		}
		msgs = append(msgs, part[nl+1:])
	}
	return msgs
}

// Mail for a Unix account lands in mail_spool_directory as an mbox the
// user owns, with From_ separators and >From quoting Go can parse back;
// an alias to a command runs as default_privs; an alias to an address is
// re-injected as a new message; a .forward forwards and keeps a copy;
// alias loops are broken by Delivered-To:; unknown users are refused at
// RCPT time through local_recipient_maps.
func TestLocalDelivery(t *testing.T) {
	needRoot(t)
	in := NewInstance(t, Options{NoStart: true, MainCf: ""})
	joe := addUser(t, in.Dir, "j")
	ann := addUser(t, in.Dir, "a")
	spool := filepath.Join(in.Dir, "spool")
	out := filepath.Join(in.Dir, "out")
	for _, d := range []string{spool, out} {
		os.Mkdir(d, 0755)
		os.Chmod(d, 0o1777)
	}
	in.AppendMainCf(fmt.Sprintf(`mydestination = %[1]s
alias_maps = hash:%[2]s/aliases
alias_database = hash:%[2]s/aliases
mail_spool_directory = %[3]s
recipient_delimiter = +
`, localDomain, in.Conf, spool))
	in.write("aliases", fmt.Sprintf(`# test aliases
postmaster: %[1]s
ext: user@itest.test
cmd: "|env > %[2]s/env.txt; cat > %[2]s/cmd.txt"
loopa: loopb@%[3]s
loopb: loopa@%[3]s
`, joe.Name, out, localDomain))
	fwd := filepath.Join(ann.Home, ".forward")
	if err := os.WriteFile(fwd, []byte("# keep a copy\n\\"+ann.Name+", other@itest.test\n"), 0600); err != nil {
		t.Fatal(err)
	}
	os.Chown(fwd, ann.UID, ann.GID)
	in.Start()

	t.Run("spool mbox", func(t *testing.T) {
		to := joe.Name + "@" + localDomain
		body1 := "Subject: first\r\nMessage-ID: <m1@example.org>\r\n\r\nFrom the start of a line\r\nplain\r\n"
		body2 := "Subject: second\r\n\r\nsecond body\r\n"
		for _, b := range []string{body1, body2} {
			if _, err := send(t, in.Addr, "sender@example.org", []string{to}, b); err != nil {
				t.Fatal(err)
			}
		}
		if !in.WaitLog("to=<"+to+">, relay=local", 15*time.Second) {
			t.Fatalf("no delivery line\n%s", in.Log())
		}
		box := filepath.Join(spool, joe.Name)
		deadline := time.Now().Add(15 * time.Second)
		var data []byte
		for time.Now().Before(deadline) {
			data, _ = os.ReadFile(box)
			if bytes.Count(data, []byte("\nFrom sender@example.org  ")) >= 1 && bytes.HasSuffix(data, []byte("\n\n")) && bytes.Contains(data, []byte("second body")) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		msgs := splitMbox(t, string(data))
		if len(msgs) != 2 {
			t.Fatalf("%d messages in the mbox, want 2:\n%s", len(msgs), data)
		}
		if !strings.Contains(msgs[0], "Subject: first") {
			msgs[0], msgs[1] = msgs[1], msgs[0] // delivered in the other order
		}
		m, err := mail.ReadMessage(strings.NewReader(msgs[0]))
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get("Return-Path") != "<sender@example.org>" || m.Header.Get("Delivered-To") != to || m.Header.Get("X-Original-To") != to {
			t.Errorf("headers: %v", m.Header)
		}
		if !strings.Contains(msgs[0], "\n>From the start of a line\n") {
			t.Errorf("From line in the body not quoted:\n%s", msgs[0])
		}
		if uid, _ := owner(t, box); uid != joe.UID {
			t.Errorf("mailbox owned by uid %d, want %d", uid, joe.UID)
		}
		if !in.WaitLog("to=<"+to+">, relay=local, delay=", time.Second) || !strings.Contains(in.Log(), "status=sent (delivered to mailbox)") {
			t.Errorf("log:\n%s", in.Log())
		}
		t.Logf("log:\n%s", grepLines(in.Log(), "relay=local"))
	})

	t.Run("command alias", func(t *testing.T) {
		if _, err := send(t, in.Addr, "sender@example.org", []string{"cmd@" + localDomain}, "Subject: cmd\r\n\r\nto a command\r\n"); err != nil {
			t.Fatal(err)
		}
		if !in.WaitLog("status=sent (delivered to command: env > ", 15*time.Second) {
			t.Fatalf("log:\n%s", in.Log())
		}
		got := readFile(t, filepath.Join(out, "cmd.txt"))
		if !strings.HasPrefix(got, "From sender@example.org  ") || !strings.Contains(got, "\nReturn-Path: <sender@example.org>\n") || !strings.Contains(got, "to a command") {
			t.Errorf("command got:\n%s", got)
		}
		env := readFile(t, filepath.Join(out, "env.txt"))
		for _, want := range []string{"RECIPIENT=cmd@" + localDomain, "SENDER=sender@example.org", "LOCAL=cmd", "DOMAIN=" + localDomain, "PATH=/usr/bin:/bin"} {
			if !strings.Contains(env, want+"\n") {
				t.Errorf("command environment lacks %s:\n%s", want, env)
			}
		}
		// The aliases file is root's: the command ran as default_privs.
		nobody, _ := user.Lookup("nobody")
		if uid, _ := owner(t, filepath.Join(out, "cmd.txt")); strconv.Itoa(uid) != nobody.Uid {
			t.Errorf("command ran as uid %d, want nobody (%s)", uid, nobody.Uid)
		}
	})

	t.Run("alias re-injected", func(t *testing.T) {
		text, err := send(t, in.Addr, "sender@example.org", []string{"ext@" + localDomain}, "Subject: ext\r\n\r\nforward me\r\n")
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
		files := in.WaitMaildir("itest.test/user", 1, 15*time.Second)
		re := regexp.MustCompile(regexp.QuoteMeta(id) + `: to=<ext@` + regexp.QuoteMeta(localDomain) + `>, relay=local, .*status=sent \(forwarded as (\w+)\)`)
		mm := re.FindStringSubmatch(in.Log())
		if mm == nil {
			t.Fatalf("no forwarded line for %s:\n%s", id, in.Log())
		}
		if mm[1] == id || !in.WaitLog(mm[1]+": to=<user@itest.test>, relay=virtual", 5*time.Second) {
			t.Errorf("new queue ID %s not delivered:\n%s", mm[1], in.Log())
		}
		got := readFile(t, files[len(files)-1])
		if !strings.Contains(got, "Delivered-To: ext@"+localDomain+"\n") || !strings.Contains(got, "Return-Path: <sender@example.org>") {
			t.Errorf("forwarded copy:\n%s", got)
		}
	})

	t.Run("forward", func(t *testing.T) {
		to := ann.Name + "@" + localDomain
		if _, err := send(t, in.Addr, "sender@example.org", []string{to}, "Subject: fwd\r\n\r\nvia .forward\r\n"); err != nil {
			t.Fatal(err)
		}
		in.WaitMaildir("itest.test/other", 1, 15*time.Second)
		box := filepath.Join(spool, ann.Name)
		waitFile(t, in, box, 1, 15*time.Second)
		if !in.WaitLog("to=<"+to+">, relay=local", 5*time.Second) {
			t.Fatalf("log:\n%s", in.Log())
		}
		lines := grepLines(in.Log(), "to=<"+to+">")
		if !strings.Contains(lines, "(delivered to mailbox)") || !strings.Contains(lines, "(forwarded as ") {
			t.Errorf("log lines for %s:\n%s", to, lines)
		}
	})

	t.Run("alias loop", func(t *testing.T) {
		if _, err := send(t, in.Addr, "user@itest.test", []string{"loopa@" + localDomain}, "Subject: loop\r\n\r\nround and round\r\n"); err != nil {
			t.Fatal(err)
		}
		if !in.WaitLog("dsn=5.4.6, status=bounced (mail forwarding loop for loopa@"+localDomain+")", 20*time.Second) {
			t.Fatalf("no loop bounce:\n%s", in.Log())
		}
	})

	t.Run("unknown user refused", func(t *testing.T) {
		_, err := send(t, in.Addr, "sender@example.org", []string{"nosuchuser@" + localDomain}, "Subject: x\r\n\r\nx\r\n")
		if err == nil || !strings.Contains(err.Error(), "550") {
			t.Errorf("RCPT to an unknown local user: %v", err)
		}
	})
}

// home_mailbox = Maildir/ delivers into the user's home, as the user; an
// unknown user (with local_recipient_maps off) bounces with 5.1.1.
func TestLocalHomeMaildir(t *testing.T) {
	needRoot(t)
	in := NewInstance(t, Options{NoStart: true})
	bob := addUser(t, in.Dir, "b")
	in.AppendMainCf(fmt.Sprintf("mydestination = %s\nalias_maps =\nlocal_recipient_maps =\nhome_mailbox = Maildir/\n", localDomain))
	in.Start()
	to := bob.Name + "@" + localDomain
	if _, err := send(t, in.Addr, "user@itest.test", []string{to, "nosuchuser@" + localDomain}, "Subject: md\r\n\r\nto the home Maildir\r\n"); err != nil {
		t.Fatal(err)
	}
	newDir := filepath.Join(bob.Home, "Maildir", "new")
	deadline := time.Now().Add(15 * time.Second)
	var ents []os.DirEntry
	for len(ents) == 0 && time.Now().Before(deadline) {
		ents, _ = os.ReadDir(newDir)
		time.Sleep(20 * time.Millisecond)
	}
	if len(ents) != 1 {
		t.Fatalf("%s: %d files\n%s", newDir, len(ents), in.Log())
	}
	p := filepath.Join(newDir, ents[0].Name())
	got := readFile(t, p)
	if !strings.HasPrefix(got, "Return-Path: <user@itest.test>\nX-Original-To: "+to+"\nDelivered-To: "+to+"\n") {
		t.Errorf("maildir message:\n%s", got)
	}
	for _, f := range []string{p, filepath.Join(bob.Home, "Maildir"), newDir} {
		if uid, gid := owner(t, f); uid != bob.UID || gid != bob.GID {
			t.Errorf("%s owned by %d:%d, want %d:%d", f, uid, gid, bob.UID, bob.GID)
		}
	}
	if !in.WaitLog("status=sent (delivered to maildir)", 5*time.Second) ||
		!in.WaitLog(`dsn=5.1.1, status=bounced (unknown user: "nosuchuser")`, 10*time.Second) {
		t.Errorf("log:\n%s", in.Log())
	}
}

// mailbox_command runs as the recipient with Postfix's environment (what
// procmail and dovecot-lda read), the message with its From_ line on
// standard input.
func TestLocalMailboxCommand(t *testing.T) {
	needRoot(t)
	in := NewInstance(t, Options{NoStart: true})
	eve := addUser(t, in.Dir, "e")
	in.AppendMainCf(fmt.Sprintf("mydestination = %s\nalias_maps =\nrecipient_delimiter = +\nmailbox_command = cat > $HOME/got.txt; env > $HOME/env.txt\n", localDomain))
	in.Start()
	to := eve.Name + "+tag@" + localDomain
	if _, err := send(t, in.Addr, "user@itest.test", []string{to}, "Subject: cmd\r\n\r\nfor procmail\r\n"); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(eve.Home, "env.txt")
	// Not $name-expanded (postconf(5)): the shell expands $HOME.
	if !in.WaitLog("status=sent (delivered to command: cat > $HOME/got.txt; env > $HOME/env.txt)", 15*time.Second) {
		t.Fatalf("log:\n%s", in.Log())
	}
	got := readFile(t, filepath.Join(eve.Home, "got.txt"))
	if !strings.HasPrefix(got, "From user@itest.test  ") || !strings.Contains(got, "\nDelivered-To: "+to+"\n") || !strings.HasSuffix(got, "for procmail\n") {
		t.Errorf("command input:\n%s", got)
	}
	env := readFile(t, envFile)
	for _, want := range []string{"HOME=" + eve.Home, "USER=" + eve.Name, "LOGNAME=" + eve.Name, "SHELL=/bin/sh",
		"EXTENSION=tag", "LOCAL=" + eve.Name + "+tag", "RECIPIENT=" + to, "ORIGINAL_RECIPIENT=" + to, "SENDER=user@itest.test"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	if uid, gid := owner(t, envFile); uid != eve.UID || gid != eve.GID {
		t.Errorf("command ran as %d:%d, want %d:%d", uid, gid, eve.UID, eve.GID)
	}
}

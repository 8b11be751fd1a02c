package itest

import (
	"context"
	"fmt"
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

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSendmailExtract: "sendmail -t -i" as cron and PHP use it; Bcc
// recipients get the message, the Bcc: header is gone.
func TestSendmailExtract(t *testing.T) {
	in := newSendmailInstance(t, Options{})
	msg := "To: User <user@itest.test>\nBcc: other@itest.test\nSubject: cron output\nMessage-ID: <cron1@itest.test>\n\nline 1\n.\nline 3\n"
	r := in.Sendmail("sendmail", msg, nil, "-t", "-i")
	if r.Code != 0 {
		t.Fatalf("sendmail exit %d: %s", r.Code, r.Stderr)
	}
	got := readFile(t, in.WaitMaildir("itest.test/user", 1, 15*time.Second)[0])
	other := readFile(t, in.WaitMaildir("itest.test/other", 1, 15*time.Second)[0])
	for _, m := range []string{got, other} {
		if strings.Contains(m, "Bcc:") || strings.Contains(m, "other@itest.test\n\n") {
			t.Errorf("Bcc: header delivered:\n%s", m)
		}
		if !strings.Contains(m, "\n\nline 1\n.\nline 3\n") {
			t.Errorf("body changed:\n%s", m)
		}
	}
	uid := os.Getuid()
	want := regexp.MustCompile(fmt.Sprintf(`(?m)^Received: by mta\.itest\.test \(Postern, from userid %d\)\n\tid [0-9A-Za-z]+; `, uid))
	if !want.MatchString(got) {
		t.Errorf("no pickup Received: header:\n%s", got)
	}
	login := "unknown"
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		login = u.Username
	}
	if !strings.Contains(got, "Return-Path: <"+login+"@mta.itest.test>") {
		t.Errorf("sender is not login@$myorigin:\n%s", got)
	}
	if !in.WaitLog(fmt.Sprintf("uid=%d from=<%s>", uid, login), 5*time.Second) {
		t.Errorf("no pickup log line\n%s", in.Log())
	}
	if files := in.QueueFiles("maildrop"); len(files) != 0 {
		t.Errorf("maildrop/ not emptied: %v", files)
	}
}

// TestSendmailWhileStopped: mail submitted while the daemons are down
// waits in maildrop/, shows in mailq, and goes out after start.
func TestSendmailWhileStopped(t *testing.T) {
	in := newSendmailInstance(t, Options{})
	in.Stop()
	r := in.Sendmail("sendmail", "Subject: while down\n\nhello\n", nil, "-f", "sender@example.org", "user@itest.test")
	if r.Code != 0 {
		t.Fatalf("sendmail exit %d: %s", r.Code, r.Stderr)
	}
	files := in.WaitQueueFiles("maildrop", 1, time.Second)
	q := in.Sendmail("mailq", "", nil)
	if q.Code != 0 {
		t.Fatalf("mailq exit %d: %s", q.Code, q.Stderr)
	}
	lines := strings.Split(q.Stdout, "\n")
	head := regexp.MustCompile(`^` + files[0] + ` +\d+ [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d sender@example\.org$`)
	if len(lines) != 6 || lines[0] != "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------" ||
		!head.MatchString(lines[1]) || lines[2] != strings.Repeat(" ", 47)+"user@itest.test" || lines[4] != "-- 0 Kbytes in 1 Request." {
		t.Errorf("mailq output:\n%s", q.Stdout)
	}
	in.Start()
	got := readFile(t, in.WaitMaildir("itest.test/user", 1, 15*time.Second)[0])
	if !strings.Contains(got, "Subject: while down\n") {
		t.Errorf("delivered:\n%s", got)
	}
	in.WaitQueueFiles("maildrop", 0, 5*time.Second)
	if q := in.Sendmail("sendmail", "", nil, "-bp"); q.Stdout != "Mail queue is empty\n" {
		t.Errorf("mailq after delivery: %q", q.Stdout)
	}
}

// TestSendmailBs: an SMTP dialogue on stdin/stdout.
func TestSendmailBs(t *testing.T) {
	in := newSendmailInstance(t, Options{})
	dialogue := "EHLO client\r\nMAIL FROM:<bs@example.org>\r\nRCPT TO:<user@itest.test>\r\nDATA\r\nSubject: bs\r\n\r\n..dotted\r\n.\r\nQUIT\r\n"
	r := in.Sendmail("sendmail", dialogue, nil, "-bs")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "220 mta.itest.test ESMTP") || !strings.Contains(r.Stdout, "250 2.0.0 Ok: queued as ") || !strings.HasSuffix(r.Stdout, "221 2.0.0 Bye\r\n") {
		t.Fatalf("exit %d, dialogue:\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	got := readFile(t, in.WaitMaildir("itest.test/user", 1, 15*time.Second)[0])
	if !strings.Contains(got, "Return-Path: <bs@example.org>") || !strings.Contains(got, "\n\n.dotted\n") {
		t.Errorf("delivered:\n%s", got)
	}
}

// TestPickupCorruptDrop: a malformed file in maildrop/ goes to corrupt/.
func TestPickupCorruptDrop(t *testing.T) {
	in := newSendmailInstance(t, Options{})
	id := "8DspE9KXsfrhV"
	path := filepath.Join(in.Dir, "queue", "maildrop", id)
	if err := os.WriteFile(path, []byte("this is not a queue file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in.Sendmail("sendmail", "", nil, "-q") // wake pickup now rather than at the next scan
	in.WaitQueueFiles("corrupt", 1, 15*time.Second)
	if !in.WaitLog("warning: maildrop/"+id+": ", 5*time.Second) {
		t.Errorf("no warning logged\n%s", in.Log())
	}
	if files := in.QueueFiles("maildrop"); len(files) != 0 {
		t.Errorf("maildrop/ holds %v", files)
	}
}

// TestSendmailUnprivileged: a user who is neither root nor mail_owner
// goes through postdrop; the file is owned by the user and pickup logs
// the user's uid. postdrop here is not set-group-ID: the process gets
// the setgid_group as its real group instead, which exercises the same
// code without installing a set-group-ID binary.
func TestSendmailUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run sendmail as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	grp, err := user.LookupGroup("posterndrop")
	if err != nil {
		t.Skip("no group posterndrop (setgid_group)")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(grp.Gid)
	in := newSendmailInstance(t, Options{MainCf: "local_login_sender_maps = inline:{ {nobody = nobody, @allowed.example} }"})
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	r := in.Sendmail("sendmail", "Subject: from nobody\n\nhi\n", cred, "-f", "other@example.org", "user@itest.test")
	if r.Code != 77 || !strings.Contains(r.Stderr, "not authorized to use sender='other@example.org'") {
		t.Errorf("forged sender: exit %d, %s", r.Code, r.Stderr)
	}
	r = in.Sendmail("sendmail", "Subject: from nobody\n\nhi\n", cred, "-f", "x@allowed.example", "user@itest.test")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	got := readFile(t, in.WaitMaildir("itest.test/user", 1, 15*time.Second)[0])
	if !strings.Contains(got, fmt.Sprintf("(Postern, from userid %d)", uid)) || !strings.Contains(got, "Return-Path: <x@allowed.example>") {
		t.Errorf("delivered:\n%s", got)
	}
	if !in.WaitLog(fmt.Sprintf("uid=%d from=<x@allowed.example>", uid), 5*time.Second) {
		t.Errorf("pickup did not log the user's uid\n%s", in.Log())
	}
	if q := in.Sendmail("mailq", "", cred); q.Code != 69 || !strings.Contains(q.Stderr, "Queue report unavailable") {
		t.Errorf("mailq as nobody: exit %d, %q", q.Code, q.Stderr)
	}
}

// TestPHPMail: PHP's mail() through sendmail_path.
func TestPHPMail(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		t.Skip("php is not installed; PHP mail() not tested")
	}
	in := newSendmailInstance(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, php, "-d", "sendmail_path="+filepath.Join(binDir, "sendmail")+" -t -i",
		"-r", `exit(mail("user@itest.test", "php subject", "php body", "Cc: other@itest.test\r\nBcc: mbox@itest.test") ? 0 : 1);`)
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+in.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("php: %v\n%s", err, out)
	}
	got := readFile(t, in.WaitMaildir("itest.test/user", 1, 15*time.Second)[0])
	in.WaitMaildir("itest.test/other", 1, 15*time.Second)
	if !strings.Contains(got, "Subject: php subject") || strings.Contains(got, "Bcc:") {
		t.Errorf("delivered:\n%s", got)
	}
}

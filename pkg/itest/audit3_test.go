package itest

// Tests added by the audit of issue 3 (local submission and delivery) for
// behaviour that was implemented but not proved end to end: the DSN
// options of sendmail (-N, -R), PHP mail()'s Bcc recipient, and local(8)'s
// alias forms (/file, :include:, owner- lists, postmaster: root with root
// forwarded elsewhere), allow_mail_to_files, mailbox_size_limit, the
// dot-lock of mailbox_delivery_lock and home_mailbox as an mbox file.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postern/pkg/ipc"
)

// The queue ID of a sendmail submission is the maildrop file's; pickup
// logs the ID cleanup gives it. audit3WaitQueued finds the cleanup ID by the
// message's Message-ID.
func audit3WaitQueued(t *testing.T, in *Instance, msgid string) string {
	t.Helper()
	needle := ": message-id=<" + msgid + ">"
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(in.Log(), "\n") {
			if i := strings.Index(l, needle); i >= 0 {
				f := strings.Fields(l[:i])
				return f[len(f)-1]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("message-id=<%s> not logged\n%s", msgid, in.Log())
	return ""
}

// sendmail -R hdrs returns only the headers in a bounce; without -R the
// whole message comes back; -N never suppresses the bounce; -N success
// asks for a delivery report.
func TestAudit3SendmailDSN(t *testing.T) {
	in := newSendmailInstance(t, Options{MainCf: fullMboxCf})
	fillMbox(t, in)
	big := strings.Repeat("x", 300)

	in.Sendmail("sendmail", "Subject: ret hdrs\nMessage-ID: <hdrs@example.org>\n\n"+big+"\n", nil, "-f", "user@itest.test", "-R", "hdrs", "mbox@itest.test")
	rep := readReport(t, in.WaitMaildir("itest.test/user", 1, 15*time.Second)[0])
	rep.want(t, "Undelivered Mail Returned to Sender", "Final-Recipient: rfc822; mbox@itest.test", "Action: failed", "Status: 5.2.2")
	if !strings.HasPrefix(rep.types[2], "text/rfc822-headers") || !strings.Contains(rep.orig, "Subject: ret hdrs") || strings.Contains(rep.orig, big) {
		t.Errorf("-R hdrs: third part %s:\n%s", rep.types[2], rep.orig)
	}

	in.Sendmail("sendmail", "Subject: ret default\nMessage-ID: <full@example.org>\n\n"+big+"\n", nil, "-f", "user@itest.test", "mbox@itest.test")
	files := in.WaitMaildir("itest.test/user", 2, 15*time.Second)
	var full report
	for _, f := range files {
		if r := readReport(t, f); strings.Contains(r.orig, "Subject: ret default") {
			full = r
		}
	}
	if full.types == nil || !strings.HasPrefix(full.types[2], "message/rfc822") || !strings.Contains(full.orig, big) {
		t.Errorf("no -R: want the whole message returned, got %v:\n%s", full.types, full.orig)
	}

	in.Sendmail("sendmail", "Subject: never\nMessage-ID: <never@example.org>\n\n"+big+"\n", nil, "-f", "user@itest.test", "-N", "never", "mbox@itest.test")
	id := audit3WaitQueued(t, in, "never@example.org")
	if !in.WaitLog(id+": to=<mbox@itest.test>", 15*time.Second) || !in.WaitLog(id+": removed", 15*time.Second) {
		t.Fatalf("log:\n%s", in.Log())
	}
	time.Sleep(300 * time.Millisecond)
	if n := countMaildir(in, "itest.test/user"); n != 2 {
		t.Errorf("-N never: sender has %d messages, want 2 (no bounce)", n)
	}
	if line := grepLines(in.Log(), id+": to=<mbox@itest.test>"); !strings.Contains(line, "status=bounced") {
		t.Errorf("-N never: %s", line)
	}

	in.Sendmail("sendmail", "Subject: success\nMessage-ID: <succ@example.org>\n\nshort\n", nil, "-f", "user@itest.test", "-N", "success", "other@itest.test")
	in.WaitMaildir("itest.test/other", 1, 15*time.Second)
	files = in.WaitMaildir("itest.test/user", 3, 15*time.Second)
	found := false
	for _, f := range files {
		if r := readReport(t, f); r.header.Get("Subject") == "Successful Mail Delivery Report" {
			found = true
			r.want(t, "Successful Mail Delivery Report", "Final-Recipient: rfc822; other@itest.test", "Action: delivered")
		}
	}
	if !found {
		t.Errorf("-N success: no delivery report\n%s", in.Log())
	}
}

// PHP's mail() with To:, Cc: and Bcc: headers: all three recipients get
// the message (the Bcc one in an mbox read back with Go), none sees Bcc:.
func TestAudit3PHPBcc(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		t.Skip("php is not installed; PHP mail() not tested")
	}
	in := newSendmailInstance(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, php, "-d", "sendmail_path="+filepath.Join(binDir, "sendmail")+" -t -i",
		"-r", `exit(mail("user@itest.test", "php bcc", "From me\nphp body", "Cc: other@itest.test\r\nBcc: mbox@itest.test") ? 0 : 1);`)
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+in.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("php: %v\n%s", err, out)
	}
	for _, rel := range []string{"itest.test/user", "itest.test/other"} {
		got := readFile(t, in.WaitMaildir(rel, 1, 15*time.Second)[0])
		if !strings.Contains(got, "Subject: php bcc\n") || strings.Contains(got, "Bcc:") || !strings.Contains(got, "\n\nFrom me\nphp body\n") {
			t.Errorf("%s got:\n%s", rel, got)
		}
	}
	box := filepath.Join(in.Mail, "itest.test", "mbox")
	waitFile(t, in, box, 1, 15*time.Second)
	if !in.WaitLog("to=<mbox@itest.test>, relay=virtual", 15*time.Second) {
		t.Fatalf("log:\n%s", in.Log())
	}
	msgs := splitMbox(t, readFile(t, box))
	if len(msgs) != 1 || strings.Contains(msgs[0], "Bcc:") || !strings.Contains(msgs[0], "\n\n>From me\nphp body\n") {
		t.Errorf("Bcc recipient's mbox:\n%q", msgs)
	}
}

// local(8)'s alias forms and mailbox options, as root with throwaway
// users.
func TestAudit3LocalAliasForms(t *testing.T) {
	needRoot(t)
	in := NewInstance(t, Options{NoStart: true})
	kim := addUser(t, in.Dir, "k")
	fay := addUser(t, in.Dir, "f")
	mo := addUser(t, in.Dir, "m")
	spool := filepath.Join(in.Dir, "spool")
	out := filepath.Join(in.Dir, "out")
	for _, d := range []string{spool, out} {
		os.Mkdir(d, 0755)
		os.Chmod(d, 0o1777)
	}
	inc := filepath.Join(in.Conf, "list.inc")
	in.write("list.inc", "# members\nother@itest.test\n")
	in.write("vmailbox", "user@itest.test itest.test/user/\nother@itest.test itest.test/other/\nsink@itest.test itest.test/sink/\n")
	in.AppendMainCf(fmt.Sprintf(`mydestination = %[1]s, $myhostname
alias_maps = hash:%[2]s/aliases
alias_database = hash:%[2]s/aliases
mail_spool_directory = %[3]s
allow_mail_to_files = alias
mailbox_size_limit = 4000
message_size_limit = 4000
deliver_lock_attempts = 2
deliver_lock_delay = 1s
`, localDomain, in.Conf, spool))
	in.write("aliases", fmt.Sprintf(`postmaster: root
root: user@itest.test
tofile: %[1]s/file.mbox
list: :include:%[2]s
owner-list: sink@itest.test
`, out, inc))
	fwd := filepath.Join(fay.Home, ".forward")
	if err := os.WriteFile(fwd, []byte(out+"/fay.mbox\n"), 0600); err != nil {
		t.Fatal(err)
	}
	os.Chown(fwd, fay.UID, fay.GID)
	in.Start()
	at := func(local string) string { return local + "@" + localDomain }

	t.Run("postmaster to root to elsewhere", func(t *testing.T) {
		if _, err := send(t, in.Addr, "sink@itest.test", []string{at("postmaster")}, "Subject: for the postmaster\r\n\r\nhi\r\n"); err != nil {
			t.Fatal(err)
		}
		got := readFile(t, in.WaitMaildir("itest.test/user", 1, 15*time.Second)[0])
		if !strings.Contains(got, "Subject: for the postmaster\n") || !strings.Contains(got, "Return-Path: <sink@itest.test>") {
			t.Errorf("delivered:\n%s", got)
		}
	})

	t.Run("file alias", func(t *testing.T) {
		if _, err := send(t, in.Addr, "sink@itest.test", []string{at("tofile")}, "Subject: to a file\r\n\r\nFrom here\r\n"); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(out, "file.mbox")
		if !in.WaitLog("status=sent (delivered to file: "+path+")", 15*time.Second) {
			t.Fatalf("log:\n%s", in.Log())
		}
		msgs := splitMbox(t, readFile(t, path))
		if len(msgs) != 1 || !strings.Contains(msgs[0], "Delivered-To: "+at("tofile")+"\n") || !strings.Contains(msgs[0], "\n\n>From here\n") {
			t.Errorf("file got %q", msgs)
		}
		// The aliases file is root's: the file was written as default_privs.
		nobody, _ := user.Lookup("nobody")
		if uid, _ := owner(t, path); strconv.Itoa(uid) != nobody.Uid {
			t.Errorf("file written as uid %d, want nobody (%s)", uid, nobody.Uid)
		}
	})

	t.Run("include and owner", func(t *testing.T) {
		if _, err := send(t, in.Addr, "user@itest.test", []string{at("list")}, "Subject: to the list\r\n\r\nmembers\r\n"); err != nil {
			t.Fatal(err)
		}
		got := readFile(t, in.WaitMaildir("itest.test/other", 1, 15*time.Second)[0])
		// owner-list exists: the list's copy goes out from owner-list@$myorigin.
		if !strings.Contains(got, "Subject: to the list\n") || !strings.Contains(got, "Return-Path: <owner-list@mta.itest.test>\n") {
			t.Errorf("list member got:\n%s", got)
		}
	})

	t.Run("forward to file restricted", func(t *testing.T) {
		if _, err := send(t, in.Addr, "sink@itest.test", []string{at(fay.Name)}, "Subject: fwd file\r\n\r\nx\r\n"); err != nil {
			t.Fatal(err)
		}
		if !in.WaitLog("dsn=5.7.1, status=bounced (mail to file is restricted)", 15*time.Second) {
			t.Fatalf("log:\n%s", in.Log())
		}
		if _, err := os.Stat(filepath.Join(out, "fay.mbox")); err == nil {
			t.Error("the .forward file destination was written")
		}
		rep := readReport(t, in.WaitMaildir("itest.test/sink", 1, 15*time.Second)[0])
		rep.want(t, "Undelivered Mail Returned to Sender", "Final-Recipient: rfc822; "+at(fay.Name), "Status: 5.7.1")
	})

	t.Run("mailbox_size_limit", func(t *testing.T) {
		to := at(mo.Name)
		body := "Subject: %s\r\n\r\n" + strings.Repeat("y", 2500) + "\r\n"
		if _, err := send(t, in.Addr, "", []string{to}, fmt.Sprintf(body, "one")); err != nil {
			t.Fatal(err)
		}
		if !in.WaitLog("to=<"+to+">, relay=local", 15*time.Second) {
			t.Fatalf("log:\n%s", in.Log())
		}
		box := filepath.Join(spool, mo.Name)
		before := readFile(t, box)
		if _, err := send(t, in.Addr, "", []string{to}, fmt.Sprintf(body, "two")); err != nil {
			t.Fatal(err)
		}
		want := "dsn=5.2.2, status=bounced (cannot update mailbox " + box + " for user " + mo.Name + ". error writing message: File too large)"
		if !in.WaitLog(want, 15*time.Second) {
			t.Errorf("want %q in\n%s", want, grepLines(in.Log(), "to=<"+to+">"))
		}
		if after := readFile(t, box); after != before {
			t.Errorf("mailbox changed by the refused delivery: %d bytes, was %d", len(after), len(before))
		}
	})

	t.Run("dotlock", func(t *testing.T) {
		to := at(kim.Name)
		lock := filepath.Join(spool, kim.Name+".lock")
		if err := os.WriteFile(lock, nil, 0600); err != nil {
			t.Fatal(err)
		}
		text, err := send(t, in.Addr, "sink@itest.test", []string{to}, "Subject: locked\r\n\r\nwait\r\n")
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimPrefix(text, "2.0.0 Ok: queued as ")
		if !in.WaitLog(id+": to=<"+to+">", 20*time.Second) {
			t.Fatalf("log:\n%s", in.Log())
		}
		if line := grepLines(in.Log(), id+": to=<"+to+">"); !strings.Contains(line, "dsn=4.2.0, status=deferred") {
			t.Errorf("delivery under a fresh dot-lock: %s", line)
		}
		if _, err := os.Stat(filepath.Join(spool, kim.Name)); err == nil {
			if b := readFile(t, filepath.Join(spool, kim.Name)); strings.Contains(b, "Subject: locked") {
				t.Errorf("delivered despite the dot-lock")
			}
		}
		os.Remove(lock)
		if err := ipc.Trigger(filepath.Join(in.Dir, "queue", "public", "qmgr"), 'F', 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if !in.WaitLog(id+": removed", 20*time.Second) {
			t.Fatalf("not delivered after the lock went:\n%s", grepLines(in.Log(), id))
		}
		msgs := splitMbox(t, readFile(t, filepath.Join(spool, kim.Name)))
		if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: locked") {
			t.Errorf("mailbox: %q", msgs)
		}
		if _, err := os.Stat(lock); err == nil {
			t.Error("Postern's dot-lock left behind")
		}
	})
}

// home_mailbox naming a file (no trailing /) is an mbox in the home
// directory, owned by the user.
func TestAudit3HomeMbox(t *testing.T) {
	needRoot(t)
	in := NewInstance(t, Options{NoStart: true})
	ida := addUser(t, in.Dir, "i")
	in.AppendMainCf(fmt.Sprintf("mydestination = %s\nalias_maps =\nhome_mailbox = Mailbox\n", localDomain))
	in.Start()
	to := ida.Name + "@" + localDomain
	for _, s := range []string{"one", "two"} {
		if _, err := send(t, in.Addr, "user@itest.test", []string{to}, "Subject: "+s+"\r\n\r\nFrom "+s+"\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	box := filepath.Join(ida.Home, "Mailbox")
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(in.Log(), "to=<"+to+">, relay=local") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	msgs := splitMbox(t, readFile(t, box))
	if len(msgs) != 2 {
		t.Fatalf("%d messages:\n%q", len(msgs), msgs)
	}
	for _, m := range msgs {
		if !strings.HasPrefix(m, "Return-Path: <user@itest.test>\nX-Original-To: "+to+"\nDelivered-To: "+to+"\n") || !strings.Contains(m, "\n\n>From ") {
			t.Errorf("message:\n%s", m)
		}
	}
	if uid, gid := owner(t, box); uid != ida.UID || gid != ida.GID {
		t.Errorf("%s owned by %d:%d, want %d:%d", box, uid, gid, ida.UID, ida.GID)
	}
}

// virtual_mailbox_limit bounds the size of a virtual mbox file, as in
// Postfix: a message that would grow the file past it bounces with 5.2.2
// and leaves the file as it was, even when the message alone is smaller.
func TestAudit3VirtualMailboxLimit(t *testing.T) {
	in := NewInstance(t, Options{MainCf: "virtual_mailbox_limit = 1500\nmessage_size_limit = 1500"})
	body := "Subject: %s\r\n\r\n" + strings.Repeat("z", 400) + "\r\n"
	if _, err := send(t, in.Addr, "", []string{"mbox@itest.test"}, fmt.Sprintf(body, "one")); err != nil {
		t.Fatal(err)
	}
	box := filepath.Join(in.Mail, "itest.test", "mbox")
	if !in.WaitLog("to=<mbox@itest.test>, relay=virtual", 15*time.Second) {
		t.Fatalf("log:\n%s", in.Log())
	}
	before := readFile(t, box)
	if _, err := send(t, in.Addr, "", []string{"mbox@itest.test"}, fmt.Sprintf(body, "two")); err != nil {
		t.Fatal(err)
	}
	want := "dsn=5.2.2, status=bounced (delivery failed to mailbox " + box + ": error writing message: File too large)"
	if !in.WaitLog(want, 15*time.Second) {
		t.Errorf("want %q in\n%s", want, grepLines(in.Log(), "to=<mbox@itest.test>"))
	}
	if after := readFile(t, box); after != before {
		t.Errorf("mailbox changed by the refused delivery: %d bytes, was %d", len(after), len(before))
	}
	if msgs := splitMbox(t, before); len(msgs) != 1 {
		t.Errorf("%d messages, want 1", len(msgs))
	}
}

// procmail as mailbox_command: it runs as the user, finds the address
// extension in $EXTENSION of the environment Postfix exports (kept by
// procmail -p), and files
// into mboxes that read back with correct From_ separators.
func TestAudit3Procmail(t *testing.T) {
	needRoot(t)
	procmail, err := exec.LookPath("procmail")
	if err != nil {
		t.Skip("procmail is not installed; procmail mailbox_command not tested")
	}
	in := NewInstance(t, Options{NoStart: true})
	pat := addUser(t, in.Dir, "p")
	in.AppendMainCf(fmt.Sprintf("mydestination = %s\nalias_maps =\nrecipient_delimiter = +\nmailbox_command = %s -p\n", localDomain, procmail))
	rc := filepath.Join(pat.Home, ".procmailrc")
	if err := os.WriteFile(rc, []byte("MAILDIR=$HOME/Mail\nDEFAULT=$HOME/Mail/inbox\nLOGFILE=$HOME/procmail.log\n\n:0:\n* EXTENSION ?? ^^tag^^\ntagged\n"), 0600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(pat.Home, "Mail"), 0700)
	for _, p := range []string{rc, filepath.Join(pat.Home, "Mail")} {
		os.Chown(p, pat.UID, pat.GID)
	}
	in.Start()
	for _, s := range []string{"", "+tag"} {
		to := pat.Name + s + "@" + localDomain
		if _, err := send(t, in.Addr, "user@itest.test", []string{to}, "Subject: procmail"+s+"\r\n\r\nFrom a body line\r\n"); err != nil {
			t.Fatal(err)
		}
		if !in.WaitLog("to=<"+to+">, relay=local", 15*time.Second) {
			t.Fatalf("log:\n%s", in.Log())
		}
	}
	if lines := grepLines(in.Log(), "relay=local"); strings.Count(lines, "status=sent (delivered to command: "+procmail) != 2 {
		t.Fatalf("log:\n%s", lines)
	}
	for box, subj := range map[string]string{"inbox": "procmail", "tagged": "procmail+tag"} {
		path := filepath.Join(pat.Home, "Mail", box)
		data, err := os.ReadFile(path)
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(pat.Home, "procmail.log"))
			t.Fatalf("%v\nprocmail.log:\n%s", err, log)
		}
		msgs := splitMbox(t, string(data))
		if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: "+subj+"\n") || !strings.Contains(msgs[0], "\nDelivered-To: "+pat.Name+strings.TrimPrefix(subj, "procmail")+"@"+localDomain+"\n") {
			t.Errorf("%s: %q", box, msgs)
		}
		if uid, _ := owner(t, path); uid != pat.UID {
			t.Errorf("%s written by uid %d, want %d", box, uid, pat.UID)
		}
	}
}

// A virtual recipient whose uid is below virtual_minimum_uid is deferred
// with Postfix's generic 4.3.5 and a warning naming the table; no
// mailbox is written.
func TestAudit3VirtualMinimumUID(t *testing.T) {
	in := NewInstance(t, Options{NoStart: true})
	in.AppendMainCf(fmt.Sprintf("virtual_minimum_uid = %d", in.UID+1))
	in.Start()
	if _, err := send(t, in.Addr, "", []string{"user@itest.test"}, "Subject: low uid\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	if !in.WaitLog("to=<user@itest.test>, relay=virtual", 15*time.Second) {
		t.Fatalf("log:\n%s", in.Log())
	}
	if line := grepLines(in.Log(), "to=<user@itest.test>"); !strings.Contains(line, "dsn=4.3.5, status=deferred (mail system configuration error)") {
		t.Errorf("delivery: %s", line)
	}
	if !in.WaitLog(fmt.Sprintf("warning: recipient user@itest.test: bad uid %d in virtual_uid_maps", in.UID), 5*time.Second) {
		t.Errorf("no warning:\n%s", in.Log())
	}
	if _, err := os.Stat(filepath.Join(in.Mail, "itest.test", "user")); err == nil {
		t.Error("mailbox created for a uid below virtual_minimum_uid")
	}
}

// No directory of the queue may be written by everyone: local users reach
// maildrop/ only through the set-group-ID postdrop step (Postfix's
// postdrop), public/ only through its group.
func TestAudit3NoWorldWritableQueue(t *testing.T) {
	in := newSendmailInstance(t, Options{})
	if r := in.Sendmail("sendmail", "Subject: x\n\nx\n", nil, "user@itest.test"); r.Code != 0 {
		t.Fatalf("sendmail: exit %d: %s", r.Code, r.Stderr)
	}
	in.WaitMaildir("itest.test/user", 1, 15*time.Second)
	root := filepath.Join(in.Dir, "queue")
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() && fi.Mode().Perm()&0o002 != 0 {
			t.Errorf("%s is world-writable (%v)", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]os.FileMode{"maildrop": 0o730, "public": 0o710, "private": 0o700} {
		fi, err := os.Stat(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s/ mode %v, want %v", dir, fi.Mode().Perm(), want)
		}
	}
}

// A message whose last line has no newline is delivered with one, as
// Postfix's record-based queue file does.
func TestAudit3SendmailNoFinalNewline(t *testing.T) {
	in := newSendmailInstance(t, Options{})
	if r := in.Sendmail("sendmail", "Subject: partial\n\nfirst\nlast", nil, "-i", "user@itest.test"); r.Code != 0 {
		t.Fatalf("sendmail: exit %d: %s", r.Code, r.Stderr)
	}
	got := readFile(t, in.WaitMaildir("itest.test/user", 1, 15*time.Second)[0])
	if !strings.HasSuffix(got, "\n\nfirst\nlast\n") {
		t.Errorf("delivered %q", got)
	}
}

// mailbox_command's environment as Postfix's local/command.c sets it: the
// client attributes of an SMTP message and ENVID; EXTENSION and the
// client attributes absent when there are none (a sendmail submission to
// an address without extension).
func TestAudit3CommandEnvironment(t *testing.T) {
	needRoot(t)
	in := newSendmailInstance(t, Options{NoStart: true})
	ron := addUser(t, in.Dir, "r")
	out := filepath.Join(in.Dir, "out")
	os.Mkdir(out, 0o755)
	os.Chmod(out, 0o1777)
	envFile := filepath.Join(out, "env.txt")
	in.AppendMainCf(fmt.Sprintf("mydestination = %s\nalias_maps =\nrecipient_delimiter = +\nmailbox_command = (echo ---; env) >> %s\n", localDomain, envFile))
	in.Start()
	to := ron.Name + "@" + localDomain

	c, err := dialSMTP(in.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.itest.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("user@itest.test", &smtp.MailOptions{EnvelopeID: "env-42"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: env\r\n\r\nx\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if !in.WaitLog("to=<"+to+">, relay=local", 15*time.Second) {
		t.Fatalf("log:\n%s", in.Log())
	}
	if r := in.Sendmail("sendmail", "Subject: env2\n\ny\n", nil, "-f", "user@itest.test", to); r.Code != 0 {
		t.Fatalf("sendmail: exit %d: %s", r.Code, r.Stderr)
	}
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(in.Log(), "to=<"+to+">, relay=local") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	parts := strings.Split(readFile(t, envFile), "---\n")
	if len(parts) != 3 {
		t.Fatalf("env.txt: %q", parts)
	}
	has := func(env, line string) bool { return strings.Contains("\n"+env, "\n"+line+"\n") }
	smtpEnv, dropEnv := parts[1], parts[2]
	for _, want := range []string{"CLIENT_ADDRESS=127.0.0.1", "CLIENT_HELO=client.itest.test", "CLIENT_HOSTNAME=localhost",
		"CLIENT_PROTOCOL=ESMTP", "ENVID=env-42", "HOME=" + ron.Home, "USER=" + ron.Name, "LOGNAME=" + ron.Name,
		"SENDER=user@itest.test", "RECIPIENT=" + to, "LOCAL=" + ron.Name, "DOMAIN=" + localDomain, "SHELL=/bin/sh"} {
		if !has(smtpEnv, want) {
			t.Errorf("SMTP message: no %s in\n%s", want, smtpEnv)
		}
	}
	for _, env := range []string{smtpEnv, dropEnv} {
		if strings.Contains(env, "EXTENSION=") {
			t.Errorf("EXTENSION set without an extension:\n%s", env)
		}
	}
	if strings.Contains(dropEnv, "CLIENT_ADDRESS=") || strings.Contains(dropEnv, "ENVID=") || !has(dropEnv, "RECIPIENT="+to) {
		t.Errorf("sendmail message:\n%s", dropEnv)
	}
}

// Address classes at RCPT time (trivial-rewrite and smtpd): the local
// class from mydestination's default ($myhostname, localhost.$mydomain)
// and the inet_interfaces address, with local_recipient_maps; the virtual
// alias class; the relay class from relay_domains.
func TestAudit3RecipientClasses(t *testing.T) {
	in := NewInstance(t, Options{NoStart: true})
	in.write("valias", "a@alias.itest.test user@itest.test\n")
	in.AppendMainCf("mynetworks = 127.0.0.2/32\nmydestination = $myhostname, localhost.$mydomain, localhost\n" +
		"virtual_alias_domains = alias.itest.test\nvirtual_alias_maps = texthash:" + filepath.Join(in.Conf, "valias") +
		"\nrelay_domains = relay.example\nrecipient_delimiter = +\n")
	in.Start()
	c, err := dialSMTP(in.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.itest.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{"root@mta.itest.test", "root+ext@localhost.itest.test", "root@[127.0.0.1]", "root@localhost",
		"a@alias.itest.test", "anyone@relay.example"} {
		if err := c.Rcpt(ok, nil); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for rcpt, text := range map[string]string{
		"nosuchuser@localhost.itest.test": "Recipient address rejected: User unknown in local recipient table",
		"b@alias.itest.test":              "Recipient address rejected: User unknown in virtual alias table",
		"x@[192.0.2.1]":                   "Relay access denied",
	} {
		var se *smtp.SMTPError
		err := c.Rcpt(rcpt, nil)
		if !errors.As(err, &se) || se.Message != "<"+rcpt+">: "+text {
			t.Errorf("%s: %v, want %q", rcpt, err, text)
		}
	}
	c.Quit()
}

package sendmail

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
)

// testInstance writes a main.cf with its queue under a temp dir and
// creates the queue; extra lines are appended to main.cf.
func testInstance(t *testing.T, extra string) (confDir, qdir string) {
	t.Helper()
	dir := t.TempDir()
	confDir = filepath.Join(dir, "conf")
	qdir = filepath.Join(dir, "queue")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	mainCf := fmt.Sprintf("queue_directory = %s\nmyhostname = mta.test.example\nmyorigin = $myhostname\nalias_database = hash:%s/aliases\n%s\n", qdir, confDir, extra)
	if err := os.WriteFile(filepath.Join(confDir, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.NewStore(qdir).Ensure(os.Getuid(), os.Getgid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	return confDir, qdir
}

// runSendmail runs Run with stdin and returns the exit status, stdout and
// stderr.
func runSendmail(t *testing.T, argv0 string, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := Env{
		Argv0: argv0, Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr,
		UID:    os.Getuid(),
		Getenv: func(k string) string { return env[k] },
	}
	code := Run(e, args)
	return code, stdout.String(), stderr.String()
}

func onlyMessage(t *testing.T, qdir string) *queue.Message {
	t.Helper()
	store := queue.NewStore(qdir)
	ids, err := store.List(queue.Maildrop)
	if err != nil || len(ids) != 1 {
		t.Fatalf("maildrop holds %v (%v), want one message", ids, err)
	}
	m, err := store.Open(queue.Maildrop, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestRunExtract(t *testing.T) {
	conf, qdir := testInstance(t, "")
	msg := "From someone Mon Jan 1 00:00:00 2026\r\nTo: Joe <joe@example.org>, ann\r\nCc: team: bob@example.org;\r\nBcc: secret@example.org\r\nSubject: hi\r\n\r\nbody\r\n.\r\nmore\r\n"
	code, _, stderr := runSendmail(t, "sendmail", map[string]string{"NAME": "From Env"}, msg, "-C", conf, "-t", "-i", "-F", "Full Name", "-N", "failure", "-R", "hdrs", "extra@example.org")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m := onlyMessage(t, qdir)
	var got []string
	for _, r := range m.Envelope.Recipients {
		got = append(got, r.Addr+"/"+r.Notify)
	}
	want := "extra@example.org/FAILURE joe@example.org/FAILURE ann/FAILURE bob@example.org/FAILURE secret@example.org/FAILURE"
	if strings.Join(got, " ") != want {
		t.Errorf("recipients %q, want %q", got, want)
	}
	content, _ := io.ReadAll(m.Content())
	if want := "To: Joe <joe@example.org>, ann\nCc: team: bob@example.org;\nSubject: hi\n\nbody\n.\nmore\n"; string(content) != want {
		t.Errorf("content %q, want %q", content, want)
	}
	e := m.Envelope
	if e.Attrs[drop.AttrFullName] != "Full Name" || e.Attrs[drop.AttrUID] != fmt.Sprint(os.Getuid()) || e.DSNRet != "HDRS" {
		t.Errorf("envelope %+v", e)
	}
	if login := drop.LoginName(os.Getuid()); login != "" && e.Sender != login {
		t.Errorf("sender %q, want the login name %q", e.Sender, login)
	}
	if time.Since(e.Arrival) > time.Minute {
		t.Errorf("arrival %v", e.Arrival)
	}
}

func TestRunSenderAndDot(t *testing.T) {
	conf, qdir := testInstance(t, "")
	code, _, stderr := runSendmail(t, "sendmail", map[string]string{"NAME": "Env Name"}, "Subject: x\n\nline\n.\nnot read\n", "-C", conf, "-f", "Me <me@example.org>", "a@example.org, b@example.org")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m := onlyMessage(t, qdir)
	content, _ := io.ReadAll(m.Content())
	if string(content) != "Subject: x\n\nline\n" || m.Envelope.Sender != "me@example.org" || len(m.Envelope.Recipients) != 2 {
		t.Errorf("sender %q, %d recipients, content %q", m.Envelope.Sender, len(m.Envelope.Recipients), content)
	}
	if m.Envelope.Attrs[drop.AttrFullName] != "Env Name" {
		t.Errorf("full name %q, want $NAME", m.Envelope.Attrs[drop.AttrFullName])
	}
}

func TestRunNullSender(t *testing.T) {
	conf, qdir := testInstance(t, "")
	if code, _, stderr := runSendmail(t, "sendmail", nil, "x\n", "-C", conf, "-f", "<>", "a@example.org"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if s := onlyMessage(t, qdir).Envelope.Sender; s != "" {
		t.Errorf("sender %q, want the null sender", s)
	}
}

func TestRunExitCodes(t *testing.T) {
	login := drop.LoginName(os.Getuid())
	if login == "" {
		t.Skip("no login name for this uid")
	}
	tests := []struct {
		name  string
		extra string
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"no recipients", "", "x\n", nil, ExUsage, "Recipient addresses must be specified"},
		{"none in header", "", "Subject: x\n\n", []string{"-t"}, ExUsage, "No recipient addresses found in message header"},
		{"bad option", "", "", []string{"-n"}, ExUsage, "-n option not supported"},
		{"too big", "message_size_limit = 100", strings.Repeat("x", 200) + "\n", []string{"a@x"}, ExUnavailable, "message file too big"},
		{"header too long", "header_size_limit = 50", "To: " + strings.Repeat("a@x, ", 20) + "\n\n", []string{"-t"}, ExDataErr, "unable to extract recipients"},
		{"submit acl", "authorized_submit_users = !" + login + ", static:anyone", "x\n", []string{"a@x"}, ExNoPerm, "is not allowed to submit mail"},
		{"login sender", "local_login_sender_maps = inline:{ {" + login + " = me@example.org, @allowed.example} }", "x\n", []string{"-f", "other@example.org", "a@x"}, ExNoPerm, "not authorized to use sender='other@example.org'"},
		{"login sender ok", "local_login_sender_maps = inline:{ {" + login + " = me@example.org, @allowed.example} }", "x\n", []string{"-f", "any+ext@allowed.example", "a@x"}, 0, ""},
		{"login sender ext", "recipient_delimiter = +\nlocal_login_sender_maps = inline:{ {" + login + " = me@example.org} }", "x\n", []string{"-f", "me+list@example.org", "a@x"}, 0, ""},
		{"login sender null", "local_login_sender_maps = inline:{ {" + login + " = me@example.org} }", "x\n", []string{"-f", "<>", "a@x"}, ExNoPerm, "not authorized"},
		{"login sender own name", "local_login_sender_maps = inline:{ {" + login + " = " + login + "} }", "x\n", []string{"a@x"}, 0, ""},
		{"no entry", "local_login_sender_maps = inline:{ {someone-else = *} }", "x\n", []string{"a@x"}, ExNoPerm, "not authorized"},
	}
	for _, tt := range tests {
		conf, _ := testInstance(t, tt.extra)
		code, _, stderr := runSendmail(t, "sendmail", nil, tt.stdin, append([]string{"-C", conf}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tt.name, code, stderr, tt.code, tt.msg)
		}
	}
	code, _, stderr := runSendmail(t, "sendmail", nil, "x\n", "-C", t.TempDir(), "a@x")
	if code != ExTempFail {
		t.Errorf("missing main.cf: exit %d (%s), want %d", code, stderr, ExTempFail)
	}
}

func TestRunMailq(t *testing.T) {
	conf, _ := testInstance(t, "")
	if code, _, stderr := runSendmail(t, "sendmail", nil, "Subject: x\n\nbody\n", "-C", conf, "-f", "s@example.org", "r1@example.org", "r2@example.org"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, out, stderr := runSendmail(t, "mailq", nil, "", "-C", conf)
	if code != 0 {
		t.Fatalf("mailq exit %d: %s", code, stderr)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "----Queue ID-----") || !strings.HasSuffix(lines[1], " s@example.org") ||
		strings.TrimSpace(lines[2]) != "r1@example.org" || strings.TrimSpace(lines[3]) != "r2@example.org" || lines[5] != "-- 0 Kbytes in 1 Request." {
		t.Errorf("mailq output:\n%s", out)
	}
}

func TestRunSMTP(t *testing.T) {
	conf, qdir := testInstance(t, "")
	in := "EHLO client\r\nMAIL FROM:<s@example.org> BODY=8BITMIME\r\nRCPT TO:<r@example.org> NOTIFY=SUCCESS,FAILURE\r\nRCPT TO:<bad\r\nDATA\r\n" +
		"Subject: smtp\r\n\r\n..leading dot\r\nline\r\n.\r\nRSET\r\nRCPT TO:<x@y>\r\nNOOP\r\nVRFY x\r\nFOO\r\nQUIT\r\n"
	code, out, stderr := runSendmail(t, "sendmail", nil, in, "-C", conf, "-bs")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var codes []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if len(l) > 3 && l[3] == '-' {
			continue
		}
		codes = append(codes, l[:3])
	}
	if got := strings.Join(codes, " "); got != "220 250 250 250 501 354 250 250 503 250 252 502 221" {
		t.Errorf("reply codes %s\n%s", got, out)
	}
	m := onlyMessage(t, qdir)
	content, _ := io.ReadAll(m.Content())
	if string(content) != "Subject: smtp\n\n.leading dot\nline\n" || m.Envelope.Sender != "s@example.org" ||
		m.Envelope.BodyType != "8BITMIME" || m.Envelope.Recipients[0].Notify != "SUCCESS,FAILURE" {
		t.Errorf("queued %+v with %q", m.Envelope, content)
	}
}

func TestRunNewaliases(t *testing.T) {
	conf, _ := testInstance(t, "")
	os.WriteFile(filepath.Join(conf, "aliases"), []byte("postmaster: root\nroot: admin@example.org\n"), 0o644)
	if code, out, stderr := runSendmail(t, "newaliases", nil, "", "-C", conf); code != 0 || out != "" || stderr != "" {
		t.Errorf("good aliases: exit %d, %q %q", code, out, stderr)
	}
	os.WriteFile(filepath.Join(conf, "aliases"), []byte("postmaster root\n"), 0o644)
	if code, _, stderr := runSendmail(t, "sendmail", nil, "", "-C", conf, "-bi"); code != 1 || !strings.Contains(stderr, "aliases") {
		t.Errorf("bad aliases: exit %d, %q", code, stderr)
	}
}

func TestRunFlushDown(t *testing.T) {
	conf, _ := testInstance(t, "")
	if code, _, stderr := runSendmail(t, "sendmail", nil, "", "-C", conf, "-q"); code != ExUnavailable || !strings.Contains(stderr, "mail system is down") {
		t.Errorf("flush with no daemons: exit %d, %q", code, stderr)
	}
}

package itest

import (
	"bytes"
	"context"
	"net/mail"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// mailxProgram finds s-nail, Debian's mailx that needs no MTA package:
// "s-nail", else "mailx" when that is s-nail (bsd-mailx takes other
// options).
func mailxProgram(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("s-nail"); err == nil {
		return p
	}
	if p, err := exec.LookPath("mailx"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, _ := exec.CommandContext(ctx, p, "-V").CombinedOutput(); bytes.Contains(out, []byte("s-nail")) {
			return p
		}
	}
	t.Skip("s-nail not installed: apt-get install s-nail")
	return ""
}

// mailx (s-nail) as a user runs it: subject, To and Cc on the command
// line, the body on standard input, handed to Postern's sendmail as its
// MTA (s-nail runs "sendmail -i -- to cc"). Both recipients get the
// message in their virtual Maildirs with the headers mailx wrote and the
// body unchanged.
func TestMailx(t *testing.T) {
	mailx := mailxProgram(t)
	in := newSendmailInstance(t, Options{})
	body := "Hello from mailx.\n.\nA line with only a dot above; -i keeps it.\n\nLast line.\n"
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// -n: no system-wide s-nail.rc; MAILRC=/dev/null: no user one.
	cmd := exec.CommandContext(ctx, mailx, "-n", "-S", "mta="+binDir+"/sendmail", "-S", "sendwait",
		"-s", "mailx subject line", "-c", "other@itest.test", "user@itest.test")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "MAILRC=/dev/null", "LC_ALL=C", "MAIL_CONFIG=" + in.Conf}
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", mailx, err, out.String())
	}
	for _, c := range []struct{ box, rcpt string }{
		{"itest.test/user", "user@itest.test"},
		{"itest.test/other", "other@itest.test"},
	} {
		got := readFile(t, in.WaitMaildir(c.box, 1, 15*time.Second)[0])
		m, err := mail.ReadMessage(strings.NewReader(got))
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.box, err, got)
		}
		h := m.Header
		if h.Get("Subject") != "mailx subject line" || h.Get("To") != "user@itest.test" || h.Get("Cc") != "other@itest.test" ||
			h.Get("Delivered-To") != c.rcpt || !strings.HasPrefix(h.Get("User-Agent"), "s-nail") {
			t.Errorf("%s: headers %v", c.box, h)
		}
		if h.Get("Message-Id") == "" || h.Get("From") == "" || h.Get("Return-Path") == "" {
			t.Errorf("%s: no Message-Id, From or Return-Path added: %v", c.box, h)
		}
		b := new(bytes.Buffer)
		b.ReadFrom(m.Body)
		if b.String() != body {
			t.Errorf("%s: body\n%q\nwant\n%q", c.box, b.String(), body)
		}
	}
	if files := in.QueueFiles("maildrop"); len(files) != 0 {
		t.Errorf("maildrop/ not emptied: %v", files)
	}
}

package maillog

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2025, time.March, 7, 9, 5, 3, 0, time.Local)

// fileLogger returns a Logger writing to a file in a temp dir, and a
// function returning the lines written so far.
func fileLogger(t *testing.T, o Options) (*Logger, func() []string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	o.File = path
	o.FilePrefixes = []string{dir}
	if o.Hostname == "" {
		o.Hostname = "mx.example.org"
	}
	if o.Program == "" {
		o.Program = "smtpd"
	}
	if o.Now == nil {
		o.Now = func() time.Time { return testTime }
	}
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, func() []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.TrimSuffix(string(b), "\n")
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
}

// text strips the file-format prefix "Mar 07 09:05:03 mx postern/smtpd[pid]: ".
func text(t *testing.T, line string) string {
	t.Helper()
	prefix := fmt.Sprintf("Mar 07 09:05:03 mx postern/smtpd[%d]: ", os.Getpid())
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("line %q lacks prefix %q", line, prefix)
	}
	return strings.TrimPrefix(line, prefix)
}

var (
	unknown = Client{Addr: "192.0.2.7", Port: "41000"}
	named   = Client{Name: "mail.example.com", Addr: "2001:db8::25", Port: "25"}
)

// events logs one of every event and returns the exact texts expected.
func events(l *Logger) []string {
	l.Connect(unknown)
	l.Connect(named)
	l.ClientLine("4BzQ1c2XJhz9v", unknown, "", "")
	l.ClientLine("4BzQ1c2XJhz9v", named, "PLAIN", "alice")
	l.Reject("", "RCPT", unknown, "554 5.7.1 <x@example.net>: Relay access denied",
		"a@example.org", "x@example.net", "ESMTP", "spam.example")
	l.Reject("", "CONNECT", unknown, "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org", "", "", "SMTP", "")
	l.Reject("", "MAIL", unknown, "553 5.7.1 <>: Sender address rejected: go away", "", "", "ESMTP", "h")
	l.Action("4BzQ1c2XJhz9v", "hold", "END-OF-MESSAGE", named, "<a@example.org>: Sender address triage", "a@example.org", "b@example.org", "ESMTP", "mail.example.com")
	l.MessageID("4BzQ1c2XJhz9v", "<20250307090503.1@example.org>")
	l.Queued("4BzQ1c2XJhz9v", "a@example.org", 1234, 2)
	l.Queued("4BzQ1c2XJhz9w", "", 567, 1)
	l.Delivered("4BzQ1c2XJhz9v", Delivery{
		To: "bob@example.org", OrigTo: "postmaster@example.org", Relay: "local",
		Delay: 123 * time.Millisecond, Delays: [4]time.Duration{10 * time.Millisecond, 0, 0, 110 * time.Millisecond},
		DSN: "2.0.0", Status: "sent", Text: "delivered to maildir",
	})
	l.Delivered("4BzQ1c2XJhz9v", Delivery{
		To: "c@example.net", OrigTo: "C@Example.NET", Relay: "mx.example.net[198.51.100.2]:25", ConnUse: 3,
		Delay: 2140 * time.Millisecond, Delays: [4]time.Duration{90 * time.Millisecond, 0, 12 * time.Millisecond, 2 * time.Second},
		DSN: "2.0.0", Status: "sent", Text: "250 2.0.0 Ok: queued as 4C00",
	})
	l.Delivered("4BzQ1c2XJhz9w", Delivery{
		To: "d@example.com", Delay: 1125 * time.Second, Delays: [4]time.Duration{1125 * time.Second, 4 * time.Millisecond, 0, 0},
		DSN: "4.4.1", Status: "deferred", Text: "connect to mx.example.com[203.0.113.5]:25: Connection refused",
	})
	l.Removed("4BzQ1c2XJhz9v")
	l.Expired("4BzQ1c2XJhz9w", "a@example.org")
	l.BounceNotice("4BzQ1c2XJhz9w", "4BzQ1c2XJhzAA")
	l.DelayNotice("4BzQ1c2XJhz9w", "4BzQ1c2XJhzAB")
	l.Pickup("4BzQ1c2XJhzAC", 1000, "carol")
	l.Disconnect(unknown, []Count{{"ehlo", 1, 1}, {"mail", 1, 1}, {"rcpt", 0, 1}, {"data", 0, 0}, {"quit", 1, 1}})
	l.Disconnect(named, []Count{{"EHLO", 1, 1}, {"mail", 1, 1}, {"rcpt", 1, 1}, {"data", 1, 1}, {"quit", 1, 1}})
	l.Disconnect(unknown, nil)
	l.LostConnection("", unknown, "EHLO")
	l.LostConnection("4BzQ1c2XJhz9v", named, "DATA (4096 bytes)")
	l.Timeout("", unknown, "CONNECT")
	l.TooManyErrors("", unknown, "RCPT")
	l.Printf("daemon started -- version %s", "0.1")
	l.Warning("%s: malformed queue file moved to corrupt", "4BzQ1c2XJhz9w")
	l.Error("open database %s: %v", "/etc/postern/aliases", "no such file")
	l.Fatal("bind 0.0.0.0 port 25: Address already in use")
	l.Panic("qmgr_entry_done: bad state")
	l.Debug("not logged unless verbose")
	return []string{
		"connect from unknown[192.0.2.7]",
		"connect from mail.example.com[2001:db8::25]",
		"4BzQ1c2XJhz9v: client=unknown[192.0.2.7]",
		"4BzQ1c2XJhz9v: client=mail.example.com[2001:db8::25], sasl_method=PLAIN, sasl_username=alice",
		"NOQUEUE: reject: RCPT from unknown[192.0.2.7]: 554 5.7.1 <x@example.net>: Relay access denied; from=<a@example.org> to=<x@example.net> proto=ESMTP helo=<spam.example>",
		"NOQUEUE: reject: CONNECT from unknown[192.0.2.7]: 554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org; proto=SMTP",
		"NOQUEUE: reject: MAIL from unknown[192.0.2.7]: 553 5.7.1 <>: Sender address rejected: go away; from=<> proto=ESMTP helo=<h>",
		"4BzQ1c2XJhz9v: hold: END-OF-MESSAGE from mail.example.com[2001:db8::25]: <a@example.org>: Sender address triage; from=<a@example.org> to=<b@example.org> proto=ESMTP helo=<mail.example.com>",
		"4BzQ1c2XJhz9v: message-id=<20250307090503.1@example.org>",
		"4BzQ1c2XJhz9v: from=<a@example.org>, size=1234, nrcpt=2 (queue active)",
		"4BzQ1c2XJhz9w: from=<>, size=567, nrcpt=1 (queue active)",
		"4BzQ1c2XJhz9v: to=<bob@example.org>, orig_to=<postmaster@example.org>, relay=local, delay=0.12, delays=0.01/0/0/0.11, dsn=2.0.0, status=sent (delivered to maildir)",
		"4BzQ1c2XJhz9v: to=<c@example.net>, relay=mx.example.net[198.51.100.2]:25, conn_use=3, delay=2.1, delays=0.09/0/0.01/2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4C00)",
		"4BzQ1c2XJhz9w: to=<d@example.com>, relay=none, delay=1125, delays=1125/0/0/0, dsn=4.4.1, status=deferred (connect to mx.example.com[203.0.113.5]:25: Connection refused)",
		"4BzQ1c2XJhz9v: removed",
		"4BzQ1c2XJhz9w: from=<a@example.org>, status=expired, returned to sender",
		"4BzQ1c2XJhz9w: sender non-delivery notification: 4BzQ1c2XJhzAA",
		"4BzQ1c2XJhz9w: sender delay notification: 4BzQ1c2XJhzAB",
		"4BzQ1c2XJhzAC: uid=1000 from=<carol>",
		"disconnect from unknown[192.0.2.7] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4",
		"disconnect from mail.example.com[2001:db8::25] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
		"disconnect from unknown[192.0.2.7] commands=0/0",
		"NOQUEUE: lost connection after EHLO from unknown[192.0.2.7]",
		"4BzQ1c2XJhz9v: lost connection after DATA (4096 bytes) from mail.example.com[2001:db8::25]",
		"NOQUEUE: timeout after CONNECT from unknown[192.0.2.7]",
		"NOQUEUE: too many errors after RCPT from unknown[192.0.2.7]",
		"daemon started -- version 0.1",
		"warning: 4BzQ1c2XJhz9w: malformed queue file moved to corrupt",
		"error: open database /etc/postern/aliases: no such file",
		"fatal: bind 0.0.0.0 port 25: Address already in use",
		"panic: qmgr_entry_done: bad state",
	}
}

func TestEventGolden(t *testing.T) {
	l, lines := fileLogger(t, Options{})
	want := events(l)
	got := lines()
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if g := text(t, got[i]); g != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, g, want[i])
		}
	}
}

func TestFormatDelay(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{-5 * time.Second, "0"},
		{4 * ms, "0"},
		{5 * ms, "0.01"},
		{10 * ms, "0.01"},
		{50 * ms, "0.05"},
		{100 * ms, "0.1"},
		{123 * ms, "0.12"},
		{125 * ms, "0.13"},
		{994 * ms, "0.99"},
		{995 * ms, "1"},
		{time.Second, "1"},
		{1049 * ms, "1"},
		{1050 * ms, "1.1"},
		{2140 * ms, "2.1"},
		{9949 * ms, "9.9"},
		{9950 * ms, "10"},
		{10 * time.Second, "10"},
		{10499 * ms, "10"},
		{10500 * ms, "11"},
		{1125 * time.Second, "1125"},
		{100000 * time.Second, "100000"},
	}
	for _, c := range cases {
		if got := FormatDelay(c.d); got != c.want {
			t.Errorf("FormatDelay(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestPrintable(t *testing.T) {
	l, lines := fileLogger(t, Options{})
	l.Printf("a\nfake line\r\x00\x7f\xff ok ünïcødé \u0085end")
	long := strings.Repeat("é", MaxText) // 2 bytes each
	l.Printf("%s", long)
	got := lines()
	if len(got) != 2 {
		t.Fatalf("%d lines: %q", len(got), got)
	}
	if g := text(t, got[0]); g != "a?fake line???? ok ünïcødé ?end" {
		t.Errorf("sanitised text %q", g)
	}
	if g := text(t, got[1]); g != strings.Repeat("é", MaxText/2) {
		t.Errorf("long text cut to %d bytes, want %d", len(g), MaxText)
	}
}

func TestPortLoggingAndVerbose(t *testing.T) {
	l, lines := fileLogger(t, Options{ClientPortLogging: true, Verbose: true})
	l.Connect(unknown)
	l.Connect(Client{Addr: "192.0.2.8"})
	l.Debug("verbose %d", 1)
	got := lines()
	want := []string{"connect from unknown[192.0.2.7]:41000", "connect from unknown[192.0.2.8]", "verbose 1"}
	for i := range want {
		if i >= len(got) || text(t, got[i]) != want[i] {
			t.Fatalf("lines %q, want texts %q", got, want)
		}
	}
}

func TestFilePrefixes(t *testing.T) {
	dir := t.TempDir()
	_, err := New(Options{File: filepath.Join(dir, "x.log")})
	if err == nil || !strings.Contains(err.Error(), "maillog_file_prefixes") {
		t.Errorf("file outside default prefixes: %v", err)
	}
	_, err = New(Options{File: filepath.Join(dir, "x.log"), FilePrefixes: []string{}})
	if err == nil {
		t.Error("empty prefix list allowed a file")
	}
	l, err := New(Options{File: filepath.Join(dir, "x.log"), FilePrefixes: []string{"/var", dir}})
	if err != nil {
		t.Fatal(err)
	}
	l.Printf("x")
	l.Close()
	fi, err := os.Stat(filepath.Join(dir, "x.log"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("maillog_file mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := New(Options{File: filepath.Join(dir, "no/such/dir/x.log"), FilePrefixes: []string{dir}}); err == nil {
		t.Error("unopenable file accepted")
	}
	if _, err := New(Options{Facility: "nosuch"}); err == nil {
		t.Error("unknown facility accepted")
	}
}

func TestSlog(t *testing.T) {
	l, lines := fileLogger(t, Options{})
	s := l.Slog()
	s.Info("queue file corrupt", "id", "4BzQ1c2XJhz9v", "offset", 120)
	s.With("table", "hash:/etc/aliases").Warn("reload failed", slog.Group("err", "text", "bad line 3"))
	s.Error("", "a", "")
	s.Debug("hidden")
	s.WithGroup("dkim").Info("signed", "domain", "example.org")
	want := []string{
		"queue file corrupt: id=4BzQ1c2XJhz9v, offset=120",
		`warning: reload failed: table=hash:/etc/aliases, err.text="bad line 3"`,
		`error: a=""`,
		"signed: dkim.domain=example.org",
	}
	got := lines()
	if len(got) != len(want) {
		t.Fatalf("lines %q", got)
	}
	for i := range want {
		if g := text(t, got[i]); g != want[i] {
			t.Errorf("got %q, want %q", g, want[i])
		}
	}
}

// TestSyslog checks RFC 3164 framing on a unixgram socket standing in for
// /dev/log, and the reconnection after syslogd restarts.
func TestSyslog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	listen := func() *net.UnixConn {
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv := listen()
	defer func() { srv.Close() }()
	l, err := New(Options{SyslogPath: path, Program: "qmgr", Facility: "local3",
		Now: func() time.Time { return testTime }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	read := func() string {
		buf := make([]byte, 4096)
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := srv.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	pid := os.Getpid()
	l.Removed("4BzQ1c2XJhz9v")
	if got, want := read(), fmt.Sprintf("<158>Mar  7 09:05:03 postern/qmgr[%d]: 4BzQ1c2XJhz9v: removed", pid); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	l.Fatal("x")
	if got, want := read(), fmt.Sprintf("<154>Mar  7 09:05:03 postern/qmgr[%d]: fatal: x", pid); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// syslogd restarts: a new socket at the same path.
	srv.Close()
	os.Remove(path)
	srv = listen()
	l.Warning("w")
	if got, want := read(), fmt.Sprintf("<156>Mar  7 09:05:03 postern/qmgr[%d]: warning: w", pid); got != want {
		t.Errorf("after restart got %q\nwant %q", got, want)
	}
}

func TestCloseIdempotentWrites(t *testing.T) {
	l, lines := fileLogger(t, Options{})
	l.Printf("before")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Printf("after")
	if got := lines(); len(got) != 1 {
		t.Errorf("lines after Close: %q", got)
	}
	if err := l.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

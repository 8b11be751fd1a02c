package smtpd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/pkg/cleanup"
	"postern/pkg/config"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/server"
)

// testServer runs smtpd and a real cleanup in-process over a queue in a
// temporary directory and returns the SMTP address.
func testServer(t *testing.T, extra string) (addr string, qdir string, logf string) {
	t.Helper()
	dir := t.TempDir()
	qdir = filepath.Join(dir, "queue")
	for _, d := range []string{queue.Incoming, queue.Public, queue.Private} {
		os.MkdirAll(filepath.Join(qdir, d), 0700)
	}
	os.WriteFile(filepath.Join(dir, "vmailbox"), []byte("user@itest.test x/\n"), 0644)
	cfg, err := config.Parse(strings.NewReader(fmt.Sprintf(`queue_directory = %s
myhostname = mx.itest.test
inet_interfaces = 127.0.0.1
mynetworks = 127.0.0.0/8
mydestination =
virtual_mailbox_domains = itest.test
virtual_mailbox_maps = texthash:%s/vmailbox
smtpd_peername_lookup = no
%s`, qdir, dir, extra)), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	logf = filepath.Join(dir, "log")
	log, err := maillog.New(maillog.Options{Program: "smtpd", File: logf, FilePrefixes: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := cleanup.New(ctx, &server.Context{Config: cfg, Log: log, Go: func(f func(context.Context)) { go f(ctx) }})
	if err != nil {
		t.Fatal(err)
	}
	cln, err := net.Listen("unix", filepath.Join(qdir, queue.Public, "cleanup"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cln.Close() })
	go serve(ctx, cln, cl.(server.Handler))
	s, err := NewServer(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	go s.gs.Serve(s)
	t.Cleanup(func() { s.gs.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ctx, ln, s)
	return ln.Addr().String(), qdir, logf
}

func serve(ctx context.Context, l net.Listener, h server.Handler) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			h.Handle(ctx, c)
		}()
	}
}

// dialogue sends lines and returns the server's replies, one string per
// reply (multi-line replies joined with \n).
type dialogue struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *dialogue {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &dialogue{t: t, c: c, r: bufio.NewReader(c)}
}

func (d *dialogue) reply() string {
	d.t.Helper()
	var lines []string
	for {
		l, err := d.r.ReadString('\n')
		if err != nil {
			d.t.Fatalf("read reply: %v (so far %q)", err, lines)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

func (d *dialogue) send(s string) {
	d.t.Helper()
	if _, err := io.WriteString(d.c, s); err != nil {
		d.t.Fatal(err)
	}
}

func (d *dialogue) cmd(s, wantPrefix string) string {
	d.t.Helper()
	d.send(s + "\r\n")
	r := d.reply()
	if !strings.HasPrefix(r, wantPrefix) {
		d.t.Fatalf("%s: got %q, want %s...", s, r, wantPrefix)
	}
	return r
}

func queued(t *testing.T, qdir, reply string) string {
	t.Helper()
	id := strings.TrimPrefix(reply, "250 2.0.0 Ok: queued as ")
	m, err := queue.NewStore(qdir).Open(queue.Incoming, queue.ID(id))
	if err != nil {
		t.Fatalf("%s: %v", reply, err)
	}
	defer m.Close()
	b, _ := io.ReadAll(m.Content())
	return string(b)
}

func TestDialogue(t *testing.T) {
	addr, qdir, logf := testServer(t, "")
	d := dial(t, addr)
	if g := d.reply(); g != "220 mx.itest.test ESMTP Postern" {
		t.Errorf("greeting %q", g)
	}
	ehlo := d.cmd("EHLO client.example", "250-")
	for _, kw := range []string{"PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8"} {
		if !strings.Contains(ehlo, kw) {
			t.Errorf("EHLO lacks %s:\n%s", kw, ehlo)
		}
	}
	d.cmd("NOOP", "250 ")
	d.cmd("MAIL FROM:<a@example.org>", "250 ")
	d.cmd("RSET", "250 ")
	// Pipelined: MAIL, two RCPTs (one bad), DATA.
	d.send("MAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<user@itest.test> NOTIFY=FAILURE\r\nRCPT TO:<nobody@itest.test>\r\nDATA\r\n")
	for i, want := range []string{"250 ", "250 ", "550 5.1.1 <nobody@itest.test>", "354 "} {
		if r := d.reply(); !strings.HasPrefix(r, want) {
			t.Fatalf("pipelined reply %d: %q, want %s", i, r, want)
		}
	}
	// A bare LF before ".\r\n" must not end the data (SMTP smuggling); it
	// is kept as a line ending in the queue.
	d.send("Subject: t\r\n\r\nline\n.\r\nMAIL FROM:<evil@example.org>\r\n..dot\r\nend\r\n.\r\n")
	r := d.reply()
	if !strings.HasPrefix(r, "250 2.0.0 Ok: queued as ") {
		t.Fatalf("end of data: %q", r)
	}
	content := queued(t, qdir, r)
	if !strings.HasSuffix(content, "\n\nline\n.\nMAIL FROM:<evil@example.org>\n.dot\nend\n") || !strings.Contains(content, "\nSubject: t\n") {
		t.Errorf("content:\n%q", content)
	}
	if !strings.HasPrefix(content, "Received: from client.example (unknown [127.0.0.1])\n\tby mx.itest.test (Postern) with ESMTP id ") {
		t.Errorf("Received: %q", content)
	}
	d.cmd("QUIT", "221 ")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(logf)
		if strings.Contains(string(b), "disconnect from unknown[127.0.0.1] ehlo=1 mail=2 rcpt=1/2 data=1 rset=1 noop=1 quit=1 commands=8/9") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no disconnect line:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDataWithoutRecipients(t *testing.T) {
	addr, _, _ := testServer(t, "")
	d := dial(t, addr)
	d.reply()
	d.cmd("HELO client.example", "250 ")
	d.cmd("DATA", "5")
	d.cmd("MAIL FROM:<a@example.org>", "250 ")
	d.cmd("RCPT TO:<bad address@itest.test>", "5")
	d.cmd("RCPT TO:<x@elsewhere.example>", "250 ") // 127.0.0.1 is in mynetworks
}

func TestLostConnection(t *testing.T) {
	addr, _, logf := testServer(t, "")
	d := dial(t, addr)
	d.reply()
	d.cmd("EHLO client.example", "250")
	d.cmd("MAIL FROM:<a@example.org>", "250 ")
	d.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(logf)
		if strings.Contains(string(b), "lost connection after MAIL from unknown[127.0.0.1]") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lost connection line:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCopyNormalized(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\nb\r\n":  "a\nb\n",
		"a\nb\n":      "a\nb\n",
		"a\rb\r\n":    "a\rb\n",
		"a\r":         "a\r",
		"\r\n\r\n.\r": "\n\n.\r",
	} {
		var b strings.Builder
		if err := copyNormalized(&b, iotestOneByte(in)); err != nil || b.String() != want {
			t.Errorf("copyNormalized(%q) = %q, %v; want %q", in, b.String(), err, want)
		}
	}
}

func iotestOneByte(s string) io.Reader { return &oneByte{s: s} }

type oneByte struct{ s string }

func (r *oneByte) Read(p []byte) (int, error) {
	if len(r.s) == 0 {
		return 0, io.EOF
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func FuzzSessionConn(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a>\r\nDATA\r\n"), []byte("220 x\r\n250-x\r\n250 y\r\n250 ok\r\n354 go\r\n"))
	f.Fuzz(func(t *testing.T, in, out []byte) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		c := newSessionConn(a, "banner")
		c.feed(in)
		go io.Copy(io.Discard, b)
		c.Write(out)
		c.Write(out)
		c.stats()
		c.last()
	})
}

package smtpclient

// Test harness: an agent driven in-process through Handle by a
// deliver.Client, real queue files, fake MX hosts (go-smtp servers on
// 127.0.0.x, all on one port, as MX records carry no port) and an
// in-process DNS server.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postern/pkg/config"
	"postern/pkg/deliver"
	"postern/pkg/dnsresolve/dnstest"
	"postern/pkg/maillog"
	"postern/pkg/queue"
)

const testTimeout = 20 * time.Second

// testEnv is one agent with its queue, log and qmgr-side client.
type testEnv struct {
	dir    string
	store  *queue.Store
	agent  *Agent
	client *deliver.Client
	log    string
}

// newEnv starts an agent (program "smtp" or "lmtp") with main.cf lines
// extra.
func newEnv(t *testing.T, program, extra string) *testEnv {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, queue.Active), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(strings.NewReader("queue_directory = "+dir+"\nmyhostname = client.example.net\n"+
		"smtp_connect_timeout = 5s\nsmtp_helo_timeout = 10s\nsmtp_mail_timeout = 10s\nsmtp_rcpt_timeout = 10s\n"+
		"smtp_data_done_timeout = 10s\nsmtp_quit_timeout = 5s\n"+extra), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "maillog")
	log, err := maillog.New(maillog.Options{Program: program, File: logPath, FilePrefixes: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAgent(cfg, log, program, program, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				a.Handle(ctx, c)
			}()
		}
	}()
	cl, err := deliver.Dial(sock, program, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		cancel()
		ln.Close()
		a.Close()
		waitGroup(t, &wg)
		log.Close()
	})
	return &testEnv{dir: dir, store: queue.NewStore(dir), agent: a, client: cl, log: logPath}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Error("goroutines did not stop")
	}
}

// queue writes a message into active/ and returns its ID.
func (e *testEnv) queue(t *testing.T, env queue.Envelope, content string) queue.ID {
	t.Helper()
	w, err := e.store.Create(queue.Active)
	if err != nil {
		t.Fatal(err)
	}
	if len(env.Recipients) == 0 {
		env.Recipients = []queue.Recipient{{Addr: "rcpt@example.com"}}
	}
	for i := range env.Recipients {
		env.Recipients[i].Status = queue.Pending
	}
	if err := w.Envelope(&env); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, content); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

// send queues a message from sender to rcpts and delivers it to nexthop.
func (e *testEnv) send(t *testing.T, nexthop, sender string, rcpts ...string) []deliver.Result {
	t.Helper()
	env := queue.Envelope{Sender: sender}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r})
	}
	id := e.queue(t, env, "Subject: test\nMessage-ID: <"+sender+">\n\nHello.\n")
	return e.deliver(t, id, nexthop, sender, rcpts...)
}

func (e *testEnv) deliver(t *testing.T, id queue.ID, nexthop, sender string, rcpts ...string) []deliver.Result {
	t.Helper()
	now := time.Now()
	req := &deliver.Request{QueueID: string(id), Queue: queue.Active, Sender: sender, Nexthop: nexthop,
		Arrival: now.Add(-time.Second), Active: now}
	for i, r := range rcpts {
		req.Recipients = append(req.Recipients, deliver.Recipient{Index: i, Addr: r})
	}
	res, err := e.client.Deliver(req)
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(res) != len(rcpts) {
		t.Fatalf("got %d results for %d recipients", len(res), len(rcpts))
	}
	return res
}

// logText returns the log so far.
func (e *testEnv) logText(t *testing.T) string {
	b, err := os.ReadFile(e.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *testEnv) wantLog(t *testing.T, parts ...string) {
	t.Helper()
	text := e.logText(t)
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Errorf("log lacks %q:\n%s", p, text)
		}
	}
}

func wantResult(t *testing.T, r deliver.Result, st deliver.Status, dsn, text string) {
	t.Helper()
	if r.Status != st || r.DSN != dsn || !strings.Contains(r.Text, text) {
		t.Errorf("result %+v; want %s %s containing %q", r, st, dsn, text)
	}
}

// received is one message a fake server accepted.
type received struct {
	from  string
	mopts smtp.MailOptions
	rcpts []string
	ropts []smtp.RcptOptions
	data  []byte
	tls   bool
	user  string
}

// fakeMX is a go-smtp server that records what it receives.
type fakeMX struct {
	srv      *smtp.Server
	addr     string
	conns    atomic.Int32
	mu       sync.Mutex
	msgs     []received
	rcptErr  map[string]*smtp.SMTPError // by recipient
	mailErr  *smtp.SMTPError
	dataErr  *smtp.SMTPError
	lmtpErr  map[string]*smtp.SMTPError // per-recipient LMTP end-of-data replies
	authUser string                     // required login, "" = no AUTH
	authPass string
}

type fakeSession struct {
	mx   *fakeMX
	conn *smtp.Conn
	cur  received
	auth bool
}

func (s *fakeSession) Reset()        { s.cur = received{} }
func (s *fakeSession) Logout() error { return nil }
func (s *fakeSession) Mail(from string, o *smtp.MailOptions) error {
	if s.mx.authUser != "" && !s.auth {
		return smtp.ErrAuthRequired
	}
	if s.mx.mailErr != nil {
		return s.mx.mailErr
	}
	s.cur.from = from
	if o != nil {
		s.cur.mopts = *o
	}
	return nil
}
func (s *fakeSession) Rcpt(to string, o *smtp.RcptOptions) error {
	s.mx.mu.Lock()
	err := s.mx.rcptErr[to]
	s.mx.mu.Unlock()
	if err != nil {
		return err
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	if o != nil {
		s.cur.ropts = append(s.cur.ropts, *o)
	}
	return nil
}
func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.mx.dataErr != nil {
		return s.mx.dataErr
	}
	s.record(b)
	return nil
}
func (s *fakeSession) record(b []byte) {
	s.cur.data = b
	_, s.cur.tls = s.conn.TLSConnectionState()
	s.mx.mu.Lock()
	s.mx.msgs = append(s.mx.msgs, s.cur)
	s.mx.mu.Unlock()
}
func (s *fakeSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.record(b)
	for _, rc := range s.cur.rcpts {
		if e := s.mx.lmtpErr[rc]; e != nil {
			st.SetStatus(rc, e)
		} else {
			st.SetStatus(rc, nil)
		}
	}
	return nil
}
func (s *fakeSession) AuthMechanisms() []string {
	if s.mx.authUser == "" {
		return nil
	}
	return []string{sasl.Plain}
}
func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.mx.authUser || pass != s.mx.authPass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed"}
		}
		s.auth = true
		s.cur.user = user
		return nil
	}), nil
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// fakeOptions configure a fake server.
type fakeOptions struct {
	lmtp     bool
	tls      *tls.Config // offers STARTTLS
	implicit bool        // TLS from the first byte (wrapper mode)
	dsn      bool
	utf8     bool
	maxSize  int64
}

// startFake serves a fake MX on ln.
func startFake(t *testing.T, ln net.Listener, o fakeOptions) *fakeMX {
	mx := &fakeMX{rcptErr: map[string]*smtp.SMTPError{}, lmtpErr: map[string]*smtp.SMTPError{}}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &fakeSession{mx: mx, conn: c}, nil
	})
	s := smtp.NewServer(be)
	s.Domain = "fake.example"
	s.LMTP = o.lmtp
	s.EnableDSN = o.dsn
	s.EnableSMTPUTF8 = o.utf8
	s.MaxMessageBytes = o.maxSize
	s.AllowInsecureAuth = true
	s.ReadTimeout = testTimeout
	s.WriteTimeout = testTimeout
	if o.tls != nil && !o.implicit {
		s.TLSConfig = o.tls
	}
	mx.srv = s
	mx.addr = ln.Addr().String()
	var l net.Listener = countingListener{ln, &mx.conns}
	if o.implicit {
		l = tls.NewListener(l, o.tls)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() {
		s.Close()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Error("fake server did not stop")
		}
	})
	return mx
}

func (mx *fakeMX) messages() []received {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return append([]received(nil), mx.msgs...)
}

// loopbackPort finds a port free on 127.0.0.1 .. 127.0.0.n and returns
// listeners on the first `live` of those addresses (the rest stay free,
// so connecting there is refused).
func loopbackPort(t *testing.T, n int, live ...int) (port int, lns map[int]net.Listener) {
	t.Helper()
	for try := 0; try < 20; try++ {
		l0, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l0.Addr().(*net.TCPAddr).Port
		lns = map[int]net.Listener{}
		ok := true
		for _, i := range live {
			if i == 1 {
				lns[1] = l0
				continue
			}
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, port))
			if err != nil {
				ok = false
				break
			}
			lns[i] = l
		}
		if _, used := lns[1]; !used {
			l0.Close()
		}
		// The dead addresses must really be free.
		for i := 2; i <= n && ok; i++ {
			if lns[i] != nil {
				continue
			}
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, port))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			for _, l := range lns {
				t.Cleanup(func() { l.Close() })
			}
			return port, lns
		}
		for _, l := range lns {
			l.Close()
		}
	}
	t.Fatal("no free loopback port")
	return 0, nil
}

// testPKI is a CA and a server certificate for names.
type testPKI struct {
	caFile string
	server *tls.Config
}

func newPKI(t *testing.T, dir string, names ...string) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Postern Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "ca-*.pem")
	if err != nil {
		t.Fatal(err)
	}
	pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	f.Close()
	return &testPKI{caFile: f.Name(), server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}
}

// scripted is a hand-written SMTP server for what go-smtp cannot do: no
// 8BITMIME, no PIPELINING, exact bytes of DATA.
type scripted struct {
	ln    net.Listener
	caps  []string
	mu    sync.Mutex
	data  [][]byte
	cmds  []string
	conns int
}

func startScripted(t *testing.T, ln net.Listener, caps ...string) *scripted {
	s := &scripted{ln: ln, caps: caps}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); waitGroup(t, &wg) })
	return s
}

func (s *scripted) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "220 scripted ESMTP\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.cmds = append(s.cmds, line)
		s.mu.Unlock()
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			out := "250-scripted"
			for _, cp := range s.caps {
				out += "\r\n250-" + cp
			}
			out += "\r\n250 HELP\r\n"
			io.WriteString(c, out)
		case "DATA":
			io.WriteString(c, "354 go ahead\r\n")
			var buf []byte
			for {
				l, err := br.ReadBytes('\n')
				if err != nil {
					return
				}
				buf = append(buf, l...)
				if string(l) == ".\r\n" {
					break
				}
			}
			s.mu.Lock()
			s.data = append(s.data, buf)
			s.mu.Unlock()
			io.WriteString(c, "250 2.0.0 Ok: queued as SCRIPT1\r\n")
		case "QUIT":
			io.WriteString(c, "221 2.0.0 Bye\r\n")
			return
		default:
			io.WriteString(c, "250 2.0.0 Ok\r\n")
		}
	}
}

// dnsFor starts a DNS server with records and returns the main.cf line
// that points the agent at it.
func dnsFor(t *testing.T, records ...string) (string, *dnstest.Server) {
	srv := dnstest.New(t, records...)
	return "dns_resolver_address = " + srv.Addr + "\n", srv
}

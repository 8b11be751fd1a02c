package smtpd

// The thin layer between go-smtp and the client connection. go-smtp owns
// the SMTP dialogue; this layer watches the bytes both ways so that
// Postern can do what go-smtp has no hook for and Postfix users rely on:
// the smtpd_banner greeting, and per-command counts for the
// "disconnect from ... ehlo=1 mail=1 rcpt=0/1 ... commands=3/4" log line
// (read by fail2ban, pflogsumm and postfix_exporter). It never changes a
// byte the client sends.

import (
	"bytes"
	"net"
	"strconv"
	"sync"

	"postern/pkg/maillog"
)

// Command names in the order Postfix logs them.
var countOrder = []string{"ehlo", "helo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown"}

var knownVerbs = func() map[string]bool {
	m := map[string]bool{}
	for _, v := range countOrder[:len(countOrder)-1] {
		m[v] = true
	}
	return m
}()

type count struct{ ok, total int }

type sessionConn struct {
	net.Conn
	banner  string
	session *session
	closed  chan struct{}
	once    sync.Once

	mu       sync.Mutex
	greeted  bool
	in       []byte // current input line (bounded)
	out      []byte // current output line (bounded)
	dataMode bool
	bdatLeft int64
	prevCR   bool
	pending  []string
	counts   map[string]*count
	lastCmd  string
	heloArg  string
	heloName string
	isEhlo   bool
	held     []byte // lines of a multi-line reply not yet written
}

const maxTrackedLine = 1024

func newSessionConn(c net.Conn, banner string) *sessionConn {
	return &sessionConn{Conn: c, banner: banner, closed: make(chan struct{}), counts: map[string]*count{}}
}

func (c *sessionConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

func (c *sessionConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.feed(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

func (c *sessionConn) feed(p []byte) {
	for len(p) > 0 {
		if c.bdatLeft > 0 {
			k := int64(len(p))
			if k > c.bdatLeft {
				k = c.bdatLeft
			}
			c.bdatLeft -= k
			p = p[k:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.appendIn(p)
			return
		}
		c.appendIn(p[:i])
		p = p[i+1:]
		c.endInputLine()
	}
}

func (c *sessionConn) appendIn(p []byte) {
	if room := maxTrackedLine - len(c.in); room > 0 {
		if len(p) > room {
			p = p[:room]
		}
		c.in = append(c.in, p...)
	}
}

func (c *sessionConn) endInputLine() {
	line := c.in
	c.in = c.in[:0]
	cr := len(line) > 0 && line[len(line)-1] == '\r'
	if cr {
		line = line[:len(line)-1]
	}
	if c.dataMode {
		// End of data is "." alone on a line after a CRLF-ended line, the
		// only form go-smtp accepts.
		if cr && c.prevCR && len(line) == 1 && line[0] == '.' {
			c.dataMode = false
		}
		c.prevCR = cr
		return
	}
	verb, arg, _ := bytes.Cut(bytes.TrimLeft(line, " "), []byte(" "))
	v := string(bytes.ToLower(verb))
	if !knownVerbs[v] {
		v = "unknown"
	}
	c.count(v).total++
	c.pending = append(c.pending, v)
	c.lastCmd = v
	switch v {
	case "ehlo", "helo":
		c.heloArg = string(bytes.TrimSpace(arg))
	case "bdat":
		fields := bytes.Fields(arg)
		if len(fields) > 0 {
			if n, err := strconv.ParseInt(string(fields[0]), 10, 64); err == nil && n > 0 {
				c.bdatLeft = n
			}
		}
	}
}

func (c *sessionConn) count(v string) *count {
	ct := c.counts[v]
	if ct == nil {
		ct = &count{}
		c.counts[v] = ct
	}
	return ct
}

func (c *sessionConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.greeted {
		c.greeted = true
		c.mu.Unlock()
		if bytes.HasPrefix(p, []byte("220 ")) && bytes.HasSuffix(p, []byte("\r\n")) {
			if _, err := c.Conn.Write([]byte("220 " + c.banner + "\r\n")); err != nil {
				return 0, err
			}
			return len(p), nil
		}
		return c.Conn.Write(p)
	}
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if room := maxTrackedLine - len(c.out); room > 0 {
				c.out = append(c.out, rest[:min(room, len(rest))]...)
			}
			break
		}
		if room := maxTrackedLine - len(c.out); room > 0 {
			c.out = append(c.out, rest[:min(room, i)]...)
		}
		rest = rest[i+1:]
		c.endOutputLine()
	}
	// go-smtp writes a multi-line reply (EHLO) one line per Write: hold
	// the "250-" lines and send the reply in one segment with its last
	// line, saving the client a wake-up per line.
	if len(p) >= 6 && p[3] == '-' && p[len(p)-1] == '\n' && len(c.held)+len(p) <= maxTrackedLine*4 {
		c.held = append(c.held, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	if len(c.held) > 0 {
		out := append(c.held, p...)
		c.held = c.held[:0]
		c.mu.Unlock()
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *sessionConn) endOutputLine() {
	line := c.out
	c.out = c.out[:0]
	if len(line) < 4 || line[3] != ' ' {
		return // continuation line of a multi-line reply
	}
	code, err := strconv.Atoi(string(line[:3]))
	if err != nil || len(c.pending) == 0 {
		return
	}
	if code == 354 {
		c.dataMode = true
		c.prevCR = true
		return
	}
	v := c.pending[0]
	c.pending = c.pending[1:]
	if code < 400 {
		c.count(v).ok++
		if v == "ehlo" || v == "helo" {
			c.heloName = c.heloArg
			c.isEhlo = v == "ehlo"
		}
	}
}

// helo is the name the client gave in its last accepted HELO/EHLO.
func (c *sessionConn) helo() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heloName
}

func (c *sessionConn) ehlo() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.isEhlo
}

// stats returns the counts in Postfix's order.
func (c *sessionConn) stats() []maillog.Count {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []maillog.Count
	for _, v := range countOrder {
		if ct := c.counts[v]; ct != nil {
			out = append(out, maillog.Count{Name: v, OK: ct.ok, Total: ct.total})
		}
	}
	return out
}

// quit reports whether the client ended the session with an accepted QUIT.
func (c *sessionConn) quit() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct := c.counts["quit"]
	return ct != nil && ct.ok > 0
}

// last is the last command the client sent, for "lost connection after X".
func (c *sessionConn) last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dataMode {
		return "DATA"
	}
	if c.lastCmd == "" {
		return "CONNECT"
	}
	return string(bytes.ToUpper([]byte(c.lastCmd)))
}

package sendmail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
)

// smtpSession is "sendmail -bs": an SMTP dialogue on standard input and
// output, as Postfix's stand-alone smtpd. Each accepted message goes into
// maildrop/ by the same path as "sendmail -bm" (directly or through
// postdrop), so the session works while the daemons are down, and the
// MAIL FROM address is subject to local_login_sender_maps for the user
// running it. There is no AUTH, STARTTLS or BDAT: the peer is a local
// process that already runs as the user.
type smtpSession struct {
	r      *run
	login  string
	in     *bufio.Reader
	out    *bufio.Writer
	host   string
	limit  int64
	maxRcp int

	mail  bool
	sub   *drop.Submission
	rcpts []queue.Recipient
}

// maxSMTPLine bounds one command line (RFC 5321 §4.5.3.1.4 says 512;
// extensions make it longer).
const maxSMTPLine = 4096

func (r *run) smtp() error {
	login, _ := r.account()
	if err := drop.CheckSubmit(r.cfg, r.UID); err != nil {
		return refusalError(r.who(login), err)
	}
	s := &smtpSession{
		r: r, login: login,
		in:     bufio.NewReaderSize(r.Stdin, 64<<10),
		out:    bufio.NewWriter(r.Stdout),
		host:   r.cfg.Get("myhostname"),
		limit:  r.cfg.Size("message_size_limit"),
		maxRcp: r.cfg.Int("smtpd_recipient_limit"),
	}
	return s.serve()
}

func (s *smtpSession) reply(format string, args ...any) {
	fmt.Fprintf(s.out, format+"\r\n", args...)
}

// readLine reads one line without its CR LF; an over-long line is read
// to its end and reported as too long.
func (s *smtpSession) readLine() (string, bool, error) {
	var buf []byte
	long := false
	for {
		piece, err := s.in.ReadSlice('\n')
		if len(buf)+len(piece) <= maxSMTPLine {
			buf = append(buf, piece...)
		} else {
			long = true
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && (err != io.EOF || len(buf) == 0) {
			return "", false, err
		}
		return strings.TrimRight(string(buf), "\r\n"), long, nil
	}
}

func (s *smtpSession) serve() error {
	s.reply("220 %s", s.r.cfg.Get("smtpd_banner"))
	for {
		if s.in.Buffered() == 0 {
			// Answer a pipelined batch at once (RFC 2920), and the
			// rest before waiting for more input.
			s.out.Flush()
		}
		line, long, err := s.readLine()
		if err != nil {
			s.out.Flush()
			return nil
		}
		if long {
			s.reply("500 5.5.2 Error: line too long")
			continue
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "HELO":
			if arg == "" {
				s.reply("501 Syntax: HELO hostname")
				continue
			}
			s.reset()
			s.reply("250 %s", s.host)
		case "EHLO":
			if arg == "" {
				s.reply("501 Syntax: EHLO hostname")
				continue
			}
			s.reset()
			s.reply("250-%s", s.host)
			s.reply("250-PIPELINING")
			if s.limit > 0 {
				s.reply("250-SIZE %d", s.limit)
			} else {
				s.reply("250-SIZE")
			}
			s.reply("250-ENHANCEDSTATUSCODES")
			s.reply("250-8BITMIME")
			if s.r.cfg.Bool("smtputf8_enable") {
				s.reply("250-DSN")
				s.reply("250 SMTPUTF8")
			} else {
				s.reply("250 DSN")
			}
		case "MAIL":
			s.cmdMail(arg)
		case "RCPT":
			s.cmdRcpt(arg)
		case "DATA":
			if err := s.cmdData(arg); err != nil {
				s.out.Flush()
				return nil
			}
		case "RSET":
			s.reset()
			s.reply("250 2.0.0 Ok")
		case "NOOP":
			s.reply("250 2.0.0 Ok")
		case "VRFY":
			if arg == "" {
				s.reply("501 5.5.4 Syntax: VRFY address")
			} else {
				s.reply("252 2.0.0 %s", arg)
			}
		case "QUIT":
			s.reply("221 2.0.0 Bye")
			s.out.Flush()
			return nil
		default:
			s.reply("502 5.5.2 Error: command not recognized")
		}
	}
}

func (s *smtpSession) reset() {
	s.mail, s.sub, s.rcpts = false, nil, nil
}

// pathArg parses "FROM:<addr> params" or "TO:<addr> params".
func pathArg(arg, prefix string) (addr string, params []string, ok bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", nil, false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	var path string
	if strings.HasPrefix(rest, "<") {
		end := strings.IndexByte(rest, '>')
		if end < 0 {
			return "", nil, false
		}
		path, rest = rest[1:end], rest[end+1:]
	} else {
		path, rest, _ = strings.Cut(rest, " ")
	}
	if path != "" {
		addrs := Addresses("<" + path + ">")
		if len(addrs) != 1 {
			return "", nil, false
		}
		path = addrs[0]
	}
	return path, strings.Fields(rest), true
}

func (s *smtpSession) cmdMail(arg string) {
	if s.mail {
		s.reply("503 5.5.1 Error: nested MAIL command")
		return
	}
	addr, params, ok := pathArg(arg, "FROM:")
	if !ok {
		s.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
		return
	}
	sub := &drop.Submission{Sender: addr}
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToUpper(k) {
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				s.reply("501 5.5.4 Bad message size syntax")
				return
			}
			if s.limit > 0 && n > s.limit {
				s.reply("552 5.3.4 Message size exceeds fixed limit")
				return
			}
		case "BODY":
			switch strings.ToUpper(v) {
			case "7BIT", "8BITMIME":
				sub.BodyType = strings.ToUpper(v)
			default:
				s.reply("501 5.5.4 Unsupported BODY parameter value")
				return
			}
		case "RET":
			switch strings.ToUpper(v) {
			case "FULL", "HDRS":
				sub.DSNRet = strings.ToUpper(v)
			default:
				s.reply("501 5.5.4 Bad RET parameter syntax")
				return
			}
		case "ENVID":
			if v == "" || len(v) > 100 || !printableTab(v) {
				s.reply("501 5.5.4 Bad ENVID parameter syntax")
				return
			}
			sub.DSNEnvID = v
		case "SMTPUTF8":
			sub.SMTPUTF8 = true
		default:
			s.reply("555 5.5.4 Unsupported option: %s", p)
			return
		}
	}
	if err := drop.CheckSender(s.r.cfg, s.r.UID, addr); err != nil {
		var rf *drop.Refusal
		if errors.As(err, &rf) && rf.Status == drop.StatusNoPerm {
			s.reply("553 5.7.1 <%s>: Sender address rejected: not owned by user %s", addr, s.login)
		} else {
			s.reply("451 4.3.0 <%s>: Temporary lookup failure", addr)
		}
		return
	}
	sub.Remote = s.r.opts.Remote
	s.mail, s.sub = true, sub
	s.reply("250 2.1.0 Ok")
}

func (s *smtpSession) cmdRcpt(arg string) {
	if !s.mail {
		s.reply("503 5.5.1 Error: need MAIL command")
		return
	}
	addr, params, ok := pathArg(arg, "TO:")
	if !ok || addr == "" {
		s.reply("501 5.1.3 Bad recipient address syntax")
		return
	}
	rc := queue.Recipient{Addr: addr}
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToUpper(k) {
		case "NOTIFY":
			n, ok := parseNotify(v)
			if !ok {
				s.reply("501 5.5.4 Error: Bad NOTIFY parameter syntax")
				return
			}
			rc.Notify = n
		case "ORCPT":
			if v == "" || len(v) > 500 {
				s.reply("501 5.5.4 Error: Bad ORCPT parameter syntax")
				return
			}
			rc.ORcpt = v
		default:
			s.reply("555 5.5.4 Unsupported option: %s", p)
			return
		}
	}
	if s.maxRcp > 0 && len(s.rcpts) >= s.maxRcp {
		s.reply("452 4.5.3 Error: too many recipients")
		return
	}
	s.rcpts = append(s.rcpts, rc)
	s.reply("250 2.1.5 Ok")
}

// cmdData reads the message and queues it. It returns an error only when
// the input ended in the middle of the message.
func (s *smtpSession) cmdData(arg string) error {
	if arg != "" {
		s.reply("501 5.5.4 Syntax: DATA")
		return nil
	}
	if !s.mail {
		s.reply("503 5.5.1 Error: need RCPT command")
		return nil
	}
	if len(s.rcpts) == 0 {
		s.reply("554 5.5.1 Error: no valid recipients")
		return nil
	}
	s.sub.Recipients = s.rcpts
	sink, err := s.r.openSink(s.sub)
	if err != nil {
		// Read nothing: the client waits for 354 and gets this instead.
		s.replyRefusal(err)
		s.reset()
		return nil
	}
	defer sink.Abort()
	s.reply("354 End data with <CR><LF>.<CR><LF>")
	s.out.Flush()
	bw := bufio.NewWriterSize(sink, 64<<10)
	var werr error
	midLine := false
	for {
		piece, err := s.in.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !full {
			return err // EOF inside DATA: nothing is queued
		}
		startOfLine := !midLine
		midLine = full
		if !full {
			line := bytes.TrimRight(piece, "\r\n")
			if startOfLine && len(line) == 1 && line[0] == '.' {
				break
			}
			if startOfLine && len(line) > 0 && line[0] == '.' {
				line = line[1:] // RFC 5321 §4.5.2 transparency
			}
			piece = append(line, '\n')
		} else if startOfLine && piece[0] == '.' {
			piece = piece[1:]
		}
		if werr == nil {
			_, werr = bw.Write(piece)
		}
	}
	if werr == nil {
		werr = bw.Flush()
	}
	s.reset()
	if werr != nil {
		s.replyRefusal(werr)
		return nil
	}
	id, err := sink.Commit()
	if err != nil {
		s.replyRefusal(err)
		return nil
	}
	s.reply("250 2.0.0 Ok: queued as %s", id)
	return nil
}

func (s *smtpSession) replyRefusal(err error) {
	var rf *drop.Refusal
	if !errors.As(err, &rf) {
		rf = &drop.Refusal{Status: drop.StatusTemp, Text: err.Error()}
	}
	fmt.Fprintf(s.r.Stderr, "%s: warning: %s: %s\n", s.r.prog, s.r.who(s.login), rf.Text)
	switch rf.Status {
	case drop.StatusSize:
		s.reply("552 5.3.4 Error: message file too big")
	case drop.StatusNoPerm:
		s.reply("554 5.7.1 Error: %s", rf.Text)
	case drop.StatusBad:
		s.reply("554 5.3.0 Error: %s", rf.Text)
	default:
		s.reply("451 4.3.0 Error: queue file write error")
	}
}

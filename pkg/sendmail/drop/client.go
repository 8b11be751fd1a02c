package drop

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"postern/pkg/ipc"
	"postern/pkg/queue"
)

// pipeConn turns a read pipe and a write pipe into the net.Conn pkg/ipc
// runs over: postdrop's standard input and output, or sendmail's ends of
// them.
type pipeConn struct {
	r, w *os.File
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeConn) Close() error {
	err1 := p.r.Close()
	err2 := p.w.Close()
	return errors.Join(err1, err2)
}
func (p *pipeConn) LocalAddr() net.Addr  { return pipeAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr { return pipeAddr{} }
func (p *pipeConn) SetDeadline(t time.Time) error {
	return errors.Join(p.r.SetDeadline(t), p.w.SetDeadline(t))
}
func (p *pipeConn) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "postdrop" }

// Postdrop starts the postdrop program at path (with -c confDir when not
// empty) and sends it the envelope. Its standard error is the caller's,
// so its own diagnostics reach the user.
func Postdrop(path, confDir string, verbose bool, s *Submission) (Sink, error) {
	toChildR, toChildW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	fromChildR, fromChildW, err := os.Pipe()
	if err != nil {
		toChildR.Close()
		toChildW.Close()
		return nil, err
	}
	args := []string{}
	if confDir != "" {
		args = append(args, "-c", confDir)
	}
	if verbose {
		args = append(args, "-v")
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = toChildR, fromChildW, os.Stderr
	if err := cmd.Start(); err != nil {
		toChildR.Close()
		toChildW.Close()
		fromChildR.Close()
		fromChildW.Close()
		return nil, &Refusal{Status: "exec", Text: fmt.Sprintf("unable to execute %s: %v", path, err)}
	}
	toChildR.Close()
	fromChildW.Close()
	c := ipc.NewConn(&pipeConn{r: fromChildR, w: toChildW}, ipcOptions())
	p := &postdropSink{cmd: cmd, c: c, buf: make([]byte, 0, chunkSize)}
	if err := p.open(s); err != nil {
		p.Abort()
		return nil, err
	}
	return p, nil
}

type postdropSink struct {
	cmd    *exec.Cmd
	c      *ipc.Conn
	id     string
	buf    []byte
	err    error
	closed bool
}

func (p *postdropSink) open(s *Submission) error {
	hello, err := p.c.Read()
	if err != nil {
		return p.lost(err)
	}
	if hello.Str(ipc.HelloProtocol) != ipc.Protocol || hello.Str(ipc.HelloService) != Service || hello.Str(ipc.HelloVersion) != ipc.Version {
		return &Refusal{Status: StatusBad, Text: "postdrop: unexpected hello"}
	}
	var a ipc.Attrs
	a.Add(attrReq, "open")
	a.Add(attrSender, s.Sender)
	a.Add(attrName, s.FullName)
	if s.Remote {
		a.Add(attrContext, "remote")
	}
	a.Add(attrBody, s.BodyType)
	a.Add(attrRet, s.DSNRet)
	a.Add(attrEnvID, s.DSNEnvID)
	a.AddBool(attrUTF8, s.SMTPUTF8)
	if s.Trace {
		a.Add(attrTrace, "1")
	}
	if err := p.c.Send(a); err != nil {
		return p.lost(err)
	}
	for _, r := range s.Recipients {
		if err := p.c.Send(ipc.Attrs{{Name: attrReq, Value: "rcpt"}, {Name: attrAddr, Value: r.Addr}, {Name: attrNotify, Value: r.Notify}}); err != nil {
			return p.lost(err)
		}
	}
	if err := p.c.Write(ipc.Attrs{{Name: attrReq, Value: "start"}}); err != nil {
		return p.lost(err)
	}
	r, err := p.c.Read()
	if err != nil {
		return p.lost(err)
	}
	if _, ok := r.Get(attrStatus); ok {
		if err := refusalFrom(r); err != nil {
			return err
		}
		return &Refusal{Status: StatusBad, Text: "postdrop: unexpected reply"}
	}
	p.id = r.Str(attrQueueID)
	return nil
}

// lost reports a broken conversation: postdrop exited (its stderr said
// why) or the pipe failed.
func (p *postdropSink) lost(err error) error {
	if p.err != nil {
		return p.err
	}
	text := fmt.Sprintf("postdrop: %v", err)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE) {
		// postdrop is gone; its own message is on stderr already.
		p.closed = true
		p.c.Close()
		if werr := p.cmd.Wait(); werr != nil {
			text = fmt.Sprintf("unable to submit the message: %s %v", p.cmd.Path, werr)
		} else {
			text = fmt.Sprintf("unable to submit the message: %s ended early", p.cmd.Path)
		}
	}
	p.err = &Refusal{Status: StatusTemp, Text: text}
	return p.err
}

func (p *postdropSink) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n := len(b)
	for len(b) > 0 {
		k := min(chunkSize-len(p.buf), len(b))
		p.buf = append(p.buf, b[:k]...)
		b = b[k:]
		if len(p.buf) == chunkSize {
			if err := p.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (p *postdropSink) flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	err := p.c.Send(ipc.Attrs{{Name: attrReq, Value: "data"}, {Name: attrData, Value: string(p.buf)}})
	p.buf = p.buf[:0]
	if err != nil {
		return p.lost(err)
	}
	return nil
}

func (p *postdropSink) AddRecipient(r queue.Recipient) error {
	if p.err != nil {
		return p.err
	}
	if err := p.flush(); err != nil {
		return err
	}
	if err := p.c.Send(ipc.Attrs{{Name: attrReq, Value: "xrcpt"}, {Name: attrAddr, Value: r.Addr}, {Name: attrNotify, Value: r.Notify}}); err != nil {
		return p.lost(err)
	}
	return nil
}

func (p *postdropSink) Commit() (queue.ID, error) {
	if p.err != nil {
		p.Abort()
		return "", p.err
	}
	if err := p.flush(); err != nil {
		p.Abort()
		return "", err
	}
	if err := p.c.Write(ipc.Attrs{{Name: attrReq, Value: "end"}}); err != nil {
		p.Abort()
		return "", p.lost(err)
	}
	r, err := p.c.Read()
	if err != nil {
		p.Abort()
		return "", p.lost(err)
	}
	p.closed = true
	p.c.Close()
	p.cmd.Wait()
	if err := refusalFrom(r); err != nil {
		return "", err
	}
	return queue.ID(r.Str(attrQueueID)), nil
}

// Abort closes postdrop's input before the end request: it removes its
// temporary file and exits.
func (p *postdropSink) Abort() {
	if p.closed {
		return
	}
	p.closed = true
	p.c.Close()
	p.cmd.Wait()
}

package local

// Delivery as another user: the child process.
//
// The local agent runs as root and is multi-threaded, so it never changes
// its own uid or gid (DESIGN.md §9). Each step that must run with a
// recipient's rights — reading a .forward or :include: file, appending to
// a mailbox or file, writing into a Maildir — is done by a fresh copy of
// the local program itself, exec'd with SysProcAttr.Credential set to that
// user and the hidden first argument ChildArg. Commands (|command,
// mailbox_command) are exec'd the same way, directly through the shell.
//
// The child's protocol, all in one process lifetime:
//
//	environment  POSTERN_LOCAL_CHILD=<JSON childRequest>   (nothing else)
//	stdin        the delivered message as frames: 4-byte big-endian
//	             length + bytes, ended by a zero-length frame; input that
//	             ends without that frame is a failed delivery (the parent
//	             could not read the queue file) and is rolled back
//	stdout       one JSON childResult
//
// The child trusts its request (it comes from root through exec) and
// nothing else: paths below the first directory are walked without
// following symbolic links, files are opened O_NOFOLLOW, mailboxes must be
// regular files with one link.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"postern/pkg/dirsync"
)

// ChildArg, as the first argument of the local program, makes it run one
// delivery step as described in this file instead of the daemon.
const ChildArg = "-postern-local-child"

const childEnv = "POSTERN_LOCAL_CHILD"

// maxReadFile bounds a .forward or :include: file.
const maxReadFile = 1 << 20

type childOp string

const (
	opRead    childOp = "read"    // read Path
	opMbox    childOp = "mbox"    // append the message to Path
	opMaildir childOp = "maildir" // write the message into the Maildir Path (ends in '/')
)

// childRequest is one step for the child.
type childRequest struct {
	Op       childOp
	Path     string // absolute
	Hostname string // for Maildir file names
	// Base is the directory Path is walked from without following
	// symbolic links; it is opened normally (it may be /var/mail →
	// /var/spool/mail). Empty: the directory of Path.
	Base string
	// UID and GID own what is created when Chown (a child running as
	// root for a spool the user cannot write); UID is also the owner a
	// mailbox must have under Mbox.strictOwner.
	UID, GID int
	Chown    bool
	Locks    []string // dotlock, fcntl, flock
	// DotlockMayFail: skip a dot-lock the user may not create.
	DotlockMayFail bool
	LockAttempts   int
	LockDelay      time.Duration
	StaleLock      time.Duration
	Limit          int64
	StrictOwner    bool
}

// childResult is the child's answer.
type childResult struct {
	OK       bool
	Err      string
	TooLarge bool   // the size limit was hit
	NotFound bool   // opRead: no such file
	Data     []byte // opRead
	Owner    int    // opRead: the file's uid
}

// IsChild reports whether args (os.Args) ask for the child mode.
func IsChild(args []string) bool { return len(args) > 1 && args[1] == ChildArg }

// ChildMain runs the child mode and returns the exit status.
func ChildMain() int {
	var req childRequest
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &req); err != nil {
		fmt.Fprintln(os.Stderr, "local child: bad request:", err)
		return 1
	}
	res := runChild(&req, os.Stdin)
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

func runChild(req *childRequest, stdin io.Reader) childResult {
	switch req.Op {
	case opRead:
		return childRead(req.Path)
	case opMbox, opMaildir:
		in := &frameReader{r: bufio.NewReaderSize(stdin, 64<<10)}
		write := func(w io.Writer) error {
			_, err := io.Copy(w, in)
			return err
		}
		o := owner{uid: req.UID, gid: req.GID, chown: req.Chown}
		base, rel := req.Base, ""
		var err error
		if req.Op == opMaildir {
			dir := strings.TrimSuffix(req.Path, "/")
			if base == "" {
				base = filepath.Dir(dir)
			}
			rel = strings.TrimPrefix(strings.TrimPrefix(dir, base), "/") + "/"
			if req.Limit > 0 {
				inner := write
				write = func(w io.Writer) error { return inner(&limitWriter{w: w, left: req.Limit}) }
			}
			var group dirsync.Group
			err = deliverMaildir(base, rel, req.Hostname, o, &group, nil, write)
		} else {
			if base == "" {
				base = filepath.Dir(req.Path)
			}
			rel = strings.TrimPrefix(strings.TrimPrefix(req.Path, base), "/")
			opt := mboxOptions{
				dotlockMayFail: req.DotlockMayFail, attempts: req.LockAttempts, delay: req.LockDelay,
				stale: req.StaleLock, limit: req.Limit, strictOwner: req.StrictOwner,
			}
			for _, l := range req.Locks {
				switch l {
				case "dotlock":
					opt.dotlock = true
				case "fcntl":
					opt.fcntl = true
				case "flock":
					opt.flock = true
				}
			}
			err = deliverMbox(base, rel, o, opt, write)
		}
		if err != nil {
			return childResult{Err: errText(err), TooLarge: errors.Is(err, errFileTooLarge)}
		}
		return childResult{OK: true}
	}
	return childResult{Err: "unknown operation " + string(req.Op)}
}

func childRead(path string) childResult {
	f, err := os.Open(path)
	if err != nil {
		return childResult{Err: errText(err), NotFound: errors.Is(err, os.ErrNotExist)}
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return childResult{Err: errText(err)}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return childResult{Err: "not a regular file"}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxReadFile+1))
	if err != nil {
		return childResult{Err: errText(err)}
	}
	if len(data) > maxReadFile {
		return childResult{Err: "file too large"}
	}
	return childResult{OK: true, Data: data, Owner: int(st.Uid)}
}

// frameReader reads the framed stdin; it returns io.EOF only after the
// end frame, and io.ErrUnexpectedEOF when the stream stops before it.
type frameReader struct {
	r    *bufio.Reader
	left uint32
	done bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	for f.left == 0 {
		if f.done {
			return 0, io.EOF
		}
		var h [4]byte
		if _, err := io.ReadFull(f.r, h[:]); err != nil {
			return 0, io.ErrUnexpectedEOF
		}
		f.left = binary.BigEndian.Uint32(h[:])
		if f.left == 0 {
			f.done = true
		}
	}
	if uint32(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= uint32(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// frameWriter frames what is written to it; end writes the end frame.
type frameWriter struct {
	w   *bufio.Writer
	buf []byte
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: bufio.NewWriterSize(w, 64<<10), buf: make([]byte, 0, 60<<10)}
}

func (f *frameWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), cap(f.buf)-len(f.buf))
		f.buf = append(f.buf, p[:k]...)
		p = p[k:]
		if len(f.buf) == cap(f.buf) {
			if err := f.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (f *frameWriter) flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(f.buf)))
	f.w.Write(h[:])
	_, err := f.w.Write(f.buf)
	f.buf = f.buf[:0]
	return err
}

func (f *frameWriter) end() error {
	if err := f.flush(); err != nil {
		return err
	}
	f.w.Write([]byte{0, 0, 0, 0})
	return f.w.Flush()
}

// identity is who a step runs as.
type identity struct {
	uid, gid int
	groups   []uint32 // supplementary groups; none unless set
}

// childRunner starts children; exe is the local program.
type childRunner struct {
	exe     string
	root    bool // this process may set other credentials
	timeout time.Duration
}

func (c *childRunner) sysProcAttr(id identity) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if c.root {
		groups := id.groups
		if groups == nil {
			groups = []uint32{}
		}
		attr.Credential = &syscall.Credential{Uid: uint32(id.uid), Gid: uint32(id.gid), Groups: groups}
	}
	return attr
}

// run executes one child step as id; content, when not nil, writes the
// delivered message.
func (c *childRunner) run(id identity, req *childRequest, content func(io.Writer) error) (childResult, error) {
	js, err := json.Marshal(req)
	if err != nil {
		return childResult{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.exe, ChildArg)
	cmd.Env = []string{childEnv + "=" + string(js)}
	cmd.Dir = "/"
	cmd.SysProcAttr = c.sysProcAttr(id)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &limitedBuffer{b: &errb, left: 4096}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return childResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return childResult{}, fmt.Errorf("start delivery process: %w", err)
	}
	var werr error
	if content != nil {
		fw := newFrameWriter(stdin)
		if werr = content(fw); werr == nil {
			werr = fw.end()
		}
	}
	stdin.Close()
	err = cmd.Wait()
	if werr != nil && !errors.Is(werr, syscall.EPIPE) {
		return childResult{}, fmt.Errorf("read message: %w", werr)
	}
	if ctx.Err() != nil {
		return childResult{}, fmt.Errorf("delivery process timed out")
	}
	var res childResult
	if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil {
		if err == nil {
			err = jerr
		}
		return childResult{}, fmt.Errorf("delivery process failed: %v %s", err, strings.TrimSpace(errb.String()))
	}
	return res, nil
}

// limitedBuffer keeps the first bytes written to it and discards the rest.
type limitedBuffer struct {
	b    *bytes.Buffer
	left int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.left > 0 {
		k := min(len(p), l.left)
		l.b.Write(p[:k])
		l.left -= k
	}
	return len(p), nil
}

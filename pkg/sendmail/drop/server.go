package drop

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"postern/pkg/config"
	"postern/pkg/ipc"
	"postern/pkg/queue"
)

// Server is postdrop's side of one submission.
type Server struct {
	Config *config.Config
	Store  *queue.Store
	UID    int // the real uid of the submitter (getuid)

	mu      sync.Mutex
	w       *queue.Writer
	aborted bool
}

// Abort removes the file being written, if any; it is safe to call from
// a signal handler goroutine while Serve runs, and Serve writes nothing
// afterwards.
func (s *Server) Abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	if s.w != nil {
		s.w.Abort()
	}
}

// withWriter runs f on the writer unless Abort was called.
func (s *Server) withWriter(f func(w *queue.Writer) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		return errors.New("aborted")
	}
	return f(s.w)
}

// Serve runs the conversation on c. It returns the error that ended it,
// already reported to the client when possible; nil means a file was
// committed.
func (s *Server) Serve(c *ipc.Conn) error {
	if err := ipc.Hello(c, Service); err != nil {
		return err
	}
	sub, err := readSubmission(c)
	if err != nil {
		return s.refuse(c, err)
	}
	if err := sub.Check(); err != nil {
		return s.refuse(c, err)
	}
	if err := CheckSubmit(s.Config, s.UID); err != nil {
		return s.refuse(c, err)
	}
	if err := CheckSender(s.Config, s.UID, sub.Sender); err != nil {
		return s.refuse(c, err)
	}
	w, err := s.Store.CreatePerm(queue.Maildrop, 0o644)
	if err != nil {
		return s.refuse(c, &Refusal{Status: StatusTemp, Text: "create queue file: " + err.Error()})
	}
	s.mu.Lock()
	s.w = w
	aborted := s.aborted
	s.mu.Unlock()
	if aborted {
		w.Abort()
		return errors.New("aborted")
	}
	defer s.Abort()
	if err := s.withWriter(func(w *queue.Writer) error { return w.Envelope(sub.envelope(s.UID)) }); err != nil {
		return s.refuse(c, &Refusal{Status: StatusTemp, Text: err.Error()})
	}
	id := string(w.ID())
	if err := c.Write(ipc.Attrs{{Name: attrQueueID, Value: id}}); err != nil {
		return err
	}
	limit := s.Config.Size("message_size_limit")
	rcpts := len(sub.Recipients)
	var refusal error
	for {
		a, err := c.Read()
		if err != nil {
			// EOF before "end": the submission was cancelled.
			return err
		}
		if refusal != nil {
			// Keep reading to the end so that the client is not cut off
			// with a broken pipe, then report the first problem.
			if a.Str(attrReq) == "end" {
				return s.refuse(c, refusal)
			}
			continue
		}
		switch a.Str(attrReq) {
		case "data":
			data := a.Str(attrData)
			refusal = s.withWriter(func(w *queue.Writer) error {
				if limit > 0 && w.Size()+int64(len(data)) > limit {
					return &Refusal{Status: StatusSize, Text: errTooBig.Error()}
				}
				if _, err := io.WriteString(w, data); err != nil {
					return &Refusal{Status: StatusTemp, Text: "error writing queue file: " + err.Error()}
				}
				return nil
			})
		case "xrcpt":
			r := queue.Recipient{Addr: a.Str(attrAddr), Notify: a.Str(attrNotify), Status: queue.Pending}
			if rcpts >= maxRcpts {
				refusal = &Refusal{Status: StatusBad, Text: "too many recipients"}
				break
			}
			if refusal = checkRecipient(r); refusal != nil {
				break
			}
			rcpts++
			refusal = s.withWriter(func(w *queue.Writer) error { return w.AddRecipient(r) })
		case "end":
			if rcpts == 0 {
				return s.refuse(c, &Refusal{Status: StatusBad, Text: "no recipients"})
			}
			if err := s.withWriter(func(w *queue.Writer) error { return w.Commit() }); err != nil {
				return s.refuse(c, &Refusal{Status: StatusTemp, Text: "error writing queue file: " + err.Error()})
			}
			// Committed: from here on the message is the mail system's.
			if err := reply(c, StatusOK, "", id); err != nil {
				return fmt.Errorf("%s: queued, but the reply failed: %w", id, err)
			}
			return nil
		default:
			refusal = &Refusal{Status: StatusBad, Text: fmt.Sprintf("unexpected request %q", a.Str(attrReq))}
		}
	}
}

func (s *Server) refuse(c *ipc.Conn, err error) error {
	s.Abort()
	var r *Refusal
	if !errors.As(err, &r) {
		r = &Refusal{Status: StatusBad, Text: err.Error()}
	}
	reply(c, r.Status, r.Text, "")
	return r
}

// readSubmission reads the open, rcpt and start requests.
func readSubmission(c *ipc.Conn) (*Submission, error) {
	a, err := c.Read()
	if err != nil {
		return nil, err
	}
	if a.Str(attrReq) != "open" {
		return nil, &Refusal{Status: StatusBad, Text: fmt.Sprintf("expected open, got %q", a.Str(attrReq))}
	}
	sub := &Submission{
		Sender:   a.Str(attrSender),
		FullName: a.Str(attrName),
		BodyType: a.Str(attrBody),
		DSNRet:   a.Str(attrRet),
		DSNEnvID: a.Str(attrEnvID),
		SMTPUTF8: a.Bool(attrUTF8),
		Trace:    a.Bool(attrTrace),
	}
	switch ctx := a.Str(attrContext); ctx {
	case "", "local":
	case "remote":
		sub.Remote = true
	default:
		return nil, &Refusal{Status: StatusBad, Text: fmt.Sprintf("bad rewrite context %q", ctx)}
	}
	for {
		a, err := c.Read()
		if err != nil {
			return nil, err
		}
		switch a.Str(attrReq) {
		case "rcpt":
			if len(sub.Recipients) >= maxRcpts {
				return nil, &Refusal{Status: StatusBad, Text: "too many recipients"}
			}
			sub.Recipients = append(sub.Recipients, queue.Recipient{Addr: a.Str(attrAddr), Notify: a.Str(attrNotify)})
		case "start":
			return sub, nil
		default:
			return nil, &Refusal{Status: StatusBad, Text: fmt.Sprintf("unexpected request %q", a.Str(attrReq))}
		}
	}
}

// TrustConfigDir decides whether a set-group-ID postdrop may read its
// configuration from dir: always the default directory; any directory
// for root or when the process has no extra privilege; otherwise only a
// directory listed in alternate_config_directories or
// multi_instance_directories of the default main.cf (Postfix's rule).
func TrustConfigDir(dir string, uid int, privileged bool) error {
	dir = filepath.Clean(dir)
	if dir == config.DefaultDir || uid == 0 || !privileged {
		return nil
	}
	def, err := config.Load(config.DefaultDir)
	if err != nil {
		return fmt.Errorf("untrusted configuration directory %s: cannot read the default %s: %v", dir, config.DefaultDir, err)
	}
	var allowed []string
	for _, p := range []string{"alternate_config_directories", "multi_instance_directories"} {
		for _, d := range config.SplitList(def.Get(p)) {
			allowed = append(allowed, filepath.Clean(d))
		}
	}
	if slices.Contains(allowed, dir) {
		return nil
	}
	return fmt.Errorf("untrusted configuration directory name: %s (not listed in alternate_config_directories of %s/main.cf)", dir, config.DefaultDir)
}

// PostdropMain is the postdrop command:
//
//	postdrop [-c config_dir] [-r] [-v]
//
// It reads one submission on standard input in the conversation of the
// package doc, answers on standard output, and returns the exit status
// (0 once a file is committed, 75 otherwise). Diagnostics go to stderr
// as "postdrop: fatal: ...".
func PostdropMain(args []string, stderr io.Writer) int {
	fatal := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "postdrop: fatal: "+format+"\n", a...)
		return 75
	}
	var confFlag string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-c" && i+1 < len(args):
			i++
			confFlag = args[i]
		case len(a) > 2 && a[:2] == "-c":
			confFlag = a[2:]
		case a == "-r", a == "-v":
		default:
			return fatal("usage: postdrop [-c config_dir] [-v]")
		}
	}
	uid := os.Getuid()
	privileged := os.Getegid() != os.Getgid() || os.Geteuid() != uid
	dir := config.Dir(confFlag)
	if err := TrustConfigDir(dir, uid, privileged); err != nil {
		return fatal("%v", err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return fatal("%v", err)
	}
	srv := &Server{Config: cfg, Store: queue.NewStore(cfg.Get("queue_directory")), UID: uid}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case sig := <-sigs:
			srv.Abort()
			fmt.Fprintf(stderr, "postdrop: fatal: uid=%d: interrupted by %v\n", uid, sig)
			os.Exit(75)
		case <-done:
		}
	}()
	c := ipc.NewConn(&pipeConn{r: os.Stdin, w: os.Stdout}, ipcOptions())
	if err := srv.Serve(c); err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			// Already told to the client, which reports it.
			return 75
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// The submission was cancelled: the file is gone.
			return 0
		}
		return fatal("uid=%d: %v", uid, err)
	}
	return 0
}

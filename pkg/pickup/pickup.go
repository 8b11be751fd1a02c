// Package pickup is Postern's pickup daemon, Postfix's pickup(8): it takes
// the messages sendmail and postdrop leave in maildrop/ and hands each to
// cleanup over the hand-off protocol (pkg/handoff).
//
// It is a trigger service: master.cf's "pickup unix n - n 60 1 pickup"
// gives it public/pickup, where the master writes 'W' every wakeup
// seconds and "sendmail -q" writes 'W' too. Besides, pickup watches
// maildrop/ with fsnotify, so a committed file (a rename into maildrop/)
// is picked up at once, and scans the directory every ScanInterval in
// case an event was lost. Scans never overlap: one goroutine does them.
//
// For each file whose name is a queue ID:
//
//  1. open it without following symlinks and without blocking, and fstat
//     the descriptor: it must be a regular file with one link. Its owner
//     is the submitter (postdrop runs with the user's uid).
//  2. parse it (queue.Parse): a file that does not parse, is not a regular
//     file, or has several links goes to corrupt/ with
//     "warning: maildrop/ID: ..." and nothing else happens to it.
//  3. for a file owned by anyone but root or the owner of maildrop/
//     (mail_owner), apply authorized_submit_users and
//     local_login_sender_maps again to its owner and sender, since the
//     owner could have changed the file after postdrop wrote it; a
//     refusal sends it to corrupt/ with a warning.
//  4. open a hand-off to cleanup (public/cleanup_service_name) with the
//     envelope: sender, recipients with their DSN NOTIFY, DSN RET and
//     ENVID, body type, SMTPUTF8, the rewrite context recorded by
//     sendmail ("local" unless -G) and its request for a delivery report
//     (-v, the "trace" attribute). Log "ID: uid=N from=<sender>" with
//     cleanup's queue ID, as Postfix's pickup.
//  5. send a Received: header, "Received: by $myhostname ($mail_name,
//     from userid N)\n\tid ID; date", then the content (an empty line
//     first if the content starts with white space, so that it cannot
//     continue our header).
//  6. remove the maildrop file only after cleanup answered "ok" (the
//     message is durable in incoming/) or "discard". A temporary failure,
//     or cleanup not answering, leaves the file for the next scan and ends
//     this one. A permanent refusal (too big, no recipients) cannot be
//     bounced from here: the file goes to corrupt/ with a warning naming
//     cleanup's reason, so nothing is lost silently.
//
// Temporary files in maildrop/ (writers that died) are removed once they
// are older than StaleTemp.
//
// The sender's full name (sendmail -F) is recorded in the maildrop file
// but the hand-off protocol has no field for it yet, so cleanup's added
// From: header shows the address only.
//
// # Security
//
// pickup runs as mail_owner and reads files written by local users: it
// trusts nothing in them. Opens use O_NOFOLLOW|O_NONBLOCK, the parser
// is strict and bounded (pkg/queue), the owner uid comes from fstat and
// not from the file, and the submission checks are repeated for
// unprivileged owners. It writes nothing but renames into corrupt/ and
// removals in maildrop/, and talks only to cleanup.
package pickup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"postern/pkg/config"
	"postern/pkg/handoff"
	"postern/pkg/maillog"
	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
	"postern/pkg/server"
)

// ScanInterval is the period of the backstop scan of maildrop/.
const ScanInterval = 60 * time.Second

// StaleTemp is the age after which a temporary file in maildrop/ is
// removed: longer than any sendmail fed by a slow pipeline should take.
const StaleTemp = 24 * time.Hour

// Pickup is the daemon's state.
type Pickup struct {
	cfg      *config.Config
	log      *maillog.Logger
	store    *queue.Store
	dir      string        // maildrop/
	cleanup  *handoff.Pool // connections to cleanup, reused across messages
	timeout  time.Duration
	hostname string
	mailName string
	ownerUID int // owner of maildrop/ (mail_owner)
	wake     chan struct{}
	now      func() time.Time
	// filter is content_filter and flags receive_override_options as
	// cleanup flags: pickup passes both to cleanup, as Postfix's does.
	filter string
	flags  handoff.Flags
}

// New builds the pickup service and starts its scanner goroutine.
func New(ctx context.Context, sc *server.Context) (any, error) {
	p, err := newPickup(sc.Config, sc.Log)
	if err != nil {
		return nil, err
	}
	sc.Go(p.run)
	return p, nil
}

func newPickup(cfg *config.Config, log *maillog.Logger) (*Pickup, error) {
	qdir := cfg.Get("queue_directory")
	p := &Pickup{
		cfg:      cfg,
		log:      log,
		store:    queue.NewStore(qdir),
		dir:      filepath.Join(qdir, queue.Maildrop),
		cleanup:  handoff.NewPool(filepath.Join(qdir, queue.Public, cfg.Get("cleanup_service_name")), cfg.Duration("ipc_timeout")),
		timeout:  cfg.Duration("ipc_timeout"),
		hostname: cfg.Get("myhostname"),
		mailName: cfg.Get("mail_name"),
		wake:     make(chan struct{}, 1),
		now:      time.Now,
		filter:   cfg.Get("content_filter"),
	}
	flags, _, err := handoff.ReceiveOverride(cfg.List("receive_override_options"))
	if err != nil {
		return nil, fmt.Errorf("pickup: %w", err)
	}
	p.flags = flags
	var st syscall.Stat_t
	if err := syscall.Stat(p.dir, &st); err != nil {
		return nil, fmt.Errorf("pickup: %s: %w", p.dir, err)
	}
	p.ownerUID = int(st.Uid)
	return p, nil
}

// Wake asks for a scan; wake-ups that arrive during a scan are merged
// into one more scan.
func (p *Pickup) Wake(ctx context.Context, b byte) {
	p.signal()
}

func (p *Pickup) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run owns the watcher and does every scan.
func (p *Pickup) run(ctx context.Context) {
	var events chan fsnotify.Event
	var errs chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(p.dir); err != nil {
			w.Close()
		}
	}
	if err != nil {
		p.log.Warning("watch %s: %v; scanning every %v and on wake-up only", p.dir, err, ScanInterval)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	tick := time.NewTicker(ScanInterval)
	defer tick.Stop()
	p.signal() // a first scan at startup: mail may have waited while we were down
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op&(fsnotify.Create|fsnotify.Rename) != 0 && queue.ValidID(filepath.Base(ev.Name)) {
				p.signal()
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow loses events: scan to catch up.
			p.log.Warning("watch %s: %v", p.dir, err)
			p.signal()
		case <-tick.C:
			if n, err := p.store.CleanTemp(queue.Maildrop, StaleTemp); err != nil {
				p.log.Warning("clean %s: %v", p.dir, err)
			} else if n > 0 {
				p.log.Printf("removed %d stale temporary file(s) from %s", n, queue.Maildrop)
			}
			p.signal()
		case <-p.wake:
			p.Scan(ctx)
		}
	}
}

// Scan feeds every message in maildrop/ to cleanup, and scans again as
// long as messages are taken, as Postfix's pickup does. It stops at the
// first temporary failure: cleanup is down or busy, and the next wake-up
// or tick retries.
func (p *Pickup) Scan(ctx context.Context) {
	for ctx.Err() == nil {
		ids, err := p.store.List(queue.Maildrop)
		if err != nil {
			p.log.Warning("scan %s: %v", p.dir, err)
			return
		}
		taken := 0
		for _, id := range ids {
			if ctx.Err() != nil {
				return
			}
			done, err := p.pickup(id)
			if err != nil {
				p.log.Warning("%s/%s: %v", queue.Maildrop, id, err)
				return
			}
			if done {
				taken++
			}
		}
		if taken == 0 {
			return
		}
	}
}

// tempError marks a failure after which the file stays for a later scan.
type tempError struct{ err error }

func (e *tempError) Error() string { return e.err.Error() }

// pickup handles one file. It reports whether the file left maildrop/
// (queued, discarded or quarantined); an error is a temporary failure.
func (p *Pickup) pickup(id queue.ID) (bool, error) {
	path := p.store.Path(queue.Maildrop, id)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // taken by another scan, or removed
		}
		if errors.Is(err, syscall.ELOOP) {
			return p.quarantine(id, "symbolic link")
		}
		return false, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false, err
	}
	uid := int(st.Uid)
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return p.quarantine(id, fmt.Sprintf("uid=%d: not a regular file", uid))
	}
	if st.Nlink > 1 {
		return p.quarantine(id, fmt.Sprintf("uid=%d: file has %d links", uid, st.Nlink))
	}
	m, err := queue.Parse(f, st.Size)
	if err != nil {
		return p.quarantine(id, fmt.Sprintf("uid=%d: %v", uid, err))
	}
	env := &m.Envelope
	if a, ok := env.Attrs[drop.AttrUID]; ok && a != strconv.Itoa(uid) && uid != 0 && uid != p.ownerUID {
		p.log.Warning("%s/%s: uid=%d: file claims uid %q; using the file owner", queue.Maildrop, id, uid, a)
	}
	if uid != 0 && uid != p.ownerUID {
		if err := drop.CheckSubmit(p.cfg, uid); err != nil {
			return p.refused(id, uid, err)
		}
		if err := drop.CheckSender(p.cfg, uid, env.Sender); err != nil {
			return p.refused(id, uid, err)
		}
	}
	if len(env.Recipients) == 0 {
		return p.quarantine(id, fmt.Sprintf("uid=%d: no recipients", uid))
	}
	req := &handoff.Request{
		Sender:         env.Sender,
		BodyType:       env.BodyType,
		SMTPUTF8:       env.SMTPUTF8,
		DSNRet:         env.DSNRet,
		DSNEnvID:       env.DSNEnvID,
		RewriteContext: handoff.ContextLocal,
		FullName:       env.Attrs[drop.AttrFullName],
		Filter:         p.filter,
		Flags:          p.flags,
		HasFlags:       true,
		Trace:          env.Attrs[drop.AttrTrace] == "1",
	}
	if env.Attrs[drop.AttrRewrite] == "remote" {
		req.RewriteContext = handoff.ContextRemote
	}
	for _, r := range env.Recipients {
		if r.Status.Done() {
			continue
		}
		req.Recipients = append(req.Recipients, handoff.Recipient{Addr: r.Addr, Notify: r.Notify, ORcpt: r.ORcpt})
	}
	s, err := p.cleanup.Open(req)
	if err != nil {
		var he *handoff.Error
		if errors.As(err, &he) && !he.Temporary() {
			return p.quarantine(id, fmt.Sprintf("uid=%d: refused by cleanup: %s %s", uid, he.Result.DSN, he.Result.Text))
		}
		return false, &tempError{fmt.Errorf("hand-off to cleanup: %w", err)}
	}
	p.log.Pickup(s.ID(), uid, env.Sender)
	if err := p.copy(s, m, s.ID(), uid, st.Mtim); err != nil {
		s.Abort()
		return false, &tempError{fmt.Errorf("%s: send to cleanup: %w", s.ID(), err)}
	}
	res, err := s.Close()
	if err != nil {
		return false, &tempError{fmt.Errorf("%s: cleanup reply: %w", s.ID(), err)}
	}
	switch res.Status {
	case handoff.OK, handoff.Discarded:
	case handoff.PermFail:
		return p.quarantine(id, fmt.Sprintf("uid=%d: refused by cleanup: %s %s", uid, res.DSN, res.Text))
	default:
		return false, &tempError{fmt.Errorf("%s: cleanup: %s %s", s.ID(), res.DSN, res.Text)}
	}
	// Only now is the message cleanup's: durable in incoming/.
	if err := p.store.Remove(queue.Maildrop, id); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.log.Warning("remove %s/%s: %v", queue.Maildrop, id, err)
	}
	return true, nil
}

// copy sends our Received: header and the content.
func (p *Pickup) copy(w io.Writer, m *queue.Message, id string, uid int, mtim syscall.Timespec) error {
	arrival := m.Envelope.Arrival
	if arrival.IsZero() {
		arrival = time.Unix(mtim.Unix())
	}
	if now := p.now(); arrival.After(now.Add(2 * time.Hour)) {
		arrival = now
	}
	hdr := fmt.Sprintf("Received: by %s (%s, from userid %d)\n\tid %s; %s\n",
		p.hostname, p.mailName, uid, id, arrival.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
	if _, err := io.WriteString(w, hdr); err != nil {
		return err
	}
	content := m.Content()
	var first [1]byte
	n, err := io.ReadFull(content, first[:])
	if n == 1 {
		if first[0] == ' ' || first[0] == '\t' {
			// Content that starts with white space would continue our
			// Received: header; an empty line makes it all body.
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(first[:]); err != nil {
			return err
		}
	} else if err != nil && err != io.EOF {
		return err
	}
	_, err = io.Copy(w, content)
	return err
}

func (p *Pickup) refused(id queue.ID, uid int, err error) (bool, error) {
	var rf *drop.Refusal
	if errors.As(err, &rf) && rf.Status == drop.StatusTemp {
		return false, &tempError{err}
	}
	return p.quarantine(id, fmt.Sprintf("uid=%d: %v", uid, err))
}

// quarantine moves a file to corrupt/ with a warning.
func (p *Pickup) quarantine(id queue.ID, why string) (bool, error) {
	p.log.Warning("%s/%s: %s; moved to %s/", queue.Maildrop, id, why, queue.Corrupt)
	if err := p.store.Quarantine(queue.Maildrop, id); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("move to %s: %w", queue.Corrupt, err)
	}
	return true, nil
}

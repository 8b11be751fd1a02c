package sendmail

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"postern/pkg/config"
	"postern/pkg/ipc"
	"postern/pkg/queue"
	"postern/pkg/sendmail/drop"
	"postern/pkg/table"
)

// mailqQueues are listed in this order, as Postfix's showq does.
var mailqQueues = []string{queue.Maildrop, queue.Active, queue.Incoming, queue.Deferred, queue.Hold}

// QueueEntry is one message as mailq shows it.
type QueueEntry struct {
	Queue   string
	ID      queue.ID
	Arrival time.Time
	Size    int64
	Sender  string
	Rcpts   []string // recipients still to be delivered
}

// ListQueue reads every message of the queues mailq shows. Files that do
// not parse are skipped (qmgr or pickup move them to corrupt/); files
// that vanish while being read are skipped too. A queue directory that
// cannot be read is an error.
func ListQueue(store *queue.Store) ([]QueueEntry, error) {
	var out []QueueEntry
	for _, q := range mailqQueues {
		ids, err := store.List(q)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		for _, id := range ids {
			m, err := queue.OpenFile(store.Path(q, id))
			if err != nil {
				if errors.Is(err, fs.ErrPermission) {
					return nil, err
				}
				continue
			}
			e := QueueEntry{Queue: q, ID: id, Arrival: m.Envelope.Arrival, Size: m.Size, Sender: m.Envelope.Sender}
			if q == queue.Maildrop {
				// Postfix shows the file size for maildrop files, which
				// have not been through cleanup yet.
				if fi, err := os.Stat(store.Path(q, id)); err == nil {
					e.Size = fi.Size()
				}
			}
			for _, rc := range m.Envelope.Recipients {
				if !rc.Status.Done() {
					e.Rcpts = append(e.Rcpts, rc.Addr)
				}
			}
			m.Close()
			out = append(out, e)
		}
	}
	return out, nil
}

// WriteMailq prints entries in the format of Postfix's mailq with long
// queue IDs: a heading, one block per message (ID with '*' for active
// and '!' for hold, size, arrival time, sender, then the recipients
// indented), and a summary line; "Mail queue is empty" when there is
// nothing.
func WriteMailq(w io.Writer, entries []QueueEntry, loc *time.Location) error {
	bw := bufio.NewWriter(w)
	const (
		strFmt    = "%-17s %8s %-19s %s\n"
		senderFmt = "%-17s %8d %19.19s %s\n"
	)
	var total int64
	for i, e := range entries {
		if i > 0 {
			fmt.Fprint(bw, "\n")
		} else {
			fmt.Fprintf(bw, strFmt, "----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------")
		}
		id := string(e.ID)
		switch e.Queue {
		case queue.Active:
			id += "*"
		case queue.Hold:
			id += "!"
		}
		fmt.Fprintf(bw, senderFmt, id, e.Size, e.Arrival.In(loc).Format("Mon Jan _2 15:04:05"), showAddr(e.Sender))
		for _, rc := range e.Rcpts {
			fmt.Fprintf(bw, strFmt, "", "", "", showAddr(rc))
		}
		total += e.Size
	}
	if len(entries) == 0 {
		fmt.Fprint(bw, "Mail queue is empty\n")
	} else {
		s := "s"
		if len(entries) == 1 {
			s = ""
		}
		fmt.Fprintf(bw, "\n-- %d Kbytes in %d Request%s.\n", total/1024, len(entries), s)
	}
	return bw.Flush()
}

// showAddr prints an address as showq does: the null address as
// MAILER-DAEMON, control characters as '?'.
func showAddr(a string) string {
	if a == "" {
		return "MAILER-DAEMON"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, a)
}

// mailq is -bp. Postern has no showq daemon: mailq reads the queue
// files itself, so only root and the owner of the queue can list it.
func (r *run) mailq() error {
	qdir := r.cfg.Get("queue_directory")
	if r.UID != 0 && !ownedBy(filepath.Join(qdir, queue.Maildrop), r.UID) {
		if err := drop.CheckMailq(r.cfg, r.UID); err != nil {
			return refusalError(r.prog, err)
		}
	}
	entries, err := ListQueue(queue.NewStore(qdir))
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fatalf(ExUnavailable, "Queue report unavailable - the queue is not readable by uid %d (%v); run mailq as root or as the mail_owner", r.UID, err)
		}
		return fatalf(ExUnavailable, "Queue report unavailable: %v", err)
	}
	if err := WriteMailq(r.Stdout, entries, time.Local); err != nil && !errors.Is(err, fs.ErrClosed) {
		return fatalf(ExIOErr, "output write error: %v", err)
	}
	return nil
}

// flush is -q: wake qmgr to retry the deferred queue ('F') and pickup to
// scan maildrop/ ('W'), as Postfix's postqueue -f.
func (r *run) flush() error {
	qdir := r.cfg.Get("queue_directory")
	if r.UID != 0 && !ownedBy(filepath.Join(qdir, queue.Maildrop), r.UID) {
		if err := drop.CheckFlush(r.cfg, r.UID); err != nil {
			return refusalError(r.prog, err)
		}
	}
	timeout := r.cfg.Duration("trigger_timeout")
	pub := filepath.Join(qdir, queue.Public)
	if err := ipc.Trigger(filepath.Join(pub, r.cfg.Get("queue_service_name")), 'F', timeout); err != nil {
		return fatalf(ExUnavailable, "Cannot flush mail queue - mail system is down (%v)", err)
	}
	if err := ipc.Trigger(filepath.Join(pub, r.cfg.Get("pickup_service_name")), 'W', timeout); err != nil {
		return fatalf(ExUnavailable, "Cannot flush mail queue - mail system is down (%v)", err)
	}
	return nil
}

// newaliases is -bi: Postern reads alias sources as text, so there is no
// database to build; it checks that every alias_database (or -oA) source
// loads in aliases(5) syntax and prints nothing when all do. An error is
// reported as postalias does, with exit status 1.
func (r *run) newaliases() error {
	specs := config.SplitList(r.cfg.Get("alias_database"))
	if r.opts.AliasFile != "" {
		specs = []string{r.opts.AliasFile}
	}
	var errs []string
	for _, spec := range specs {
		if !strings.Contains(spec, ":") {
			spec = r.cfg.Get("default_database_type") + ":" + spec
		}
		t, err := table.Open(spec, table.Options{Aliases: true, NoWatch: true})
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		t.Close()
	}
	if len(errs) > 0 {
		return &Error{Code: 1, Msg: strings.Join(errs, "\n")}
	}
	return nil
}

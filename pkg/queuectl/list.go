package queuectl

// The queue listing: mailq's format and postqueue -j's JSON lines.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"postern/pkg/queue"
)

// listQueues are listed in this order, as Postfix's showq does.
var listQueues = []string{queue.Maildrop, queue.Active, queue.Incoming, queue.Deferred, queue.Hold}

// Entry is one message of the listing.
type Entry struct {
	Queue   string
	ID      queue.ID
	Arrival time.Time
	Size    int64 // content bytes; the file size for maildrop/ files, as showq
	Sender  string
	Rcpts   []Rcpt // recipients still to be delivered
}

// Rcpt is a recipient still to be delivered.
type Rcpt struct {
	Addr string
	Orig string // the address as received, before rewriting; "" if the same
	// Reason is why its last delivery attempt was deferred, from the
	// message's defer log; "" when there is none.
	Reason string
}

// List reads every message of the listed queues. Files that do not parse
// are skipped (qmgr and pickup move them to corrupt/), as are files that
// go away while being read. A queue directory that cannot be read, or a
// file that cannot be opened for lack of permission, is an error.
func List(store *queue.Store) ([]Entry, error) {
	var out []Entry
	for _, q := range listQueues {
		ids, err := store.List(q)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		for _, id := range ids {
			path := store.Path(q, id)
			m, err := queue.OpenFile(path)
			if err != nil {
				if errors.Is(err, fs.ErrPermission) {
					return nil, err
				}
				continue
			}
			e := Entry{Queue: q, ID: id, Arrival: m.Envelope.Arrival, Size: m.Size, Sender: m.Envelope.Sender}
			if q == queue.Maildrop {
				if fi, err := os.Stat(path); err == nil {
					e.Size = fi.Size()
				}
			}
			var pending []Rcpt
			for _, r := range m.Envelope.Recipients {
				if !r.Status.Done() {
					pending = append(pending, Rcpt{Addr: r.Addr, Orig: r.Orig})
				}
			}
			m.Close()
			e.Rcpts = pending
			if q != queue.Maildrop {
				// The reasons are informational: a log that cannot be
				// read leaves them out, as a missing one does.
				reasons, _ := store.ReadDeferLog(id)
				e.Rcpts = withReasons(pending, reasons)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// withReasons orders recipients as Postfix's showq does: first those of
// the defer log, in its order and with its reasons, then the others. Log
// records of recipients no longer pending are left out.
func withReasons(pending []Rcpt, reasons []queue.DeferReason) []Rcpt {
	if len(reasons) == 0 {
		return pending
	}
	byAddr := map[string][]int{}
	for i, r := range pending {
		byAddr[r.Addr] = append(byAddr[r.Addr], i)
	}
	listed := make([]bool, len(pending))
	out := make([]Rcpt, 0, len(pending))
	for _, d := range reasons {
		idx := byAddr[d.Addr]
		if len(idx) == 0 {
			continue
		}
		byAddr[d.Addr] = idx[1:]
		listed[idx[0]] = true
		r := pending[idx[0]]
		r.Reason = d.Reason
		out = append(out, r)
	}
	for i, r := range pending {
		if !listed[i] {
			out = append(out, r)
		}
	}
	return out
}

// WriteMailq prints entries in the format of Postfix's mailq (also
// `sendmail -bp` and `mailq`) with long
// queue IDs: a heading, one block per message (ID with '*' for active
// and '!' for hold, size, arrival time, sender, then the recipients
// indented, each group of recipients with one deferral reason under a
// line "(reason)" right-aligned to column 78, "(reason unavailable)" for
// recipients without one after some with one), and a summary line; "Mail
// queue is empty" when there is nothing.
func WriteMailq(w io.Writer, entries []Entry, loc *time.Location) error {
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
		shown := "" // the reason of the recipients above
		for _, rc := range e.Rcpts {
			if rc.Reason != shown {
				shown = rc.Reason
				why := printable(shown)
				if why == "" {
					why = "reason unavailable"
				}
				fmt.Fprintf(bw, "%*s(%s)\n", max(76-len(why), 0), "", why)
			}
			fmt.Fprintf(bw, strFmt, "", "", "", showAddr(rc.Addr))
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

// WriteJSON prints entries as postqueue -j does: one JSON object per line
// with the members in Postfix's order and spacing, a recipient's deferral
// reason as its "delay_reason". The null sender is shown as
// MAILER-DAEMON, as in mailq.
func WriteJSON(w io.Writer, entries []Entry) error {
	bw := bufio.NewWriter(w)
	var b []byte
	for _, e := range entries {
		b = b[:0]
		b = append(b, `{"queue_name": `...)
		b = appendJSONString(b, e.Queue)
		b = append(b, `, "queue_id": `...)
		b = appendJSONString(b, string(e.ID))
		b = append(b, `, "arrival_time": `...)
		b = strconv.AppendInt(b, e.Arrival.Unix(), 10)
		b = append(b, `, "message_size": `...)
		b = strconv.AppendInt(b, e.Size, 10)
		b = append(b, `, "forced_expire": false, "sender": `...)
		b = appendJSONString(b, showAddr(e.Sender))
		b = append(b, `, "recipients": [`...)
		for i, r := range e.Rcpts {
			if i > 0 {
				b = append(b, ", "...)
			}
			orig := r.Orig
			if orig == "" {
				orig = r.Addr
			}
			b = append(b, `{"orig_address": `...)
			b = appendJSONString(b, showAddr(orig))
			b = append(b, `, "address": `...)
			b = appendJSONString(b, showAddr(r.Addr))
			if r.Reason != "" {
				b = append(b, `, "delay_reason": `...)
				b = appendJSONString(b, printable(r.Reason))
			}
			b = append(b, '}')
		}
		b = append(b, "]}\n"...)
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// appendJSONString appends s as a JSON string, without Go's HTML escaping.
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// showAddr shows an address as showq does: the null address as
// MAILER-DAEMON, control characters as '?'.
func showAddr(a string) string {
	if a == "" {
		return "MAILER-DAEMON"
	}
	return printable(a)
}

// printable replaces control characters with '?', as Postfix's
// printable().
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

package queue

// Defer logs: why recipients of a message were deferred.
//
// Postfix keeps, for every message with deferred recipients, a log file
// defer/<queue ID> to which each deferral appends the recipient and the
// reason; mailq (showq) prints those reasons under the message, and
// postqueue -j as "delay_reason". Postern keeps the same file with the
// same life:
//
//   - qmgr appends one record for each recipient it defers
//     (AppendDeferLog), whether the agent, the retry transport or qmgr
//     itself (resolver failure, agent unavailable) decided;
//   - the log is cleared when a new delivery attempt starts, that is when
//     the message moves into active/ from any queue but incoming/ (Move),
//     and when it goes back to incoming/ (requeue, qmgr's recovery at
//     start), so that it only ever tells about the last attempt; it stays
//     with the message in deferred/ and hold/;
//   - it goes away with the message: Remove drops it, except from
//     incoming/, maildrop/ and active/. A new message has no log, and a
//     message that leaves active/ by Remove had no recipient deferred in
//     its attempt (else it would have moved to deferred/) and had its log
//     cleared when the attempt started; leaving that case out spares the
//     hot path of every delivered message an unlink. A deletion by the
//     administrator calls RemoveDeferLog itself.
//
// The log is informational, never the truth about a recipient (the status
// byte in the queue file is): it is written without fsync, a crash may
// lose it or keep a cleared one, and a reader skips what it cannot parse.
//
// Format: text, one "name=value" line per field and an empty line after
// each record, as Postfix's defer logs:
//
//	recipient=user@example.com
//	original_recipient=alias@example.com      (only when it differs)
//	status=4.4.1
//	reason=connect to mx.example.com[192.0.2.1]:25: Connection refused
//	(empty line)
//
// Values never contain control characters (they are replaced with '?' on
// writing) and are cut to deferValueMax bytes. Unknown names are ignored
// (for later fields); a record without a recipient, a line without '=',
// and a last record without its empty line (a write in progress) are
// skipped. A record is appended with one write(2) on an O_APPEND
// descriptor, so the records of concurrent jobs do not interleave. The
// file stops growing at deferLogMax bytes; later deferrals of that attempt
// show no reason.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// DeferReason is one record of a defer log.
type DeferReason struct {
	Addr   string // recipient address
	Orig   string // original recipient, "" when the same as Addr
	Status string // RFC 3463 status, "4.4.1"
	Reason string // the text of the log line's status=deferred (...)
}

const (
	// deferValueMax bounds each value: an SMTP reply quoted in a reason
	// has at most a few lines of 512 bytes.
	deferValueMax = 4096
	// deferLogMax bounds the file: a few thousand recipients' reasons.
	deferLogMax = 1 << 20
	// deferReadMax is the most a reader reads: deferLogMax plus the
	// largest record, which may start just below deferLogMax.
	deferReadMax = deferLogMax + 4*(deferValueMax+32)
)

// Defer log field names.
const (
	deferRecipient = "recipient"
	deferOrig      = "original_recipient"
	deferStatus    = "status"
	deferReason    = "reason"
)

// AppendDeferLog appends records to the defer log of message id, creating
// it (mode 0600) if needed. Once the log has reached its size limit the
// records are dropped without an error.
func (s *Store) AppendDeferLog(id ID, recs ...DeferReason) error {
	if err := checkName(Defer, id); err != nil {
		return err
	}
	f, err := os.OpenFile(s.Path(Defer, id), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("%s: defer log: %w", id, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: defer log: %w", id, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: defer log: not a regular file", id)
	}
	if fi.Size() >= deferLogMax {
		return nil
	}
	var b []byte
	for _, r := range recs {
		b = appendDeferRecord(b, r)
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("%s: defer log: %w", id, err)
	}
	return nil
}

// appendDeferRecord appends the text of one record to b.
func appendDeferRecord(b []byte, r DeferReason) []byte {
	field := func(name, value string) {
		b = append(b, name...)
		b = append(b, '=')
		b = appendDeferValue(b, value)
		b = append(b, '\n')
	}
	field(deferRecipient, r.Addr)
	if r.Orig != "" && r.Orig != r.Addr {
		field(deferOrig, r.Orig)
	}
	if r.Status != "" {
		field(deferStatus, r.Status)
	}
	field(deferReason, r.Reason)
	return append(b, '\n')
}

// appendDeferValue appends v cut to deferValueMax bytes (at a rune
// boundary), with control characters replaced by '?'.
func appendDeferValue(b []byte, v string) []byte {
	if len(v) > deferValueMax {
		cut := deferValueMax
		for cut > 0 && v[cut]&0xc0 == 0x80 {
			cut--
		}
		v = v[:cut]
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < ' ' || c == 0x7f {
			c = '?'
		}
		b = append(b, c)
	}
	return b
}

// ReadDeferLog returns the records of message id's defer log, in the order
// written; none (and no error) when the message has no log.
func (s *Store) ReadDeferLog(id ID) ([]DeferReason, error) {
	if err := checkName(Defer, id); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.Path(Defer, id), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: defer log: %w", id, err)
	}
	defer f.Close()
	recs, err := ParseDeferLog(f)
	if err != nil {
		return recs, fmt.Errorf("%s: defer log: %w", id, err)
	}
	return recs, nil
}

// RemoveDeferLog removes message id's defer log; a missing log is not an
// error.
func (s *Store) RemoveDeferLog(id ID) error {
	if err := checkName(Defer, id); err != nil {
		return err
	}
	if err := os.Remove(s.Path(Defer, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: remove defer log: %w", id, err)
	}
	return nil
}

// ParseDeferLog reads a defer log (see the format above) from r, at most
// deferReadMax bytes of it. Malformed parts are skipped; the error is only
// for a failing read.
func ParseDeferLog(r io.Reader) ([]DeferReason, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, deferReadMax), deferValueMax+64)
	var (
		out  []DeferReason
		cur  DeferReason
		have bool // cur has a recipient
		bad  bool // cur had a line too long: drop it
	)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than any writer writes: skip the rest of it
			// and the record it belongs to.
			bad = true
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == nil {
				continue
			}
		}
		if err != nil {
			// A last line without its newline, or no end of record:
			// a write in progress or a cut file. Either way not a record.
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) == 0 {
			if have && !bad {
				out = append(out, cur)
			}
			cur, have, bad = DeferReason{}, false, false
			continue
		}
		name, value, ok := bytes.Cut(line, []byte("="))
		if !ok {
			continue
		}
		switch string(name) {
		case deferRecipient:
			cur.Addr, have = string(appendDeferValue(nil, string(value))), true
		case deferOrig:
			cur.Orig = string(appendDeferValue(nil, string(value)))
		case deferStatus:
			cur.Status = string(appendDeferValue(nil, string(value)))
		case deferReason:
			cur.Reason = string(appendDeferValue(nil, string(value)))
		}
	}
}

package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"postern/pkg/dirsync"
)

// Writer writes one new queue file. Its methods are not safe for
// concurrent use; one goroutine owns a Writer from Create to Commit or
// Abort.
type Writer struct {
	s     *Store
	queue string
	dir   string
	id    ID
	f     *os.File
	bw    *bufio.Writer
	tmp   string // the temporary path, until the rename
	final string // the path under the queue ID

	state writerState
	buf   *writerBuf // bw and chunk's memory, back to writerBufs when done
	chunk []byte     // content not yet written as a record
	size  int64
	hdr   [1 + maxLenBytes]byte
	err   error // the first write error; every later call returns it

	off      int64   // bytes given to bw so far: the file offset of the next record
	rcptOff  []int64 // file offset of each envelope recipient's status byte
	xattrs   string  // name of the last extracted-segment 'U' record
	xattrSet bool    // an extracted 'U' record was written: the file is version 2
	// extractedRcpts: AddRecipient was called; no ExtractedAttr after it.
	extractedRcpts bool
}

type writerState int

const (
	wNew       writerState = iota // nothing written
	wEnvelope                     // envelope segment written
	wContent                      // inside the content segment
	wExtracted                    // inside the extracted segment
	wRenamed                      // renamed to the ID, not yet known durable
	wCommitted                    // durable; Abort does nothing
	wAborted
)

// Create starts a new message in queue (normally incoming/, or maildrop/
// for sendmail). The file is created under a temporary name in that
// directory, mode 0600. See CreatePerm.
func (s *Store) Create(queue string) (*Writer, error) {
	return s.CreatePerm(queue, 0o600)
}

// CreatePerm is Create with the file mode given. sendmail writes maildrop
// files 0644, as Postfix's postdrop does, so that pickup, running as
// mail_owner, can read what a local user wrote; the directory (0730, no
// access for others) keeps everyone else out.
func (s *Store) CreatePerm(queue string, perm os.FileMode) (*Writer, error) {
	if queue == "" || strings.ContainsAny(queue, "/\x00") || queue == "." || queue == ".." {
		return nil, fmt.Errorf("queue: invalid queue name %q", queue)
	}
	if perm&^0o644 != 0 {
		return nil, fmt.Errorf("queue: create in %s: file mode %#o wider than 0644", queue, perm)
	}
	dir := filepath.Join(s.dir, queue)
	var f *os.File
	var tmp string
	if queue == Incoming {
		tmp = filepath.Join(dir, string(NewID())+tempSuffix)
		f = s.reuse(tmp, perm)
	}
	for tries := 0; f == nil; tries++ {
		tmp = filepath.Join(dir, string(NewID())+tempSuffix)
		var err error
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			break
		}
		// NewID does not repeat within a process; EEXIST means a
		// leftover from an earlier process with the same pid.
		if errors.Is(err, fs.ErrExist) && tries < 10 {
			continue
		}
		return nil, fmt.Errorf("queue: create in %s: %w", queue, err)
	}
	// The umask may have narrowed the mode; sendmail's 0644 must stand.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("queue: create in %s: %w", queue, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("queue: create in %s: %w", queue, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("queue: create in %s: no inode number", queue)
	}
	// Time plus inode, as Postfix: no other file on this file system has
	// this inode while ours exists, and every queue directory is on one
	// file system (Move renames), so the ID cannot collide while the
	// message exists; the time part keeps reused inodes apart later.
	id := fileID(processClock.next(), st.Ino)
	w := &Writer{
		s:     s,
		queue: queue,
		dir:   dir,
		id:    id,
		f:     f,
		tmp:   tmp,
		final: filepath.Join(dir, string(id)),
	}
	w.buf = writerBufs.Get().(*writerBuf)
	w.buf.bw.Reset(f)
	w.bw, w.chunk = w.buf.bw, w.buf.chunk[:0]
	s.step("created", tmp)
	return w, nil
}

// ID returns the queue ID the message will have once committed.
func (w *Writer) ID() ID { return w.id }

// Size returns the number of content bytes written so far.
func (w *Writer) Size() int64 { return w.size }

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("%s: write queue file: %w", w.id, err)
	}
	return w.err
}

func (w *Writer) record(t RecType, data ...[]byte) error {
	n := 0
	for _, d := range data {
		n += len(d)
	}
	h := appendHeader(w.hdr[:0], t, n)
	if _, err := w.bw.Write(h); err != nil {
		return w.fail(err)
	}
	for _, d := range data {
		if _, err := w.bw.Write(d); err != nil {
			return w.fail(err)
		}
	}
	w.off += int64(len(h) + n)
	return nil
}

func (w *Writer) meta(t RecType, data ...string) error {
	n := 0
	for _, d := range data {
		n += len(d)
	}
	if n > maxMetaRecord {
		return w.fail(fmt.Errorf("%c record of %d bytes exceeds %d", t, n, maxMetaRecord))
	}
	bs := make([][]byte, len(data))
	for i, d := range data {
		bs[i] = []byte(d)
	}
	return w.record(t, bs...)
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.state >= wRenamed {
		return fmt.Errorf("%s: queue file already committed or aborted", w.id)
	}
	return nil
}

// Envelope writes the envelope segment, env.Recipients included. It must
// be the first call after Create, and comes once. A zero Arrival is
// written as the current time. Attrs are written sorted by name.
func (w *Writer) Envelope(env *Envelope) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state != wNew {
		return fmt.Errorf("%s: envelope written twice", w.id)
	}
	if err := checkEnvelope(env); err != nil {
		return fmt.Errorf("%s: %w", w.id, err)
	}
	arrival := env.Arrival
	if arrival.IsZero() {
		arrival = time.Now()
	}
	// Version 1 unless the extracted segment gets 'U' records, which
	// Commit then marks by rewriting this record's one data byte.
	w.meta(RecVersion, "1")
	w.meta(RecTime, strconv.FormatInt(arrival.UnixNano(), 10))
	w.meta(RecSender, env.Sender)
	for _, a := range []struct{ name, value string }{
		{attrClientName, env.ClientName},
		{attrClientAddr, env.ClientAddr},
		{attrHeloName, env.HeloName},
		{attrProtocol, env.Protocol},
		{attrAuthUser, env.AuthUser},
		{attrBodyType, env.BodyType},
		{attrSMTPUTF8, boolAttr(env.SMTPUTF8)},
		{attrDSNRet, env.DSNRet},
		{attrDSNEnvID, env.DSNEnvID},
	} {
		if a.value != "" {
			w.meta(RecAttr, a.name, "=", a.value)
		}
	}
	names := make([]string, 0, len(env.Attrs))
	for k := range env.Attrs {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		w.meta(RecUserAttr, k, "=", env.Attrs[k])
	}
	w.rcptOff = w.rcptOff[:0]
	for _, r := range env.Recipients {
		// The status byte follows the record header: type and length.
		n := 1 + len(r.Addr) + len(r.Orig) + len(r.Notify) + len(r.ORcpt) + 3
		w.rcptOff = append(w.rcptOff, w.off+int64(len(appendHeader(nil, RecRecipient, n))))
		w.recipient(r)
	}
	if w.err != nil {
		return w.err
	}
	w.state = wEnvelope
	return nil
}

func boolAttr(b bool) string {
	if b {
		return "1"
	}
	return ""
}

func checkEnvelope(env *Envelope) error {
	if t := env.Arrival; !t.IsZero() && (t.Year() < 1970 || t.Year() > 2261) {
		return fmt.Errorf("arrival time %v out of range", t)
	}
	for k, v := range env.Attrs {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("invalid attribute name %q", k)
		}
		if len(k)+1+len(v) > maxMetaRecord {
			return fmt.Errorf("attribute %s too long", k)
		}
	}
	for _, r := range env.Recipients {
		if err := checkRecipient(r); err != nil {
			return err
		}
	}
	return nil
}

func checkRecipient(r Recipient) error {
	if !r.Status.Valid() {
		return fmt.Errorf("recipient %q: invalid status %v", r.Addr, r.Status)
	}
	for _, f := range []string{r.Addr, r.Orig, r.Notify, r.ORcpt} {
		if strings.IndexByte(f, 0) >= 0 {
			return fmt.Errorf("recipient %q: NUL in field", r.Addr)
		}
	}
	if 1+len(r.Addr)+len(r.Orig)+len(r.Notify)+len(r.ORcpt)+3 > maxMetaRecord {
		return fmt.Errorf("recipient %q: too long", r.Addr)
	}
	return nil
}

func (w *Writer) recipient(r Recipient) error {
	return w.meta(RecRecipient, string(r.Status), r.Addr, "\x00", r.Orig, "\x00", r.Notify, "\x00", r.ORcpt)
}

// Write appends content bytes exactly as given. It buffers up to one
// chunk and writes full chunks as content records, so memory use does
// not grow with the message. Write is not allowed before Envelope or
// after AddRecipient.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	switch w.state {
	case wNew:
		return 0, fmt.Errorf("%s: content before envelope", w.id)
	case wExtracted:
		return 0, fmt.Errorf("%s: content after extracted recipients", w.id)
	case wEnvelope:
		if err := w.record(RecMessage); err != nil {
			return 0, err
		}
		w.state = wContent
	}
	n := len(p)
	for len(p) > 0 {
		if len(w.chunk) == 0 && len(p) >= chunkSize {
			if err := w.record(RecContent, p[:chunkSize]); err != nil {
				return n - len(p), err
			}
			w.size += chunkSize
			p = p[chunkSize:]
			continue
		}
		k := copy(w.chunk[len(w.chunk):cap(w.chunk)], p)
		w.chunk = w.chunk[:len(w.chunk)+k]
		w.size += int64(k)
		p = p[k:]
		if len(w.chunk) == cap(w.chunk) {
			if err := w.flushChunk(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *Writer) flushChunk() error {
	if len(w.chunk) == 0 {
		return nil
	}
	err := w.record(RecContent, w.chunk)
	w.chunk = w.chunk[:0]
	return err
}

// endContent closes the content segment (opening an empty one if no
// content was written) and opens the extracted segment.
func (w *Writer) endContent() error {
	if w.state == wEnvelope {
		if err := w.record(RecMessage); err != nil {
			return err
		}
		w.state = wContent
	}
	if w.state == wContent {
		if err := w.flushChunk(); err != nil {
			return err
		}
		if err := w.record(RecExtracted); err != nil {
			return err
		}
		w.state = wExtracted
	}
	return nil
}

// AddRecipient appends a recipient to the extracted segment: one learned
// after the content (sendmail -t headers, alias expansion). It ends the
// content: Write fails afterwards.
func (w *Writer) AddRecipient(r Recipient) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state == wNew {
		return fmt.Errorf("%s: recipient before envelope", w.id)
	}
	if err := checkRecipient(r); err != nil {
		return fmt.Errorf("%s: %w", w.id, err)
	}
	if err := w.endContent(); err != nil {
		return err
	}
	w.extractedRcpts = true
	return w.recipient(r)
}

// SetEnvelopeStatus changes the status of envelope recipient i (an index
// into the Recipients given to Envelope) before Commit: cleanup marks the
// envelope recipients Delivered (discarded on purpose) when a body_checks
// REDIRECT, found after the envelope was written, replaces them. The file
// is not committed yet, so this is no in-place change of a queue file:
// a crash leaves a temporary file that is never delivered.
func (w *Writer) SetEnvelopeStatus(i int, st RcptStatus) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state == wNew {
		return fmt.Errorf("%s: recipient status before envelope", w.id)
	}
	if i < 0 || i >= len(w.rcptOff) {
		return fmt.Errorf("%s: envelope recipient index %d out of range", w.id, i)
	}
	if !st.Valid() {
		return fmt.Errorf("%s: invalid status %v", w.id, st)
	}
	return w.patch(w.rcptOff[i], byte(st))
}

// patch rewrites one byte already given to the buffer: flush, then
// pwrite, which leaves the file offset where the next record goes.
func (w *Writer) patch(off int64, b byte) error {
	if err := w.bw.Flush(); err != nil {
		return w.fail(err)
	}
	if _, err := w.f.WriteAt([]byte{b}, off); err != nil {
		return w.fail(err)
	}
	return nil
}

// ExtractedAttr appends a name=value attribute to the extracted segment
// (version 2): one learned after the content, such as a content filter
// set by body_checks. It overrides the envelope's attribute of that name
// when the file is read. Names come in increasing order, each once, and
// before any AddRecipient; ExtractedAttr ends the content.
func (w *Writer) ExtractedAttr(name, value string) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state == wNew {
		return fmt.Errorf("%s: attribute before envelope", w.id)
	}
	if name == "" || strings.ContainsAny(name, "=\x00") || len(name)+1+len(value) > maxMetaRecord {
		return fmt.Errorf("%s: invalid attribute %q", w.id, name)
	}
	if w.xattrSet && name <= w.xattrs {
		return fmt.Errorf("%s: extracted attribute %q out of order or repeated", w.id, name)
	}
	if w.state == wExtracted && w.extractedRcpts {
		return fmt.Errorf("%s: extracted attribute after extracted recipients", w.id)
	}
	if err := w.endContent(); err != nil {
		return err
	}
	w.xattrs, w.xattrSet = name, true
	return w.meta(RecUserAttr, name, "=", value)
}

// Commit ends the file and makes it durable under its queue ID: END record,
// flush, fsync the file, rename the temporary name to the ID, fsync the
// directory (shared with concurrent commits, see SyncGroup). It returns nil
// only once all of that is done; only then may the message be acknowledged.
// On error the caller must call Abort, which removes the file under
// whichever name it has.
func (w *Writer) Commit() error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state == wNew {
		return fmt.Errorf("%s: commit without envelope", w.id)
	}
	if err := w.endContent(); err != nil {
		return err
	}
	if err := w.record(RecEnd); err != nil {
		return err
	}
	if w.xattrSet {
		// The version record 'V' 0x01 '1' starts the file: its data
		// byte is at offset 2.
		if err := w.patch(2, '2'); err != nil {
			return err
		}
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail(err)
	}
	w.release()
	w.s.step("flushed", w.tmp)
	// Announce the directory fsync to come, so that commits whose file
	// fsyncs overlap share it (dirsync's gathering).
	var ticket *dirsync.Ticket
	if w.s.syncMode() == SyncGroup {
		ticket = w.s.group.Begin(w.dir)
		defer ticket.Cancel() // no-op once used
	}
	// The data must be on disk before the name points at it: a crash
	// after the rename must never expose a file whose blocks were lost.
	if err := w.f.Sync(); err != nil {
		return w.fail(err)
	}
	w.s.step("synced", w.tmp)
	if err := w.f.Close(); err != nil {
		w.f = nil
		return w.fail(err)
	}
	w.f = nil
	if err := rename(w.tmp, w.final); err != nil {
		return w.fail(err)
	}
	w.state = wRenamed
	w.s.step("renamed", w.final)
	if err := w.syncEntry(ticket); err != nil {
		return w.fail(err)
	}
	w.state = wCommitted
	w.s.step("committed", w.final)
	return nil
}

// CommitTo is Commit into another queue than the one the file was created
// in: cleanup puts a message that header_checks or body_checks hold
// straight into hold/. The temporary file is renamed across directories
// (every queue directory is on one file system) and the target directory
// is the one synced; a crash can leave only the temporary name behind,
// which CleanTemp removes.
func (w *Writer) CommitTo(queue string) error {
	if queue == "" || strings.ContainsAny(queue, "/\x00") || queue == "." || queue == ".." {
		return fmt.Errorf("queue: invalid queue name %q", queue)
	}
	if w.state != wNew && w.state != wEnvelope && w.state != wContent && w.state != wExtracted {
		return fmt.Errorf("%s: commit to %s: already committed or aborted", w.id, queue)
	}
	w.queue = queue
	w.dir = filepath.Join(w.s.dir, queue)
	w.final = filepath.Join(w.dir, string(w.id))
	return w.Commit()
}

// syncEntry makes the rename durable according to the store's SyncMode;
// ticket is the announced group fsync in SyncGroup mode.
func (w *Writer) syncEntry(ticket *dirsync.Ticket) error {
	var err error
	switch w.s.syncMode() {
	case SyncFileOnly:
		return nil
	case SyncEach:
		err = w.s.syncDir(w.dir)
	default:
		err = ticket.Sync(w.s.syncDir)
	}
	if errors.Is(err, errNoDirRead) {
		// sendmail in maildrop/ may create files but not read the
		// directory, so it cannot open it to fsync it. Fsync the file
		// again instead: the rename changed its inode (ctime), and on
		// journaling file systems (ext4, XFS) that forces the journal
		// transaction holding the rename to disk. POSIX does not
		// promise this; it is the best an unprivileged writer can do.
		f, oerr := os.Open(w.final)
		if oerr != nil {
			return oerr
		}
		err = f.Sync()
		f.Close()
	}
	return err
}

// Abort discards the message: it closes and removes the file, under its
// temporary name or, after a failed Commit, under its ID. After a
// successful Commit it does nothing, so `defer w.Abort()` is the usual
// pattern.
func (w *Writer) Abort() error {
	switch w.state {
	case wCommitted, wAborted:
		return nil
	}
	w.release()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	path := w.tmp
	if w.state == wRenamed {
		path = w.final
	}
	w.state = wAborted
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: abort: %w", w.id, err)
	}
	return nil
}

// writerBuf is a writer's 128 KiB of buffers, kept between messages:
// allocating them per message was most of cleanup's garbage.
type writerBuf struct {
	bw    *bufio.Writer
	chunk []byte
}

var writerBufs = sync.Pool{New: func() any {
	return &writerBuf{bw: bufio.NewWriterSize(nil, chunkSize), chunk: make([]byte, 0, chunkSize)}
}}

// release returns the buffers; the writer writes nothing after it.
func (w *Writer) release() {
	if w.buf == nil {
		return
	}
	w.buf.bw.Reset(nil)
	w.buf.chunk = w.chunk[:0]
	writerBufs.Put(w.buf)
	w.buf, w.bw, w.chunk = nil, nil, nil
}

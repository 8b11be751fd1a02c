// Package drop is the gate between local users and the mail queue: it
// writes messages into maildrop/, either directly (root, or the owner of
// the queue) or through the small set-group-ID postdrop program, and it
// holds the checks both paths apply (authorized_submit_users,
// local_login_sender_maps) so that pickup can apply them again.
//
// # Why a set-group-ID helper
//
// maildrop/ is mode 0730, owned by mail_owner with group setgid_group
// (Postfix's postdrop group): nobody else may even list it, and only that
// group may create files in it. There is no world-writable directory and
// no socket a local user could flood. sendmail itself is not privileged:
// it parses the command line, the configuration and the message, none of
// which should be trusted in a privileged process. When the caller is
// neither root nor the queue's owner, sendmail starts postdrop (installed
// mode 2755, group setgid_group) with a pipe on its standard input and
// output, and streams the envelope and content to it with the pkg/ipc
// frames described below. postdrop is the only code that runs with the
// group's privilege; it trusts nothing from sendmail:
//
//   - it takes the submitter's uid from getuid(), never from the input,
//     and records it as the "uid" envelope attribute; the file it creates
//     is owned by that uid, which pickup reads back with fstat;
//   - it applies authorized_submit_users and local_login_sender_maps
//     itself, before it creates a file;
//   - it accepts only known envelope fields with bounded, checked values
//     (no NUL or line break anywhere in the envelope), and
//     message_size_limit on the content;
//   - a configuration directory other than the default is honoured only
//     for root, for a process that is not set-group-ID, or when the
//     default main.cf lists it in alternate_config_directories or
//     multi_instance_directories (as Postfix's postdrop);
//   - it removes its temporary file on any error, on EOF before the end
//     request, and on SIGINT, SIGTERM, SIGHUP or SIGQUIT.
//
// The file becomes visible in maildrop/ only by queue.Writer.Commit's
// rename after its fsync, so pickup never sees a partial message, and
// sendmail exits 0 only after postdrop has answered "ok" for a committed
// file.
//
// # The postdrop conversation
//
//	postdrop → sendmail  hello {protocol, version, service=postdrop}
//	sendmail → postdrop  {req=open, sender, full_name, rewrite_context,
//	                      body_type, dsn_ret, dsn_envid, smtputf8,
//	                      trace (optional, "1" for sendmail -v)}
//	sendmail → postdrop  {req=rcpt, addr, notify}        (0..n)
//	sendmail → postdrop  {req=start}
//	postdrop → sendmail  {queue_id}   or a final {status, text}
//	sendmail → postdrop  {req=data, data}                (0..n)
//	sendmail → postdrop  {req=xrcpt, addr, notify}       (0..n, after data)
//	sendmail → postdrop  {req=end}
//	postdrop → sendmail  {status, text, queue_id}
//
// status is "ok", "noperm" (refused: exit EX_NOPERM), "temp" (exit
// EX_TEMPFAIL), "size" (message_size_limit: EX_UNAVAILABLE) or "bad"
// (malformed request: EX_SOFTWARE).
//
// # Security
//
// Everything in this package may run set-group-ID. It reads only main.cf
// (from a trusted directory, see above), the tables named by
// authorized_submit_users and local_login_sender_maps, and its standard
// input; it writes only one new file in maildrop/ (O_EXCL, mode 0644, so
// that pickup running as mail_owner can read it) and its answer on
// standard output. It executes nothing and follows no symlink it creates.
// The checks are repeated by pickup for files not owned by root or
// mail_owner, because a user owns the file postdrop created and could
// change it before pickup reads it.
package drop

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"postern/pkg/config"
	"postern/pkg/ipc"
	"postern/pkg/queue"
)

// Service is postdrop's name in the hello frame.
const Service = "postdrop"

// Envelope attribute names (queue.Envelope.Attrs) of a maildrop file.
const (
	AttrUID      = "uid"             // submitting uid, decimal
	AttrFullName = "full_name"       // sendmail -F, $NAME or the GECOS name
	AttrRewrite  = "rewrite_context" // "local" (default) or "remote" (-G)
	AttrTrace    = "trace"           // "1": report the first delivery attempt (-v)
)

// Reply statuses.
const (
	StatusOK     = "ok"
	StatusNoPerm = "noperm"
	StatusTemp   = "temp"
	StatusSize   = "size"
	StatusBad    = "bad"
)

// Refusal is a submission refused by the checks or by postdrop.
type Refusal struct {
	Status string
	Text   string
}

func (r *Refusal) Error() string { return r.Text }

// Limits of envelope fields accepted from an untrusted submitter.
const (
	maxAddr     = 1000
	maxFullName = 1000
	maxEnvID    = 100
	maxRcpts    = 100000
	chunkSize   = 32 << 10
)

// Submission is the envelope of a message submitted by a local user.
type Submission struct {
	Sender     string
	FullName   string
	Remote     bool // -G: remote rewrite context
	BodyType   string
	DSNRet     string
	DSNEnvID   string
	SMTPUTF8   bool
	Trace      bool              // -v: mail the sender a report of the first delivery attempt
	Recipients []queue.Recipient // from the command line; -t adds more after the content
}

// Sink receives one message: content, then extracted recipients, then
// Commit or Abort.
type Sink interface {
	io.Writer
	AddRecipient(r queue.Recipient) error
	// Commit makes the message durable in maildrop/ and returns its ID.
	Commit() (queue.ID, error)
	// Abort discards the message; after Commit it does nothing.
	Abort()
}

// Check validates a submission from an untrusted caller: bounded fields,
// no NUL or line breaks, known values only.
func (s *Submission) Check() error {
	bad := func(format string, args ...any) error {
		return &Refusal{Status: StatusBad, Text: fmt.Sprintf(format, args...)}
	}
	if !cleanField(s.Sender, maxAddr) {
		return bad("malformed sender")
	}
	if !cleanField(s.FullName, maxFullName) {
		return bad("malformed full name")
	}
	switch s.BodyType {
	case "", "7BIT", "8BITMIME":
	default:
		return bad("bad body type %q", s.BodyType)
	}
	switch s.DSNRet {
	case "", "FULL", "HDRS":
	default:
		return bad("bad DSN RET %q", s.DSNRet)
	}
	if len(s.DSNEnvID) > maxEnvID || !cleanField(s.DSNEnvID, maxEnvID) {
		return bad("bad DSN ENVID")
	}
	if len(s.Recipients) > maxRcpts {
		return bad("too many recipients")
	}
	for _, r := range s.Recipients {
		if err := checkRecipient(r); err != nil {
			return err
		}
	}
	return nil
}

func checkRecipient(r queue.Recipient) error {
	if !cleanField(r.Addr, maxAddr) || !cleanField(r.Notify, 100) || !cleanField(r.ORcpt, maxAddr) {
		return &Refusal{Status: StatusBad, Text: "malformed recipient"}
	}
	return nil
}

func cleanField(s string, max int) bool {
	return len(s) <= max && !strings.ContainsAny(s, "\x00\r\n")
}

// envelope builds the queue envelope of a maildrop file.
func (s *Submission) envelope(uid int) *queue.Envelope {
	attrs := map[string]string{AttrUID: strconv.Itoa(uid)}
	if s.FullName != "" {
		attrs[AttrFullName] = s.FullName
	}
	if s.Remote {
		attrs[AttrRewrite] = "remote"
	}
	if s.Trace {
		attrs[AttrTrace] = "1"
	}
	rcpts := make([]queue.Recipient, len(s.Recipients))
	for i, r := range s.Recipients {
		r.Status = queue.Pending
		rcpts[i] = r
	}
	return &queue.Envelope{
		Sender:     s.Sender,
		Arrival:    time.Now(),
		BodyType:   s.BodyType,
		SMTPUTF8:   s.SMTPUTF8,
		DSNRet:     s.DSNRet,
		DSNEnvID:   s.DSNEnvID,
		Attrs:      attrs,
		Recipients: rcpts,
	}
}

// Direct writes the message straight into maildrop/ of store: for root
// and the owner of the queue, who may write there without postdrop. The
// same checks as postdrop's are applied first.
func Direct(cfg *config.Config, store *queue.Store, uid int, s *Submission) (Sink, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if err := CheckSubmit(cfg, uid); err != nil {
		return nil, err
	}
	if err := CheckSender(cfg, uid, s.Sender); err != nil {
		return nil, err
	}
	w, err := store.CreatePerm(queue.Maildrop, 0o644)
	if err != nil {
		return nil, &Refusal{Status: StatusTemp, Text: err.Error()}
	}
	if err := w.Envelope(s.envelope(uid)); err != nil {
		w.Abort()
		return nil, &Refusal{Status: StatusTemp, Text: err.Error()}
	}
	return &directSink{w: w, limit: cfg.Size("message_size_limit"), rcpts: len(s.Recipients)}, nil
}

type directSink struct {
	w     *queue.Writer
	limit int64
	rcpts int
}

var errTooBig = errors.New("message file too big")

func (d *directSink) Write(p []byte) (int, error) {
	if d.limit > 0 && d.w.Size()+int64(len(p)) > d.limit {
		return 0, &Refusal{Status: StatusSize, Text: errTooBig.Error()}
	}
	n, err := d.w.Write(p)
	if err != nil {
		return n, &Refusal{Status: StatusTemp, Text: "error writing queue file: " + err.Error()}
	}
	return n, nil
}

func (d *directSink) AddRecipient(r queue.Recipient) error {
	if err := checkRecipient(r); err != nil {
		return err
	}
	r.Status = queue.Pending
	if err := d.w.AddRecipient(r); err != nil {
		return &Refusal{Status: StatusTemp, Text: "error writing queue file: " + err.Error()}
	}
	d.rcpts++
	return nil
}

func (d *directSink) Commit() (queue.ID, error) {
	if d.rcpts == 0 {
		d.w.Abort()
		return "", &Refusal{Status: StatusBad, Text: "no recipients"}
	}
	if err := d.w.Commit(); err != nil {
		d.w.Abort()
		return "", &Refusal{Status: StatusTemp, Text: "error writing queue file: " + err.Error()}
	}
	return d.w.ID(), nil
}

func (d *directSink) Abort() { d.w.Abort() }

// Protocol attribute names.
const (
	attrReq     = "req"
	attrSender  = "sender"
	attrName    = "full_name"
	attrContext = "rewrite_context"
	attrBody    = "body_type"
	attrRet     = "dsn_ret"
	attrEnvID   = "dsn_envid"
	attrUTF8    = "smtputf8"
	attrTrace   = "trace"
	attrAddr    = "addr"
	attrNotify  = "notify"
	attrData    = "data"
	attrQueueID = "queue_id"
	attrStatus  = "status"
	attrText    = "text"
)

// maxFrame bounds one postdrop frame: a data chunk plus framing.
const maxFrame = 2 * chunkSize

func ipcOptions() ipc.Options { return ipc.Options{MaxFrame: maxFrame, MaxAttrs: 64} }

func refusalFrom(a ipc.Attrs) error {
	st := a.Str(attrStatus)
	if st == StatusOK {
		return nil
	}
	if st == "" {
		return &Refusal{Status: StatusBad, Text: "malformed postdrop reply"}
	}
	return &Refusal{Status: st, Text: a.Str(attrText)}
}

func reply(c *ipc.Conn, status, text, id string) error {
	var a ipc.Attrs
	a.Add(attrStatus, status)
	a.Add(attrText, text)
	a.Add(attrQueueID, id)
	return c.Write(a)
}

// Package sendmail is Postern's sendmail(1): the Sendmail-compatible
// submission command, also run as mailq (-bp) and newaliases (-bi) by
// name, with Postfix's options and exit codes.
//
//	sendmail [options] [recipient ...]
//
// Modes: -bm (default) reads a message on standard input and queues it;
// -bs holds an SMTP dialogue on standard input and output; -bp lists the
// queue; -bi checks the alias sources; -q asks qmgr to retry the deferred
// queue and pickup to scan maildrop/; -bd and -bl run "postern start";
// -bh, -bH and -q<interval> do nothing.
//
// Message options: -t adds the recipients of the To:, Cc: and Bcc:
// headers (or, when the message has any, only those of Resent-To:,
// Resent-Cc: and Resent-Bcc:) to those of the command line and leaves the
// Bcc: and Resent-Bcc: headers out; -i and -oi: a line holding only "."
// does not end the input; -f and -r set the envelope sender ("<>" is the
// null sender), otherwise it is the caller's login name, which cleanup
// qualifies with @$myorigin; -F sets the full name (default $NAME, else
// the GECOS name) that cleanup may use in a From: header it adds; -N
// never, or success, delay, failure (DSN NOTIFY for every recipient); -R
// full or hdrs (DSN RET); -V envid; -B 7BIT or 8BITMIME; -G submits in
// the remote rewrite context; -O smtputf8=yes; -C names the
// configuration directory (or its main.cf), as MAIL_CONFIG does; -v
// given once in delivery mode asks for an email report of the first
// delivery attempt (recorded as the "trace" envelope attribute: qmgr
// mails the sender a "Mail Delivery Status Report" listing every
// recipient as delivered, delayed or failed), while more than one -v
// means verbose output instead (the queue ID is printed) and no report,
// as Postfix's "-v option plays double duty". Postfix's ignored options (-A, -L,
// -h, -e, -p, -c, -m, -U, -x, -o7, -o8, -om, ...) are ignored. -n, -X
// (VERP), -bv, -qR and -qI are refused with EX_USAGE. Each command-line
// recipient is parsed as an address list, so "Joe <joe@example.org>, ann"
// gives two.
//
// Input handling is Postfix's: CR LF and any run of CRs before LF become
// LF, leading "From " lines are dropped, the content is otherwise stored
// unchanged. The message goes into maildrop/ (package drop) and sendmail
// exits 0 only once that file and its name are on disk. That works while
// the daemons are stopped; pickup takes the file to cleanup when they run.
//
// Exit status (sysexits, as Postfix): 0 queued; 64 EX_USAGE bad command
// line or no recipients; 65 EX_DATAERR unreadable input or a recipient
// header longer than header_size_limit; 69 EX_UNAVAILABLE message larger
// than message_size_limit, postdrop not executable, queue not readable
// (mailq), mail system down (-q); 70 EX_SOFTWARE malformed request or
// reply; 71 EX_OSERR no login name for the uid; 74 EX_IOERR output error;
// 75 EX_TEMPFAIL queue file write error or unreadable main.cf; 77
// EX_NOPERM refused by authorized_submit_users, local_login_sender_maps,
// authorized_mailq_users or authorized_flush_users. newaliases exits 1
// when a source does not load, as postalias does.
//
// mailq prints Postfix's long-queue-ID format (heading, one block per
// message with '*' for active and '!' for hold, size, arrival time,
// sender and the recipients not yet delivered, then "-- N Kbytes in M
// Requests."), reading maildrop, active, incoming, deferred and hold in
// that order. Root and the owner of the queue read the queue files
// directly; others, once authorized_mailq_users admits them, get the same
// bytes from the showq service (public/showq, through the set-group-ID
// postdrop when public/ is closed to them; pkg/queuectl showq.go), and
// "Queue report unavailable - mail system is down" (69) when it is not
// running.
//
// Startup is kept small for the common "sendmail -t -i" from cron and
// PHP: main.cf is read (about 0.13 ms), no lookup table is opened unless
// authorized_submit_users or local_login_sender_maps is not the
// default, and no goroutine is started. Measured with mtabench sendmail
// (500 sequential "sendmail -t -i" as root, 2 KiB, a 2-vCPU VM, medians
// of 2-3 runs alternated with Postfix 3.7): Postfix 142 accepted/s, 6.0
// ms client CPU per call (sendmail plus postdrop); Postern 211/s and 3.4
// ms as built by "go build" (linked dynamically against libc because net
// and os/user use cgo), 264/s and 2.4 ms when built with CGO_ENABLED=0:
// the dynamic loader costs about 0.75 ms per call. The rest is the Go
// runtime start (about 0.8 ms for an empty program) and the queue
// file's fsyncs.
//
// # Security
//
// sendmail is not set-user or set-group ID and has no privilege of its
// own; everything it reads (command line, environment, main.cf named by
// -C, the message) comes from the caller, who can only hurt themselves.
// The privileged step is postdrop (package drop), which repeats every
// check that matters. Root and the owner of maildrop/ write the queue
// file directly, with the same checks. For -bp the caller outside
// setgid_group runs "postdrop showq" (pkg/queuectl showq.go): with the
// set-group-ID privilege it only reads main.cf from a trusted directory,
// applies authorized_mailq_users to the real uid, connects to
// public/showq and copies the listing to its standard output.
package sendmail

// Package queuectl is the admin's control of the queue: Postfix's
// postqueue(1) (flush, list), postsuper(1) (delete, hold, release,
// requeue) and postcat(1) (show one message), as `postern` subcommands:
//
//	postern [-c DIR] flush                          postqueue -f, sendmail -q
//	postern [-c DIR] queue [list] [-j]              postqueue -p (mailq), postqueue -j
//	postern [-c DIR] queue show [-b] [-e] [-h] ID...  postcat -q [-beh]
//	postern [-c DIR] queue delete  ID...|ALL|- [queue...]   postsuper -d
//	postern [-c DIR] queue hold    ID...|ALL|- [queue...]   postsuper -h
//	postern [-c DIR] queue release ID...|ALL|-              postsuper -H
//	postern [-c DIR] queue requeue ID...|ALL|- [queue...]   postsuper -r
//
// An argument "-" reads queue IDs from standard input, one a line, as
// postsuper does; ALL (upper case only) means every message of the
// queues named. Arguments that name a queue (incoming, active,
// deferred, hold, maildrop, corrupt) restrict the operation to those
// queues; queue names are never valid queue IDs, so the two cannot be
// confused. The default queues are postsuper's: delete from hold,
// incoming, active and deferred; hold from incoming, active and deferred;
// release from hold.
//
// # Output, logs and exit status
//
// Each subcommand writes to standard error as the Postfix program whose
// job it does, under that program's name, so scripts written for Postfix
// keep working: "postsuper: ID: removed", "postsuper: ID: placed on
// hold", "postsuper: ID: released from hold", "postsuper: ID: requeued",
// then "postsuper: Deleted: N messages" (or Placed on hold, Released from
// hold, Requeued); an ID that is not a queue ID gets "postsuper: warning:
// invalid mail queue id: X" and is skipped. The per-message lines go to
// the mail log too, as postsuper's do ("postern/postsuper[pid]: ID:
// removed"). postsuper exits 0 unless it dies; so do these, except that an
// operation failing for another reason than the message having gone
// (permission denied, I/O error) is reported as a warning and makes the
// exit status 1 (Postfix would die on the first such error).
//
// flush exits 69 (EX_UNAVAILABLE) with "postqueue: fatal: Cannot flush mail
// queue - mail system is down" when qmgr cannot be reached; list exits 69
// when the queue cannot be read ("Queue report unavailable - mail system
// is down" when a caller who is not root or the mail_owner cannot reach
// showq) and 74 on an output error; 77 (EX_NOPERM)
// when authorized_flush_users or authorized_mailq_users refuse the caller
// (root and the mail_owner are always allowed). show exits 1 with
// "postcat: fatal: open queue file ID: ..." for a missing message. Bad
// usage exits 64 for postqueue's jobs and 1 for postsuper's and
// postcat's, as those programs do.
//
// # Listing
//
// The list shows maildrop, active, incoming, deferred and hold, in that
// order (showq's), in mailq's format (WriteMailq, which `sendmail -bp`
// uses too), or with -j one JSON object per line with the members of
// postqueue -j in its order: queue_name, queue_id, arrival_time,
// message_size, forced_expire (always false: Postern has no forced
// expiry), sender, recipients (orig_address, address, and delay_reason
// when there is one). Only recipients still to be delivered are listed.
//
// The reasons come from the message's defer log (queue.Store.ReadDeferLog,
// defer/ID), to which qmgr appends each deferral of the last delivery
// attempt. As showq does, the recipients named in the log come first, in
// its order, then the others; in mailq's format a line "(reason)",
// right-aligned to column 78 (a longer reason starts at column 1), stands
// above each run of recipients with the same reason, and
// "(reason unavailable)" above recipients without one that follow some
// with one. Log records of recipients no longer pending are not shown. A
// log that cannot be read shows no reasons; the listing goes on. Delete
// removes the message's defer log with it.
//
// # Show
//
// show prints a message as postcat -q: "*** ENVELOPE RECORDS queue/ID ***",
// the envelope records with Postfix's record names (message_arrival_time,
// sender, named_attribute, dsn_original_recipient, dsn_notify_flags,
// original_recipient, recipient or done_recipient), "*** MESSAGE CONTENTS
// queue/ID ***", the header and body, "*** HEADER EXTRACTED queue/ID ***"
// with the recipients added after the content, and "*** MESSAGE FILE END
// queue/ID ***". -h shows the header only, -b the body only (from the
// first line that is neither a header nor a continuation), -e the
// envelope only; the default is all three. Records are read with
// queue.Walk, so a file in corrupt/ shows what it holds up to the damage.
// Postern has no message_size record, and a failed recipient is shown as
// done_recipient as Postfix shows it (Postfix too marks bounced
// recipients done).
//
// # Moving messages while qmgr runs
//
// Delete unlinks the file; it never recycles it through free/ as
// queue.Store.Remove does. qmgr keeps the file of a message in active/ open
// and writes recipient status bytes into it until the message is
// finished; a recycled file would be truncated and given to a new message,
// which those writes could corrupt. An unlinked file lives on, unnamed,
// until qmgr closes it. Hold renames the file to hold/; qmgr's writes still
// land in it (same inode), so recipients delivered meanwhile are not
// delivered again after release.
//
// qmgr does not know that the name went away. When it finishes such a
// message it tries to set the retry time and move it to deferred/, or to
// remove it, and logs a warning for each failed step, for example
// "warning: ID: set retry time: ID: set next attempt: chtimes ...: no
// such file or directory" and "warning: ID: move to deferred: ...".
// Delivery agents that open the file after it went away fail and the
// recipient is deferred (only in qmgr's memory). Nothing is lost or
// delivered twice; the log is noisy.
//
// Requeue moves a message from hold/ or deferred/ back into incoming/,
// where qmgr takes it as new: it resolves every recipient not yet done
// again (new transport, virtual or relay settings apply), keeping the
// done marks. Unlike Postfix's postsuper -r, the message does not go back
// through cleanup: its content and envelope are not rewritten. A message
// in active/ is not requeued (a warning says so): qmgr is working on it,
// and a second copy scheduled from incoming/ under the same ID could be
// delivered twice; once qmgr is done with it, it is in deferred/ and can
// be requeued, and if qmgr is not running, its start re-resolves
// everything in active/ anyway. After a requeue qmgr is woken ('I').
//
// Release moves a message from hold/ to deferred/ with its retry time set
// to now, then asks qmgr to flush the deferred queue ('F'), so the
// message is tried at once. If qmgr cannot be reached the message stays
// released and is tried when qmgr runs.
//
// # Security
//
// Listing and showing read queue files, which the queue directory's modes
// restrict to root and the mail_owner; authorized_mailq_users and
// authorized_flush_users are applied to other users as by sendmail.
// Other users' listings come from the showq daemon (showq.go), which runs
// as the mail_owner and answers anyone who reaches public/showq with the
// listing and nothing else: it reads one bounded request line naming the
// format, makes one pass over the queue, and drops a client that stalls
// longer than ipc_timeout. As with Postfix's showq, the ACL is the
// client's: whoever reaches the socket (root, setgid_group, or the
// set-group-ID postdrop after its own check) may list the queue.
// Delete, hold, release and requeue require root or the mail_owner (the
// owner of incoming/). Queue IDs from the command line or standard input
// are checked with queue.ValidID before they become file names, so no
// argument can name a path outside the queue.
package queuectl

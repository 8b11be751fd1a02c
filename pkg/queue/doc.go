// Package queue owns the queue directory: its layout, the queue file
// format, and the protocol that writes a queue file durably.
//
// # Directories
//
// Layout lists the directories under queue_directory with their modes and
// owners, as Postfix's postfix-files does; Ensure creates and repairs them.
// A message lives in exactly one queue directory at a time, in one file
// named by its queue ID, and moves between queues by rename (Move), never
// by copy. All queue directories must be on one file system.
//
// # Queue IDs
//
// A queue file's ID is the time of its creation in microseconds (9
// base-62 characters, fixed width, strictly increasing within a process)
// followed by the file's inode number in base 62 (1 to 11 characters), as
// Postfix's long queue IDs. No two files on one file system share an inode
// number while both exist, so the kernel settles collisions between
// processes; IDs sort lexically in creation order to the microsecond;
// they use only [0-9A-Za-z] and are 10 to 20 characters long. ValidID
// accepts 10 to 24 such characters. A file still being written has a
// temporary name ending in ".tmp", which is never a valid ID, so List and
// qmgr never see it.
//
// # File format, versions 1 and 2
//
// A queue file is a sequence of records. A record is a type byte, the
// length of its data in 7-bit groups (least significant group first, the
// high bit set on every byte but the last, at most 4 bytes, minimal), and
// the data:
//
//	record = type length data
//
// Record types:
//
//	type  name       data                                          max
//	'V'   version    "1" or "2" (decimal format version)           64 KiB
//	'T'   time       arrival time, decimal Unix nanoseconds        64 KiB
//	'S'   sender     envelope sender, "" for the null sender       64 KiB
//	'A'   attribute  name=value, a named envelope field            64 KiB
//	'U'   user attr  name=value, an entry of Envelope.Attrs        64 KiB
//	'R'   recipient  status byte, Addr NUL Orig NUL Notify NUL ORcpt 64 KiB
//	'M'   message    empty: the content segment starts             64 KiB
//	'C'   content    content bytes exactly as given                1 MiB
//	'X'   extracted  empty: the extracted segment starts           64 KiB
//	'E'   end        empty: the file is complete                   64 KiB
//
// The records come in this order and no other:
//
//	file      = version envelope content extracted end
//	version   = V
//	envelope  = T S *A *U *R
//	content   = M *C
//	extracted = X *U *R      ; *U only in version 2
//	end       = E            ; the last bytes of the file
//
// Version 2 adds one thing to version 1: 'U' records at the start of the
// extracted segment, sorted by name and unique there, each overriding the
// envelope's 'U' record of the same name (Envelope.Attrs holds the
// result). They carry what cleanup learns only after the content has been
// written, as Postfix's cleanup appends its REC_TYPE_FILT record after
// the content: a content filter set by a body_checks FILTER action. A
// writer names the lowest version the file needs: a file without such
// records is written as version 1, byte for byte as before, so readers
// that know only version 1 read it; Writer.ExtractedAttr makes the file
// version 2 (Commit rewrites the version record's data byte before the
// file is flushed and synced, so the file is never visible with the wrong
// version). Readers of version 2 read both.
//
// The envelope 'U' names in use: "filter", the content filter
// transport:nexthop (content_filter, or a header_checks FILTER action)
// that qmgr sends every recipient to instead of the resolved
// destination; "trace" = "1", a delivery report of the first attempt
// asked for with sendmail -v (pkg/qmgr trace.go).
//
// 'A' names, each at most once, with a non-empty value: client_name,
// client_address, helo_name, protocol_name, sasl_username, body_type,
// smtputf8 (value "1"), dsn_ret, dsn_envid. An absent 'A' record means
// the empty value (false for smtputf8). 'U' records come sorted by name,
// names unique, non-empty, without '=' or NUL. The recipient fields
// contain no NUL.
//
// The writer emits content records of 64 KiB (the last one shorter); a
// reader accepts any size up to 1 MiB. Content is stored exactly as it was
// given: this package changes no line endings and adds nothing.
//
// The recipient status byte is the first data byte of an 'R' record:
//
//	'-'  0x2d  Pending    not yet delivered
//	'D'  0x44  Delivered  done
//	'F'  0x46  Failed     done, failed permanently; a bounce is owed
//	'W'  0x57  Warned     not yet delivered; its delay warning was sent
//	'B'  0x42  Bounced    done, failed permanently; its bounce was queued
//
// qmgr turns Pending into Warned once it has queued the delay warning
// (delay_warning_time) that reports the recipient, so that the warning is
// sent once per message however often the message is retried, and
// survives restarts as the rest of the file does. Postfix keeps the same
// fact in a fixed-width warning-time record that its qmgr overwrites;
// rewriting the status byte keeps this format's rule that nothing else
// changes in place. Likewise qmgr turns Failed into Bounced once the
// bounce reporting the recipient is queued while other recipients are
// still deferred (Postfix flushes its bounce log after every attempt), so
// the final bounce does not report it again. 'W' and 'B' were added within
// version 1: files that never had them are unchanged, and a reader older
// than them takes such a file for corrupt.
//
// That byte is the only byte of a queue file that ever changes after
// Commit (Message.SetStatus, one pwrite of one byte). Everything else is
// written once. Status bytes may change in both segments.
//
// Before Commit, Writer.SetEnvelopeStatus may set an envelope recipient's
// status byte too: a body_checks REDIRECT, found after the envelope was
// written, marks every envelope recipient Delivered (discarded on
// purpose: nothing is logged, nothing is owed) and cleanup adds the
// redirect address to the extracted segment. The file is still under its
// temporary name then, so crash safety is that of any write before
// Commit.
//
// A reader rejects, with an error wrapping ErrCorrupt: a first record that
// is not 'V' or a version other than 1 or 2, any record type or attribute name
// not listed, records out of order, a length over the limit of its type,
// a non-minimal length, an unknown status byte, a record cut short by the
// end of the file, and above all a file that does not end with an 'E'
// record exactly at its last byte. A reader never delivers an incomplete
// file. A new record type, attribute name or field layout needs a new
// version number; readers refuse versions they do not know.
//
// # Durability
//
// Writer.Commit, the only way a message enters a queue:
//
//  1. The file was created with O_EXCL under a temporary name in the
//     target directory and written through a buffer.
//  2. Append 'E', flush the buffer, fsync the file. Now the data and the
//     inode are on disk, under the temporary name.
//  3. rename(2) the temporary name to the queue ID. The rename is atomic:
//     the ID names either nothing or the complete, fsynced file.
//  4. fsync the directory, so the new name survives a crash. POSIX makes
//     no promise about a directory entry until its directory is synced.
//  5. Return nil. Only now may cleanup answer 250 or sendmail exit 0.
//
// A crash at any point leaves one of these states, none of which delivers
// a partial message or loses an acknowledged one:
//
//   - before 2 completes: a temporary file, possibly short or with a
//     zero-filled tail. List and qmgr never look at temporary names;
//     CleanTemp removes them. The client got no 250 and will retry.
//   - between 2 and 4 (rename not yet durable): the complete file under
//     the temporary name (as above), or already under the ID, complete
//     and with its END record; either way the client got no 250, so at
//     worst the message is delivered and also retried: a duplicate, never
//     a loss.
//   - after 4: the complete file under its ID. Acknowledged and safe.
//
// Even if a file under its ID were damaged by the storage (a truncated or
// zero-filled tail), the reader's strict grammar and the mandatory final
// END record turn it into ErrCorrupt, and qmgr moves it to corrupt/ rather
// than deliver a part of it.
//
// A recipient is marked done by rewriting one byte in place and fsyncing
// (Message.SetStatus, Message.Sync). One byte lies within one disk sector,
// which storage writes whole, so a crash leaves the old or the new value:
// a recipient is re-delivered at most, never lost. Moves and removals are
// not synced: a lost Move leaves the complete file in its previous queue,
// which recovery scans; a lost Remove leaves a file whose recipients are
// all marked done, which qmgr removes again.
//
// Postfix fsyncs the queue file and never the directory. Its files get
// their final name right after creation, long before the fsync, and on
// ext4 and XFS the fsync of a new file also commits the journal
// transaction that created its directory entry. That relies on the
// journal, not on POSIX. Our rename comes after the fsync, so without a
// directory fsync the rename could be lost: the message would survive only
// under its temporary name and be cleaned away after having been
// acknowledged. Hence step 4.
//
// Group commit: a directory fsync costs about as much as a file fsync,
// and with many concurrent sessions most commits would wait for it. Commits
// in one directory therefore share directory fsyncs (SyncGroup, the
// default): a commit returns only after a directory fsync that started
// after its rename completed, but one fsync serves every commit that
// renamed while the previous one ran. SyncEach does one directory fsync
// per commit and SyncFileOnly none (Postfix's choice), for measurement.
// If an fsync of a directory fails, every commit waiting for it fails:
// after a failed fsync the kernel may have forgotten the dirty state, so
// no later success vouches for it.
//
// Measured with BenchmarkCommit (4 KiB messages, each writer committing
// in a loop; a 2-vCPU VM, ext4 on a virtio disk shared with other jobs),
// commits per second, median of 4 to 6 runs (single runs varied by ±30%,
// and by up to 8× when other jobs hit the disk, so only the ratios mean
// much):
//
//	                 1 writer   20 writers   dir fsyncs per commit, 20 writers
//	SyncFileOnly       2000       3450         0
//	SyncEach           1300       2900         1
//	SyncGroup          1300       3200         0.23-0.38
//
// With one writer the directory fsync costs about a third of the
// throughput, and grouping cannot help. With 20 writers three to four
// commits share each directory fsync, and group commit comes within about
// 10% of Postfix's file-only scheme and about 10% above one directory
// fsync per commit. The file fsyncs, one per message and not shareable,
// are what remains. We keep SyncGroup: the directory fsync costs a
// fraction of a millisecond per batch of messages, and buys that an
// acknowledged message survives a crash on any POSIX file system, not only
// on those whose journal happens to commit the rename with the file.
//
// sendmail writing into maildrop/ (mode 0730) may create files there but
// not read the directory, so it cannot open the directory to fsync it.
// It fsyncs the renamed file again instead, which on journaling file
// systems commits the rename; POSIX does not promise this.
//
// # Security
//
// The files in maildrop/ are written by local users through sendmail, so
// the reader treats every queue file as untrusted: lengths are bounded by
// record type, the grammar is strict, a parse never panics (FuzzOpen) and
// never reads more than the file holds. OpenFile refuses symlinks and
// anything but a regular file. Create uses O_EXCL in the target directory
// and sets the file mode explicitly (0600, or 0644 for maildrop/ as
// Postfix's postdrop). Layout never grants write access to others; only
// maildrop/ is group-writable, for setgid_group. This package changes no
// privileges; Ensure sets owners only when running as root.
package queue

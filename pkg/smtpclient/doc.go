// Package smtpclient is Postern's smtp(8) and lmtp(8) delivery agent: one
// program that master runs as "smtp" (also for the "relay" service) or as
// "lmtp". qmgr sends it delivery requests over pkg/deliver; for each it
// reads the message from the queue file, delivers it to the request's next
// hop and answers one result per recipient, logging each recipient's
// "to=<...>, relay=..., delay=..., delays=a/b/c/d, dsn=..., status=..."
// line.
//
// # Where mail goes
//
// The next hop comes in the request as qmgr resolved it (pkg/resolve:
// relayhost, the sender's sender_dependent_relayhost_maps entry, a
// transport_maps next hop, or the recipient domain); the agent looks
// nothing up by sender to change it, so qmgr's destination queue (and its
// dead-destination state) is the real next hop, as with Postfix's
// trivial-rewrite. SMTP: "[host]:port" and "[host]" name one host
// with no MX lookup; "host:port" and "host" look up MX records
// (pkg/dnsresolve: preference order, equal preferences in random order,
// A/AAAA when there is no MX, inet_protocols). A null MX (RFC 7505)
// bounces at once with 5.1.10. A list of next hops ("[a]:587, [b]:587")
// is tried in order. When every server of the destination is unreachable
// or kept recipients back (below), smtp_fallback_relay is tried. LMTP: "unix:/path" (relative to queue_directory),
// "inet:host:port", "host:port", "[host]:port"; never MX.
//
// Servers are tried in order (at most smtp_mx_address_limit addresses and
// smtp_mx_session_limit sessions) while the trouble is with the
// connection: refused or timed-out connects, a 4xx (or, with
// smtp_skip_5xx_greeting, 5xx) greeting, a failed EHLO, TLS or AUTH, or
// a connection lost before the message content. A 4xx reply about the
// message (to MAIL FROM: all recipients; to RCPT TO: that recipient; to
// DATA or the end of data: the recipients it concerns) from any server but
// the final one keeps those recipients for the next server, as Postfix's
// smtp_trouble.c does; the final server (the last address of the last
// next hop, smtp_fallback_relay included, or the one that reaches
// smtp_mx_session_limit) defers them with its reply. A 5xx reply
// bounces at once. When nothing works the last failure is every pending
// recipient's result, worded as Postfix words it ("connect to
// host[addr]:25: Connection refused", "host h[a] said: 550 5.1.1 ... (in
// reply to RCPT TO command)", "lost connection with h[a] while sending
// message body", "conversation with h[a] timed out while ..."). Each
// server left behind is logged at level info as Postfix logs it: a failed
// connection without a queue ID ("connect to h[a]:25: Connection
// refused"), other trouble and kept replies with one ("ID: lost connection
// with h[a] while ...", "ID: host h[a] said: 450 ... (in reply to RCPT TO
// command)"). A result that a server's reply decided carries that
// server's name and the reply (deliver.Result RemoteMTA and Diagnostic),
// which qmgr puts in delivery status notifications as "Remote-MTA: dns;
// h" and "Diagnostic-Code: smtp; 550 5.1.1 ...".
//
// # Protocol
//
// EHLO (LHLO for LMTP; HELO when EHLO is refused), STARTTLS by
// smtp_tls_security_level (none, may, encrypt, verify, secure; dane is
// may; may falls back to plaintext when the handshake fails; verify
// matches smtp_tls_verify_cert_match, by default the server's host name,
// and secure smtp_tls_secure_cert_match, by default the next-hop domain
// and its subdomains, against smtp_tls_CAfile/CApath or the system roots),
// smtp_tls_wrappermode for port 465, SNI only as smtp_tls_servername asks
// (none by default, as Postfix), then SASL AUTH PLAIN or LOGIN with credentials
// from smtp_sasl_password_maps (looked up by sender with
// smtp_sender_dependent_authentication, then by server host name, then by
// the next hop as written), subject to smtp_sasl_security_options
// (smtp_sasl_tls_security_options over TLS; "noplaintext" forbids both
// mechanisms, as with Postfix and Cyrus). MAIL FROM carries SIZE,
// BODY=8BITMIME, SMTPUTF8, RET and ENVID as the server supports them, RCPT
// TO carries NOTIFY and ORCPT. With PIPELINING, MAIL, every RCPT and DATA
// go in one write. Content is sent with CRLF line ends and dot-stuffing; an
// 8BITMIME message to a server without 8BITMIME is downgraded to
// quoted-printable part by part (go-message); a message that needs
// SMTPUTF8 (non-ASCII addresses) to a server without it bounces with
// 5.6.7; one larger than the server's SIZE bounces with 5.3.4. LMTP reads
// one reply per accepted recipient after the end of data (RFC 2033). Each
// stage has Postfix's time limit (smtp_connect_timeout, smtp_helo_timeout,
// smtp_mail_timeout, smtp_rcpt_timeout, smtp_data_init_timeout,
// smtp_data_xfer_timeout per write, smtp_data_done_timeout,
// smtp_rset_timeout, smtp_quit_timeout, smtp_starttls_timeout); the lmtp
// program reads the lmtp_ forms that Postern registers and the smtp_ forms
// otherwise.
//
// # Connection reuse
//
// After a delivery the session is kept in a per-process cache keyed by
// transport and next hop (and sender, with sender-dependent
// authentication) for smtp_connection_cache_time_limit, up to
// smtp_connection_reuse_time_limit of age and
// smtp_connection_reuse_count_limit uses. A request to the same next hop
// takes it and starts with RSET (pipelined with MAIL FROM when the server
// offers PIPELINING, so reuse costs no round trip); a cached session
// that fails before the content is discarded and another server or a new
// connection is tried. Log lines of a reused session carry conn_use=N. A
// cached session is never the final server: when its server keeps
// recipients back the destination's other servers follow. Sessions are
// cached after every delivery, not only on demand: Postfix caches only
// for destinations with a backlog (qmgr's DEL_REQ_FLAG_CONN_LOAD/STORE,
// smtp_connection_cache_on_demand) or listed in
// smtp_connection_cache_destinations; Postern's qmgr sends no such flag,
// and an idle cached session costs only a descriptor for
// smtp_connection_cache_time_limit (2s).
//
// # Security
//
// The agent runs as mail_owner (unprivileged). It trusts qmgr, the queue
// files and main.cf; it does not trust servers or DNS answers. Replies are
// bounded in size (4 KiB lines, 200 lines) and time, logged with
// non-printable bytes replaced, and never interpreted beyond their codes.
// TLS at levels none, may and encrypt authenticates nobody; verify
// authenticates the MX host name, which comes from unauthenticated DNS, so
// only secure (or verify with a [host] next hop) protects against a
// forged MX. SASL passwords are sent only after the policy allows a
// plaintext mechanism (for the default "noplaintext" never) and are not
// logged. The agent opens queue files read-only and writes nothing to
// disk.
package smtpclient

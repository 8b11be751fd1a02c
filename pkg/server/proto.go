package server

// The master↔worker contract. Both ends import these names: pkg/master
// when it starts a worker, the skeleton (Main) when it takes over. Like
// Postfix's master_proto.h, this file is the whole protocol; change both
// ends together.
//
// A worker is started by exec with:
//
//	argv   <command> -c DIR -n SERVICE -t TYPE [-o name=value ...] [args ...]
//	fd 0-2 /dev/null (the master's own stdio when it runs in the foreground)
//	fd 3   ListenFD: the service's listening socket, opened by the master
//	fd 4   StatusFD: the worker's end of a stream socketpair
//	fd 5-  further listeners of the same service, if any (MoreListenFD)
//	cwd    queue_directory
//	env    import_environment from main.cf plus the Env* variables below
//
// One worker process serves one master.cf service. It accepts up to
// maxproc sessions at a time, each in its own goroutine; master.cf's
// maxproc column bounds concurrency, not the number of processes. A
// second worker of the same service exists only while an old one drains
// after a reload or a retirement notice.
const (
	// ListenFD is the inherited listener. The master keeps its own copy
	// open across reloads and worker restarts, so clients queue in the
	// kernel's backlog while no worker accepts, and a replacement worker
	// takes over the very same socket. Closing the worker's copy stops the
	// worker accepting without affecting the socket.
	ListenFD = 3

	// StatusFD is the status socket. The worker reads it only to see EOF:
	// the master closes its end when it is reloading, removing the service
	// or exiting, and EOF tells the worker to stop accepting, let its
	// sessions finish, and exit. A master that dies also closes it, so
	// workers never outlive their master by more than their sessions. The
	// worker writes the one-byte Status* notices below.
	StatusFD = 4

	// MoreListenFD is the first of the further listeners a service has
	// when its bare port is opened on several inet_interfaces addresses
	// ("127.0.0.1, ::1"). They all belong to one worker and share its
	// MaxProc bound.
	MoreListenFD = 5
)

// Notices a worker writes on StatusFD. Unknown bytes are ignored, so
// either end may add notices later.
const (
	// StatusUsed is sent once per process, after the first session or
	// trigger. The master sends "wakeup ...?" (wake only if used)
	// triggers only once a service has been used, and throttles a worker
	// that dies young only when it has never been used (see pkg/master).
	StatusUsed = 'U'

	// StatusRetiring is sent when the worker stops accepting of its own
	// accord (max_use or max_idle reached). The master starts a
	// replacement at once on the same listener, so clients never wait
	// while the old worker finishes its sessions.
	StatusRetiring = 'R'
)

// Environment variables set by the master.
const (
	// EnvListen names the inherited listeners, separated by spaces:
	// "inet:127.0.0.1:25", "unix:/var/spool/postern/private/qmgr". The
	// first is at ListenFD, the others from MoreListenFD on. Its presence
	// is how the skeleton knows it was started by a master; without it
	// the worker refuses to run.
	EnvListen = "POSTERN_LISTEN"

	// EnvGeneration is the master's configuration generation: 1 at
	// start, plus one per reload. Logged by workers in verbose mode, so
	// a line can be tied to a configuration.
	EnvGeneration = "POSTERN_GENERATION"

	// EnvMaxProc is the service's session limit: master.cf's maxproc,
	// with "-" resolved to default_process_limit. "0" means unlimited.
	EnvMaxProc = "POSTERN_MAXPROC"

	// EnvUnpriv is master.cf's unpriv column, "y" or "n". With "y" the
	// worker must not run as root: the master starts it as mail_owner,
	// and the skeleton refuses to serve if it finds itself root anyway.
	EnvUnpriv = "POSTERN_UNPRIV"

	// EnvServiceType repeats -t for tools that look at a process's
	// environment.
	EnvServiceType = "POSTERN_SERVICE_TYPE"
)

// Exit codes of a worker. The master restarts a worker whatever its exit
// status; a non-zero status is logged as a warning, and one soon after
// start of a worker that never served throttles the service for
// service_throttle_time.
const (
	// ExitOK: a graceful stop (signal, master gone, reload, max_use,
	// max_idle).
	ExitOK = 0
	// ExitFatal: a fatal error, logged as "fatal: ..." before exiting.
	ExitFatal = 1
)

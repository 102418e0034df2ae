//! oxinetd: an xinetd-style superserver configured in TOML.
//!
//! # The model
//!
//! oxinetd binds one socket per enabled service and waits on all of them in one epoll
//! loop. What happens when a socket becomes ready depends on two attributes:
//!
//! - `socket_type = "stream"`, `wait = false`: the loop accepts the connection and
//!   starts one server per connection, with the connection on fds 0, 1 and 2.
//! - `wait = true` (stream or dgram): the server is handed the listening (or bound UDP)
//!   socket itself, and the loop stops watching that socket until the server exits.
//!   Then it watches again; datagrams or connections still queued start a new server.
//!   A server that exits at once leaving its queue untouched is restarted only after a
//!   growing pause, never in a hot loop.
//! - `type = "INTERNAL"`: echo, discard, daytime, time and chargen are served by the
//!   loop itself, non-blocking, without a fork.
//! - `socket_path`: the same for a Unix-domain socket (`stream`, `seqpacket` or
//!   `dgram`), exec'd servers only; the peer is its `SO_PEERCRED` credentials
//!   (`PROTO=IPC`, `IPCREMOTEEUID`...) instead of an address, and `per_source` counts
//!   uids. The socket file is oxinetd's while the service lives: bound under a name of
//!   its own and renamed into place, removed with the service.
//!
//! A server gets exactly fds 0-2, a process group of its own (a session of its own only
//! with `setsid = true`: each session is a scheduler autogroup the daemon competes
//! with), the configured limits, umask and nice value, the configured identity
//! (setgroups, setgid, setuid, in that order), the working directory `/` (or its `cwd`),
//! `PR_SET_NO_NEW_PRIVS` if asked, default signal dispositions and an empty signal mask
//! (whatever oxinetd itself inherited), and an environment made at load time plus the
//! connection's variables (`REMOTE_ADDR`, `TCPREMOTEIP`...); with `listen_fds` it gets
//! the socket on fd 3 instead, as systemd hands one over (stdin `/dev/null`,
//! `LISTEN_PID`...). Listeners systemd hands oxinetd itself (`LISTEN_FDS`) serve the
//! services they match (`daemon::inherited`). A server that runs as root is refused
//! when a file that decides it (the config files, the include folder, the binary) could
//! be written by anyone else (`config::trust`).
//!
//! Every line oxinetd writes (stderr, log files, syslog, `--check`) is escaped in one
//! place (`logging::escape`): no name from a file or word from a peer forges a line.
//!
//! Every accepted connection is admitted or refused in the parent before anything runs
//! (`daemon::admission::decide`, which documents the order): the sensors' deny list,
//! `only_from`/`no_access`, `access_times`, `max_load`, then the limits `instances`,
//! `per_source`, `max_servers` and `cps`. A
//! refused connection gets `banner_fail` and is closed: one accept, one close, one log
//! line. When a rule needs the peer's host name, or the service wants its ident (RFC
//! 1413) user, the connection waits in the parent while a lookup thread asks; the loop
//! goes on serving everyone else. Services the daemon serves itself, without a process,
//! are the internal ones, `redirect` relays, SENSOR traps and the tcpmux request line.
//!
//! # The layers
//!
//! - `config` is pure: TOML text to validated `ServiceSpec`s, with every error located
//!   by file, line, service and key. It asks a `Host` about users and ports and never
//!   touches the network. `daemon::reload::plan` is pure too, and so are the decisions:
//!   `access` (who may connect), `limits` (how many, how fast, the deny list),
//!   `tcpmux` (the RFC 1078 request line) and `daemon::admission` (every check on a
//!   connection, in order, from values the daemon gathers: the time, the load, the
//!   local minute, the counts). `status` is what `oxinetd status` shows (its JSON and
//!   its table), filled by the daemon's `control` room.
//! - `logging` writes the daemon's own lines to stderr and a service's lines to its
//!   `log_type` (a file with size limits, or syslog); the loop's lines for stderr and
//!   files leave together, one write per loop turn.
//! - `daemon` is the imperative shell, in rooms: each piece of state has one owner
//!   module with a small API, and no room imports another's handlers. `slab` gives
//!   typed generational keys (`ServiceKey`, `SessionKey`, `ParkedKey`), `poller` the
//!   epoll set in one `Token` enum; `services` owns the listeners and the service
//!   lifecycle (add, update, adjust, rebind, remove) with `rpcbind`; `children`,
//!   `signals`, `timers` and `sessions` own what they are named for; `incoming` is a
//!   connection in flight (`Incoming`), parked or not. The loop's handlers are named for
//!   events (`accept`, `parking`, `servers`, `datagrams`, `on_session`): they gather
//!   inputs, call the pure layers and move a connection from one room to the next.
//! - `sys` wraps the system calls nothing else wraps in small safe functions. The crate
//!   denies `unsafe_code`; `sys` and `spawn` alone allow it.
//! - `spawn` turns a connection into a running server with `clone(CLONE_VM |
//!   CLONE_VFORK | CLONE_FILES)`: no page tables copied, and the child's first call
//!   copies only the fds up to the connection, so 1,000 listeners cost a spawn nothing.
//!   Only `spawn::child` runs after the clone, and it only makes syscalls on data
//!   prepared at load time.
//!
//! # Invariants
//!
//! - Every fd oxinetd opens is close-on-exec; fds 0-2 are always open, so a connection
//!   is never one of them.
//! - The loop never blocks: sockets are non-blocking and every wait is an epoll wait.
//!   DNS and ident run on helper threads (`daemon::lookup`), started only when a service
//!   needs them; they block every signal and touch nothing the spawner uses. RPC
//!   registration is the one exception: a bounded (≤ 1 s) exchange with rpcbind when an
//!   RPC service starts or stops.
//! - A reload never drops a live connection: unchanged services keep their sockets, and
//!   running servers are never touched.

#![deny(unsafe_code)]

pub mod access;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod import;
pub mod internal;
pub mod limits;
pub mod logging;
pub mod notify;
pub mod peer;
pub mod process;
pub mod rpc;
#[allow(unsafe_code)]
pub mod spawn;
pub mod status;
#[allow(unsafe_code)]
pub mod sys;
pub mod system;
pub mod tcpmux;

//! Starts a server on a socket: `clone(CLONE_VM | CLONE_VFORK | CLONE_FILES)`, then
//! `child::run`.
//!
//! All the work is done when a service is loaded (`Prepared::new`): C strings, pointer
//! arrays, credentials and limits. Per connection the parent only writes the
//! connection's variables into a reused buffer. Sharing memory instead of copying page
//! tables, and sharing the fd table until the child makes its own from the fds below
//! the connection (see `Spawner::spawn`), keeps the cost of a spawn flat however large
//! the daemon grows: 1,000 listeners are neither copied nor closed per connection.

mod child;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_char, c_int};
use nix::errno::Errno;
use nix::unistd::Pid;

use crate::config::spec::{ExecSpec, Limit, Resource};
use crate::peer;

#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = c_int;

pub(crate) struct Credentials {
    groups: Vec<libc::gid_t>,
    /// `groups` sorted and without repeats, as the kernel reports a process's groups.
    group_set: Vec<libc::gid_t>,
    gid: libc::gid_t,
    uid: libc::uid_t,
}

/// An exec'd service in the form the child consumes.
pub struct Prepared {
    path: CString,
    /// Owns the strings `argv` points into.
    _argv_strings: Vec<CString>,
    argv: Vec<*const c_char>,
    environment: Rc<Environment>,
    credentials: Option<Credentials>,
    rlimits: Vec<(RlimitResource, libc::rlimit)>,
    priority: Option<c_int>,
    umask: Option<libc::mode_t>,
    /// `/` unless the service's `cwd` says.
    cwd: CString,
    no_new_privs: bool,
    /// `listen_fds`: the socket goes on fd 3 (stdin `/dev/null`, stdout and stderr the
    /// daemon's), and the environment holds `LISTEN_FDS=1`, `LISTEN_FDNAMES` and, written
    /// by the child, `LISTEN_PID`.
    listen_fds: bool,
    /// A session of its own (`setsid`) rather than only a process group (`setpgid`).
    setsid: bool,
}

impl Prepared {
    pub fn new(exec: &ExecSpec) -> Result<Prepared, String> {
        let c_string = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| "a NUL byte in server, server_args or env".to_string())
        };
        let argv_strings = exec
            .argv
            .iter()
            .map(|arg| c_string(arg.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let argv = argv_strings
            .iter()
            .map(|arg| arg.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Ok(Prepared {
            path: c_string(exec.server.as_os_str().as_bytes())?,
            _argv_strings: argv_strings,
            argv,
            environment: match &exec.listen_fds {
                None => Environment::shared(&exec.environment)?,
                Some(name) => {
                    Environment::shared(&socket_activation_environment(&exec.environment, name))?
                }
            },
            credentials: exec.identity.as_ref().map(|identity| {
                let mut group_set = identity.groups.clone();
                group_set.sort_unstable();
                group_set.dedup();
                Credentials {
                    groups: identity.groups.clone(),
                    group_set,
                    gid: identity.gid,
                    uid: identity.uid,
                }
            }),
            rlimits: exec
                .rlimits
                .iter()
                .map(|&(resource, limit)| rlimit(resource, limit))
                .collect(),
            priority: exec.nice.map(|nice| (own_priority() + nice).clamp(-20, 19)),
            umask: exec.umask.map(|mask| mask as libc::mode_t),
            cwd: CString::new(exec.cwd.as_os_str().as_bytes())
                .map_err(|_| "a NUL byte in cwd".to_string())?,
            no_new_privs: exec.no_new_privs,
            listen_fds: exec.listen_fds.is_some(),
            setsid: exec.setsid,
        })
    }
}

/// A `listen_fds` server's fixed environment: the service's, without any `LISTEN_*` of
/// its `env`, plus `LISTEN_FDS=1` and `LISTEN_FDNAMES=name`. `LISTEN_PID` comes per
/// spawn (`Spawner::listen_pid`).
fn socket_activation_environment(entries: &[Vec<u8>], name: &str) -> Vec<Vec<u8>> {
    let mut environment: Vec<Vec<u8>> = entries
        .iter()
        .filter(|entry| !entry.starts_with(b"LISTEN_"))
        .cloned()
        .collect();
    environment.push(b"LISTEN_FDS=1".to_vec());
    environment.push(format!("LISTEN_FDNAMES={name}").into_bytes());
    environment
}

/// `LISTEN_PID=` and room for a pid's digits and the NUL (pids fit in 10 digits).
const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";
pub(crate) const LISTEN_PID_SIZE: usize = LISTEN_PID_PREFIX.len() + 10 + 1;

/// Writes `pid`'s digits and a NUL after the `LISTEN_PID=` prefix, in place: no
/// allocation, no formatting, no panic (the child calls it between clone and exec).
fn write_listen_pid(buffer: &mut [u8; LISTEN_PID_SIZE], pid: u32) {
    let mut digits = [0u8; 10];
    let mut count = 0;
    let mut rest = pid;
    for digit in digits.iter_mut() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
        count += 1;
        if rest == 0 {
            break;
        }
    }
    let (_, value) = buffer.split_at_mut(LISTEN_PID_PREFIX.len());
    for (to, from) in value.iter_mut().zip(digits[..count].iter().rev()) {
        *to = *from;
    }
    if let Some(end) = value.get_mut(count) {
        *end = 0;
    }
}

/// A service's fixed environment: its `NAME=value` strings in one buffer, and pointers
/// into it. Services with the same environment share one (most have the daemon's own
/// environment plus the same user's login variables), so 1,000 services do not hold
/// 1,000 copies.
struct Environment {
    /// NUL-terminated strings, one after the other.
    strings: Box<[u8]>,
    /// Where each string starts in `strings`; no null terminator (the spawner appends
    /// the connection's variables and then one).
    pointers: Box<[*const c_char]>,
}

/// Environments in use by some `Prepared`, by a hash of their strings.
#[derive(Default)]
struct Environments {
    by_hash: HashMap<u64, Vec<Weak<Environment>>>,
    /// Forget dead entries when there are this many hashes.
    sweep_at: usize,
}

thread_local! {
    /// The daemon prepares services on its one thread. An entry dies with its last
    /// `Prepared`; dead ones are swept whenever the table has doubled.
    static ENVIRONMENTS: RefCell<Environments> = RefCell::new(Environments::default());
}

impl Environment {
    /// The environment with these entries, shared with any service that already has it.
    fn shared(entries: &[Vec<u8>]) -> Result<Rc<Environment>, String> {
        let mut strings = Vec::with_capacity(entries.iter().map(|e| e.len() + 1).sum());
        for entry in entries {
            if entry.contains(&0) {
                return Err("a NUL byte in server, server_args or env".to_string());
            }
            strings.extend_from_slice(entry);
            strings.push(0);
        }
        let mut hasher = DefaultHasher::new();
        strings.hash(&mut hasher);
        let key = hasher.finish();
        ENVIRONMENTS.with_borrow_mut(|environments| {
            let same_hash = environments.by_hash.entry(key).or_default();
            same_hash.retain(|weak| weak.strong_count() > 0);
            if let Some(existing) = same_hash
                .iter()
                .filter_map(Weak::upgrade)
                .find(|existing| *existing.strings == *strings)
            {
                return Ok(existing);
            }
            let strings = strings.into_boxed_slice();
            let mut pointers = Vec::with_capacity(entries.len());
            let mut start = 0;
            for entry in entries {
                // The boxed slice never moves or changes, so the pointers stay valid as
                // long as the Environment lives.
                pointers.push(strings[start..].as_ptr().cast::<c_char>());
                start += entry.len() + 1;
            }
            let environment = Rc::new(Environment {
                strings,
                pointers: pointers.into_boxed_slice(),
            });
            same_hash.push(Rc::downgrade(&environment));
            if environments.by_hash.len() > environments.sweep_at {
                environments.by_hash.retain(|_, same| {
                    same.retain(|weak| weak.strong_count() > 0);
                    !same.is_empty()
                });
                environments.sweep_at = (2 * environments.by_hash.len()).max(16);
            }
            Ok(environment)
        })
    }
}

fn rlimit(resource: Resource, limit: Limit) -> (RlimitResource, libc::rlimit) {
    let resource = match resource {
        Resource::As => libc::RLIMIT_AS,
        Resource::Cpu => libc::RLIMIT_CPU,
        Resource::Data => libc::RLIMIT_DATA,
        Resource::Rss => libc::RLIMIT_RSS,
        Resource::Stack => libc::RLIMIT_STACK,
        Resource::Files => libc::RLIMIT_NOFILE,
    };
    let value = match limit {
        Limit::Unlimited => libc::RLIM_INFINITY,
        Limit::Value(value) => value as libc::rlim_t,
    };
    (
        resource,
        libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        },
    )
}

/// xinetd's `nice` is an increment on the daemon's own priority.
fn own_priority() -> c_int {
    // SAFETY: getpriority has no memory arguments.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

/// Where a spawn failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Clone = 1,
    Fds,
    Session,
    Group,
    Limits,
    Groups,
    Gid,
    Uid,
    Cwd,
    NoNewPrivs,
    Signals,
    Exec,
}

impl Stage {
    fn from_code(code: u64) -> Stage {
        [
            Stage::Fds,
            Stage::Session,
            Stage::Group,
            Stage::Limits,
            Stage::Groups,
            Stage::Gid,
            Stage::Uid,
            Stage::Cwd,
            Stage::NoNewPrivs,
            Stage::Signals,
            Stage::Exec,
        ]
        .into_iter()
        .find(|stage| *stage as u64 == code)
        .unwrap_or(Stage::Clone)
    }

    pub fn action(self) -> &'static str {
        match self {
            Stage::Clone => "clone failed",
            Stage::Fds => "putting the connection on fds 0-2 failed",
            Stage::Session => "setsid failed",
            Stage::Group => "setpgid failed",
            Stage::Limits => "setting limits failed",
            Stage::Groups => "setgroups failed",
            Stage::Gid => "setgid failed",
            Stage::Uid => "setuid failed",
            Stage::Cwd => "chdir to the service's cwd failed",
            Stage::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS) failed",
            Stage::Signals => "clearing the signal mask failed",
            Stage::Exec => "exec failed",
        }
    }
}

#[derive(Debug)]
pub struct SpawnError {
    pub stage: Stage,
    pub errno: Errno,
    /// The child that failed before exec; it has exited with status 127.
    pub pid: Option<Pid>,
}

/// A connection (or a listening socket) to hand to a server.
pub struct Connection<'a> {
    pub fd: BorrowedFd<'a>,
    pub ends: peer::Ends,
}

/// The daemon's one spawner: a child stack and buffers reused by every spawn.
pub struct Spawner {
    stack: Vec<u8>,
    connection_variables: Vec<u8>,
    envp: Vec<*const c_char>,
    signals_to_default: Vec<c_int>,
    /// Servers start with no signal blocked, whatever mask oxinetd itself inherited
    /// (as under xinetd and systemd).
    empty_mask: libc::sigset_t,
    own_identity: Identity,
    low_slot: Option<LowSlot>,
    /// `LISTEN_PID=` for `listen_fds` servers: the child writes its own pid here (see
    /// `child::run`); envp points at it.
    listen_pid: [u8; LISTEN_PID_SIZE],
}

/// The child runs only `child::run` on this stack, with no deep calls.
const CHILD_STACK_SIZE: usize = 64 * 1024;

/// A connection below this fd is handed over where it is: the child's fd table is then
/// a copy of at most 64 entries, the size the kernel keeps inside the table itself.
const DIRECT_FD_LIMIT: RawFd = 64;

/// A low fd the spawner owns, taken before the daemon opens its listeners. A connection
/// at or above `DIRECT_FD_LIMIT` (with 1,000 services every connection is above 1,000)
/// is duplicated onto it for the spawn, so the child copies only the fds below it
/// instead of the whole table, and exec has only those few to close. Between spawns it
/// holds a placeholder, so no one else opens a file on it.
struct LowSlot {
    slot: OwnedFd,
    placeholder: OwnedFd,
}

impl LowSlot {
    fn new() -> Option<LowSlot> {
        // SAFETY: eventfd has no memory arguments; a new fd is owned by us alone.
        let first = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if first < 0 {
            return None;
        }
        // SAFETY: `first` is a new fd that nothing else owns.
        let first = unsafe { OwnedFd::from_raw_fd(first) };
        let second = first.try_clone().ok()?;
        // The lower number is the slot; both are the same placeholder file.
        let (slot, placeholder) = if first.as_raw_fd() < second.as_raw_fd() {
            (first, second)
        } else {
            (second, first)
        };
        (slot.as_raw_fd() < DIRECT_FD_LIMIT).then_some(LowSlot { slot, placeholder })
    }
}

/// The daemon's own real, effective and saved ids and its supplementary groups.
struct Identity {
    uids: [libc::uid_t; 3],
    gids: [libc::gid_t; 3],
    /// Sorted, without repeats.
    groups: Option<Vec<libc::gid_t>>,
}

impl Identity {
    fn current() -> Identity {
        let (mut ruid, mut euid, mut suid) = (0, 0, 0);
        let (mut rgid, mut egid, mut sgid) = (0, 0, 0);
        // SAFETY: the pointers are to live locals of the right type.
        let ids_read = unsafe {
            libc::getresuid(&mut ruid, &mut euid, &mut suid) == 0
                && libc::getresgid(&mut rgid, &mut egid, &mut sgid) == 0
        };
        if !ids_read {
            // Cannot happen on Linux; if it did, every step would run.
            return Identity {
                uids: [libc::uid_t::MAX; 3],
                gids: [libc::gid_t::MAX; 3],
                groups: None,
            };
        }
        let groups = nix::unistd::getgroups().ok().map(|groups| {
            let mut groups: Vec<libc::gid_t> = groups.into_iter().map(|g| g.as_raw()).collect();
            groups.sort_unstable();
            groups.dedup();
            groups
        });
        Identity {
            uids: [ruid, euid, suid],
            gids: [rgid, egid, sgid],
            groups,
        }
    }

    /// Whether the daemon already is `target`: real, effective and saved ids, and the
    /// same set of groups. Then setgroups, setgid and setuid would change nothing (a
    /// `user = "root"` service of a daemon running as root) and the child skips all
    /// three; otherwise it makes all three, in their order.
    fn is(&self, target: &Credentials) -> bool {
        self.uids == [target.uid; 3]
            && self.gids == [target.gid; 3]
            && self.groups.as_deref() == Some(&target.group_set[..])
    }
}

impl Default for Spawner {
    fn default() -> Self {
        Spawner::new()
    }
}

impl Spawner {
    /// Made before the daemon opens its listeners, so that its low slot is below them.
    pub fn new() -> Spawner {
        let empty_mask = crate::sys::signal::empty_set();
        Spawner {
            stack: vec![0; CHILD_STACK_SIZE],
            connection_variables: Vec::with_capacity(512),
            envp: Vec::new(),
            signals_to_default: signals_ignored(),
            empty_mask,
            own_identity: Identity::current(),
            low_slot: LowSlot::new(),
            listen_pid: {
                let mut buffer = [0u8; LISTEN_PID_SIZE];
                buffer[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
                buffer
            },
        }
    }

    pub fn spawn(
        &mut self,
        program: &Prepared,
        connection: &Connection,
    ) -> Result<Pid, SpawnError> {
        self.connection_variables.clear();
        peer::write_environment(&mut self.connection_variables, connection.ends);
        self.envp.clear();
        self.envp.extend_from_slice(&program.environment.pointers);
        let base = self.connection_variables.as_ptr();
        let mut start = 0;
        for (at, byte) in self.connection_variables.iter().enumerate() {
            if *byte == 0 {
                // SAFETY: `start` is within the buffer, which is not touched until the
                // child has exec'd.
                self.envp.push(unsafe { base.add(start) }.cast());
                start = at + 1;
            }
        }
        // One pointer for both: envp reads the string the child writes through it.
        let listen_pid: *mut [u8; LISTEN_PID_SIZE] = if program.listen_fds {
            let buffer = &raw mut self.listen_pid;
            self.envp.push(buffer.cast::<c_char>().cast_const());
            buffer
        } else {
            std::ptr::null_mut()
        };
        self.envp.push(std::ptr::null());

        let mut fd = connection.fd.as_raw_fd();
        let mut moved = false;
        if let Some(slot) = &self.low_slot
            && fd >= DIRECT_FD_LIMIT
        {
            // SAFETY: both fds are open; dup3 onto our own slot closes only the
            // placeholder there.
            if unsafe { libc::dup3(fd, slot.slot.as_raw_fd(), libc::O_CLOEXEC) } >= 0 {
                fd = slot.slot.as_raw_fd();
                moved = true;
            }
        }
        let args = child::ChildArgs {
            fd,
            program,
            envp: self.envp.as_ptr(),
            identity: program
                .credentials
                .as_ref()
                .filter(|target| !self.own_identity.is(target)),
            signals_to_default: &self.signals_to_default,
            mask: &self.empty_mask,
            listen_pid,
            failure: AtomicU64::new(0),
        };
        let stack_top = (self.stack.as_mut_ptr() as usize + self.stack.len()) & !15;
        // SAFETY: with CLONE_VFORK this thread sleeps until the child execs or exits, so
        // the child has sole use of `args`, the stack and the buffers they point into.
        // The child runs only async-signal-safe syscalls (see child.rs). No signal
        // handler can run in the child's shared memory: oxinetd installs none (its
        // signals go to a signalfd), and the handlers Rust installs are for faults
        // only; exec resets them. With CLONE_FILES the child starts on the daemon's fd
        // table, and its first act is to make its own (child.rs), before any change.
        let pid = unsafe {
            libc::clone(
                child::run,
                stack_top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD,
                &args as *const child::ChildArgs as *mut libc::c_void,
            )
        };
        let clone_errno = Errno::last();
        if moved {
            release_slot(&mut self.low_slot);
        }
        if pid < 0 {
            return Err(SpawnError {
                stage: Stage::Clone,
                errno: clone_errno,
                pid: None,
            });
        }
        let failure = args.failure.load(Ordering::Acquire);
        if failure != 0 {
            return Err(SpawnError {
                stage: Stage::from_code(failure >> 32),
                errno: Errno::from_raw(failure as u32 as i32),
                pid: Some(Pid::from_raw(pid)),
            });
        }
        Ok(Pid::from_raw(pid))
    }
}

/// Puts the placeholder back on the slot, dropping the daemon's extra reference to the
/// connection: the connection must close once the server and the daemon have closed
/// theirs.
fn release_slot(low_slot: &mut Option<LowSlot>) {
    let Some(slot) = low_slot else {
        return;
    };
    // SAFETY: both fds are ours and open.
    let restored = unsafe {
        libc::dup3(
            slot.placeholder.as_raw_fd(),
            slot.slot.as_raw_fd(),
            libc::O_CLOEXEC,
        )
    };
    if restored < 0 {
        // Not expected (the slot is ours, so no open can race for it). Closing the slot
        // drops the reference all the same; spawns go on without it.
        *low_slot = None;
    }
}

/// The kernel's `struct sigaction`; glibc's wrapper refuses the signals it reserves
/// for itself (32 and 33), which a parent may still have left ignored.
#[repr(C)]
pub(crate) struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

// The field order and sizes above are x86_64's and aarch64's, which both have
// `sa_restorer`; others differ (riscv64 has no restorer, mips puts the flags first).
// A port must check the kernel's `struct sigaction` first.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("KernelSigaction has the kernel's layout on x86_64 and aarch64 Linux only");
const _: () = assert!(std::mem::size_of::<KernelSigaction>() == 32);

pub(crate) const DEFAULT_ACTION: KernelSigaction = KernelSigaction {
    handler: libc::SIG_DFL,
    flags: 0,
    restorer: 0,
    mask: 0,
};

/// Signals oxinetd ignores: the Rust runtime ignores SIGPIPE, and oxinetd's own parent
/// may have left some ignored (glibc's posix_spawn leaves 32 and 33 ignored). exec keeps
/// an ignored signal ignored but resets a handled one (the runtime's SIGSEGV and SIGBUS
/// handlers) to the default, so only the ignored ones need a call in the child.
fn signals_ignored() -> Vec<c_int> {
    (1..=64)
        .filter(|&signal| signal != libc::SIGKILL && signal != libc::SIGSTOP)
        .filter(|&signal| {
            let mut action = DEFAULT_ACTION;
            // SAFETY: a null new action only queries the current one into `action`.
            let queried = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    std::ptr::null::<KernelSigaction>(),
                    &mut action as *mut KernelSigaction,
                    8usize,
                )
            };
            queried == 0 && action.handler == libc::SIG_IGN
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn exec(argv: &[&str], environment: &[&str]) -> ExecSpec {
        ExecSpec {
            server: PathBuf::from(argv[0]),
            argv: argv.iter().map(|arg| arg.to_string()).collect(),
            identity: None,
            environment: environment.iter().map(|e| e.as_bytes().to_vec()).collect(),
            umask: None,
            nice: None,
            rlimits: Vec::new(),
            cwd: PathBuf::from("/"),
            no_new_privs: false,
            listen_fds: None,
            setsid: false,
        }
    }

    fn entries(program: &Prepared) -> Vec<String> {
        program
            .environment
            .pointers
            .iter()
            // SAFETY: each pointer is to a NUL-terminated string in `strings`.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn services_with_the_same_environment_share_one() {
        let a = Prepared::new(&exec(&["/bin/true"], &["PATH=/bin", "HOME=/"])).unwrap();
        let b = Prepared::new(&exec(&["/bin/false"], &["PATH=/bin", "HOME=/"])).unwrap();
        let c = Prepared::new(&exec(&["/bin/true"], &["PATH=/bin", "HOME=/root"])).unwrap();
        assert!(Rc::ptr_eq(&a.environment, &b.environment));
        assert!(!Rc::ptr_eq(&a.environment, &c.environment));
        assert_eq!(entries(&a), ["PATH=/bin", "HOME=/"]);
        assert_eq!(entries(&c), ["PATH=/bin", "HOME=/root"]);
    }

    #[test]
    fn an_environment_outlives_the_service_that_made_it_only_while_shared() {
        let a = Prepared::new(&exec(&["/bin/true"], &["ONLY_HERE=1"])).unwrap();
        let weak = Rc::downgrade(&a.environment);
        let b = Prepared::new(&exec(&["/bin/true"], &["ONLY_HERE=1"])).unwrap();
        drop(a);
        assert!(weak.upgrade().is_some());
        drop(b);
        assert!(weak.upgrade().is_none());
        let c = Prepared::new(&exec(&["/bin/true"], &["ONLY_HERE=1"])).unwrap();
        assert_eq!(entries(&c), ["ONLY_HERE=1"]);
    }

    #[test]
    fn empty_environment_and_nul_bytes() {
        assert!(entries(&Prepared::new(&exec(&["/bin/true"], &[])).unwrap()).is_empty());
        assert!(Prepared::new(&exec(&["/bin/true"], &["A=b\0c"])).is_err());
    }

    #[test]
    fn identity_calls_are_skipped_only_when_nothing_would_change() {
        let own = Identity {
            uids: [0; 3],
            gids: [0; 3],
            groups: Some(vec![0, 4]),
        };
        let target = |uid, gid, groups: &[u32]| Credentials {
            groups: groups.to_vec(),
            group_set: {
                let mut set = groups.to_vec();
                set.sort_unstable();
                set.dedup();
                set
            },
            gid,
            uid,
        };
        assert!(own.is(&target(0, 0, &[4, 0, 4])));
        assert!(!own.is(&target(0, 0, &[])));
        assert!(!own.is(&target(0, 1, &[0, 4])));
        assert!(!own.is(&target(65534, 0, &[0, 4])));
        let saved_uid_differs = Identity {
            uids: [0, 0, 1],
            ..own
        };
        assert!(!saved_uid_differs.is(&target(0, 0, &[0, 4])));
        let groups_unknown = Identity {
            uids: [0; 3],
            gids: [0; 3],
            groups: None,
        };
        assert!(!groups_unknown.is(&target(0, 0, &[])));
    }

    /// Spawns `sh -c script` on one end of a socketpair placed at `fd`; returns what the
    /// server wrote, read to EOF (which needs every copy of the server's end closed).
    fn spawn_on_fd_and_read(fd: RawFd, script: &str) -> String {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // SAFETY: F_DUPFD_CLOEXEC only makes a new fd, which we own.
        let high = unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_DUPFD_CLOEXEC, fd) };
        assert!(
            high >= fd,
            "F_DUPFD_CLOEXEC: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `high` is a new fd nothing else owns.
        let high = unsafe { OwnedFd::from_raw_fd(high) };
        drop(theirs);
        let mut spawner = Spawner::new();
        let program = Prepared::new(&exec(&["/bin/sh", "-c", script], &[])).unwrap();
        let pid = spawner
            .spawn(
                &program,
                &Connection {
                    fd: high.as_fd(),
                    ends: peer::Ends::Ip {
                        protocol: crate::config::spec::Protocol::Tcp,
                        remote: None,
                        local: None,
                    },
                },
            )
            .unwrap();
        drop(high);
        let mut out = String::new();
        (&ours).read_to_string(&mut out).unwrap();
        nix::sys::wait::waitpid(pid, None).unwrap();
        out
    }

    #[test]
    fn the_child_writes_its_pid_after_listen_pid_without_leftovers() {
        let mut buffer = [b'x'; LISTEN_PID_SIZE];
        buffer[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
        let text = |buffer: &[u8; LISTEN_PID_SIZE]| {
            CStr::from_bytes_until_nul(buffer)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        for (pid, want) in [
            (u32::MAX, "LISTEN_PID=4294967295"),
            (4194304, "LISTEN_PID=4194304"),
            (1, "LISTEN_PID=1"),
            (0, "LISTEN_PID=0"),
            (1000, "LISTEN_PID=1000"),
        ] {
            write_listen_pid(&mut buffer, pid);
            assert_eq!(text(&buffer), want);
        }
    }

    #[test]
    fn socket_activation_environment_replaces_listen_variables() {
        let environment = socket_activation_environment(
            &[b"PATH=/bin".to_vec(), b"LISTEN_FDS=7".to_vec()],
            "svc",
        );
        assert_eq!(
            environment,
            [&b"PATH=/bin"[..], b"LISTEN_FDS=1", b"LISTEN_FDNAMES=svc"]
        );
    }

    #[test]
    fn a_connection_on_a_high_fd_reaches_the_server_on_0_1_2_alone() {
        // Below and above DIRECT_FD_LIMIT: handed over in place, and through the slot.
        for fd in [10, 100, 1000] {
            let out = spawn_on_fd_and_read(fd, "ls /proc/$$/fd; echo done");
            assert_eq!(out, "0\n1\n2\ndone\n", "connection at fd {fd}");
        }
    }
}

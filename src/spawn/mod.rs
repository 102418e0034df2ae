//! Starts a server on a socket: `clone(CLONE_VM | CLONE_VFORK)`, then `child::run`.
//!
//! All the work is done when a service is loaded (`Prepared::new`): C strings, pointer
//! arrays, credentials and limits. Per connection the parent only writes the
//! connection's variables into a reused buffer. Sharing memory instead of copying page
//! tables keeps the cost of a spawn flat however large the daemon grows.

mod child;

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_char, c_int};
use nix::errno::Errno;
use nix::unistd::Pid;

use crate::config::spec::{ExecSpec, Limit, Protocol, Resource};
use crate::peer;

#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = c_int;

pub(crate) struct Credentials {
    groups: Vec<libc::gid_t>,
    gid: libc::gid_t,
    uid: libc::uid_t,
}

/// An exec'd service in the form the child consumes.
pub struct Prepared {
    path: CString,
    /// Owns the strings `argv` points into.
    _argv_strings: Vec<CString>,
    argv: Vec<*const c_char>,
    /// Owns the strings `environment` points into.
    _environment_strings: Vec<CString>,
    environment: Vec<*const c_char>,
    credentials: Option<Credentials>,
    rlimits: Vec<(RlimitResource, libc::rlimit)>,
    priority: Option<c_int>,
    umask: Option<libc::mode_t>,
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
        let environment_strings = exec
            .environment
            .iter()
            .map(|entry| c_string(entry))
            .collect::<Result<Vec<_>, _>>()?;
        let argv = argv_strings
            .iter()
            .map(|arg| arg.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let environment = environment_strings
            .iter()
            .map(|entry| entry.as_ptr())
            .collect();
        Ok(Prepared {
            path: c_string(exec.server.as_os_str().as_bytes())?,
            _argv_strings: argv_strings,
            argv,
            _environment_strings: environment_strings,
            environment,
            credentials: exec.identity.as_ref().map(|identity| Credentials {
                groups: identity.groups.clone(),
                gid: identity.gid,
                uid: identity.uid,
            }),
            rlimits: exec
                .rlimits
                .iter()
                .map(|&(resource, limit)| rlimit(resource, limit))
                .collect(),
            priority: exec.nice.map(|nice| (own_priority() + nice).clamp(-20, 19)),
            umask: exec.umask.map(|mask| mask as libc::mode_t),
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
    Limits,
    Groups,
    Gid,
    Uid,
    Signals,
    Exec,
}

impl Stage {
    fn from_code(code: u64) -> Stage {
        [
            Stage::Fds,
            Stage::Session,
            Stage::Limits,
            Stage::Groups,
            Stage::Gid,
            Stage::Uid,
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
            Stage::Fds => "dup2 failed",
            Stage::Session => "setsid failed",
            Stage::Limits => "setting limits failed",
            Stage::Groups => "setgroups failed",
            Stage::Gid => "setgid failed",
            Stage::Uid => "setuid failed",
            Stage::Signals => "restoring the signal mask failed",
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
    pub protocol: Protocol,
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
}

/// The daemon's one spawner: a child stack and buffers reused by every spawn.
pub struct Spawner {
    stack: Vec<u8>,
    connection_variables: Vec<u8>,
    envp: Vec<*const c_char>,
    signals_to_default: Vec<c_int>,
    original_mask: libc::sigset_t,
}

/// The child runs only `child::run` on this stack, with no deep calls.
const CHILD_STACK_SIZE: usize = 64 * 1024;

impl Spawner {
    /// `original_mask` is the signal mask oxinetd started with, which servers get back.
    pub fn new(original_mask: libc::sigset_t) -> Spawner {
        Spawner {
            stack: vec![0; CHILD_STACK_SIZE],
            connection_variables: Vec::with_capacity(512),
            envp: Vec::new(),
            signals_to_default: signals_not_default(),
            original_mask,
        }
    }

    pub fn spawn(
        &mut self,
        program: &Prepared,
        connection: &Connection,
    ) -> Result<Pid, SpawnError> {
        self.connection_variables.clear();
        peer::write_environment(
            &mut self.connection_variables,
            connection.protocol,
            connection.remote,
            connection.local,
        );
        self.envp.clear();
        self.envp.extend_from_slice(&program.environment);
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
        self.envp.push(std::ptr::null());

        let args = child::ChildArgs {
            fd: connection.fd.as_raw_fd(),
            program,
            envp: self.envp.as_ptr(),
            signals_to_default: &self.signals_to_default,
            original_mask: &self.original_mask,
            failure: AtomicU64::new(0),
        };
        let stack_top = (self.stack.as_mut_ptr() as usize + self.stack.len()) & !15;
        // SAFETY: with CLONE_VFORK this thread sleeps until the child execs or exits, so
        // the child has sole use of `args`, the stack and the buffers they point into.
        // The child runs only async-signal-safe syscalls (see child.rs). No signal
        // handler can run in the child's shared memory: oxinetd installs none (its
        // signals go to a signalfd), and the handlers Rust installs are for faults
        // only; the child resets all of them before exec.
        let pid = unsafe {
            libc::clone(
                child::run,
                stack_top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                &args as *const child::ChildArgs as *mut libc::c_void,
            )
        };
        if pid < 0 {
            return Err(SpawnError {
                stage: Stage::Clone,
                errno: Errno::last(),
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

/// The kernel's `struct sigaction`; glibc's wrapper refuses the signals it reserves
/// for itself (32 and 33), which a parent may still have left ignored.
#[repr(C)]
pub(crate) struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

pub(crate) const DEFAULT_ACTION: KernelSigaction = KernelSigaction {
    handler: libc::SIG_DFL,
    flags: 0,
    restorer: 0,
    mask: 0,
};

/// Signals whose disposition is not the default: the Rust runtime ignores SIGPIPE and
/// handles SIGSEGV and SIGBUS, and oxinetd's own parent may have left some ignored.
fn signals_not_default() -> Vec<c_int> {
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
            queried == 0 && action.handler != libc::SIG_DFL
        })
        .collect()
}

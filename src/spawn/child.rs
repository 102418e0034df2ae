//! The only code that runs between clone and exec: a straight list of syscalls.
//!
//! The child shares the parent's memory (`CLONE_VM`) while the parent sleeps
//! (`CLONE_VFORK`), so it must not allocate, lock, log, format or panic: it reads the
//! arrays the parent prepared and calls the kernel. It starts on the parent's fd table
//! too (`CLONE_FILES`), so its first call makes a table of its own. A failure records
//! the stage and errno in the shared `failure` word, which the parent reads when it
//! wakes, and exits.
//!
//! The order: an fd table of its own, the connection on fds 0-2 (for `listen_fds`: on fd
//! 3, with `/dev/null` on 0 and the pid in `LISTEN_PID`), a process group of its own (a
//! session with `setsid = true`), limits, nice, umask, then the identity (setgroups,
//! setgid, setuid), chdir to the service's `cwd` (`/` by default; as the new user, so it
//! needs that user's access), PR_SET_NO_NEW_PRIVS if asked (after setuid, which it would
//! not block, and before exec, which it governs), default signal dispositions, an empty
//! signal mask, close-on-exec above fd 2, execve.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_char, c_int};

use super::{
    Credentials, DEFAULT_ACTION, KernelSigaction, LISTEN_PID_SIZE, Prepared, Stage,
    write_listen_pid,
};

/// Everything the child reads. Lives on the parent's stack, which stays put while the
/// parent is suspended.
pub(super) struct ChildArgs<'a> {
    /// The connection, in the daemon's fd table. The child keeps the fds up to it.
    pub fd: c_int,
    pub program: &'a Prepared,
    pub envp: *const *const c_char,
    /// The identity to take; `None` when the daemon has it already.
    pub identity: Option<&'a Credentials>,
    pub signals_to_default: &'a [c_int],
    /// The mask the server starts with: empty.
    pub mask: &'a libc::sigset_t,
    /// For a `listen_fds` server, the spawner's `LISTEN_PID=` buffer, which envp points
    /// at; null otherwise.
    pub listen_pid: *mut [u8; LISTEN_PID_SIZE],
    pub failure: AtomicU64,
}

/// The clone entry point.
pub(super) extern "C" fn run(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ChildArgs` the parent passed to clone; the parent is
    // suspended until this child execs or exits, so the borrow is live and unshared.
    let args = unsafe { &*(arg as *const ChildArgs) };
    // SAFETY: every call below is a plain syscall wrapper on prepared, valid data.
    unsafe {
        // The fd table is still the daemon's (CLONE_FILES): make our own before touching
        // it, copying only the fds up to the connection. The daemon's listeners and
        // everything else above are neither copied now nor closed at exec. Kernels
        // before 5.9 lack close_range: then copy the whole table, as fork would.
        if libc::syscall(
            libc::SYS_close_range,
            args.fd as u32 + 1,
            u32::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        ) < 0
            && libc::unshare(libc::CLONE_FILES) < 0
        {
            fail(args, Stage::Fds);
        }
        let socket_activation = !args.listen_pid.is_null();
        if socket_activation {
            socket_on_fd_3(args);
        } else {
            for target in 0..3 {
                // The connection is never one of fds 0-2 (the daemon keeps them open), so
                // dup2 always makes a copy without close-on-exec.
                if libc::dup2(args.fd, target) < 0 {
                    fail(args, Stage::Fds);
                }
            }
        }
        let program = args.program;
        // A process group of its own gives shutdown a target (`kill(-pgid)`) for the
        // server and whatever it starts. A new session would too, but each session is
        // a new scheduler autogroup, which the daemon's own group then competes with.
        if program.setsid {
            if libc::setsid() < 0 {
                fail(args, Stage::Session);
            }
        } else if libc::setpgid(0, 0) < 0 {
            fail(args, Stage::Group);
        }
        for (resource, limit) in &program.rlimits {
            if libc::setrlimit(*resource, limit) < 0 {
                fail(args, Stage::Limits);
            }
        }
        if let Some(priority) = program.priority
            && libc::setpriority(libc::PRIO_PROCESS, 0, priority) < 0
        {
            fail(args, Stage::Limits);
        }
        if let Some(mask) = program.umask {
            libc::umask(mask);
        }
        if let Some(credentials) = args.identity {
            drop_privileges(args, credentials);
        }
        // After the identity change, so the server's user must be able to enter it, as
        // it would from a login shell.
        if libc::chdir(program.cwd.as_ptr()) < 0 {
            fail(args, Stage::Cwd);
        }
        // Last of the privilege steps: from here on exec can never add privileges (setuid
        // bits, file capabilities), for the server or anything it runs. Set after setuid
        // so that change is not affected; kept across fork and exec.
        if program.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            fail(args, Stage::NoNewPrivs);
        }
        for &signal in args.signals_to_default {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &DEFAULT_ACTION as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
        if libc::sigprocmask(libc::SIG_SETMASK, args.mask, std::ptr::null_mut()) < 0 {
            fail(args, Stage::Signals);
        }
        // Every fd oxinetd opens is close-on-exec already; this also covers any fd it
        // inherited and anything a library opened, below the connection (the rest were
        // not copied). Old kernels lack close_range: then the first guarantee stands
        // alone.
        libc::syscall(
            libc::SYS_close_range,
            if socket_activation { 4u32 } else { 3u32 },
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::execve(program.path.as_ptr(), program.argv.as_ptr(), args.envp);
        fail(args, Stage::Exec)
    }
}

/// A socket-activated server's fds, as systemd gives them: the socket on fd 3 (not
/// close-on-exec), `/dev/null` on fd 0, fds 1 and 2 left as the daemon's; and its own pid
/// in `LISTEN_PID`.
///
/// # Safety
/// Only in the cloned child, before exec, with `args` prepared by the parent, on an fd
/// table of the child's own.
unsafe fn socket_on_fd_3(args: &ChildArgs) {
    // SAFETY: plain fd syscalls on numbers in the child's own table, and a static C string.
    unsafe {
        // dup2 onto itself would leave close-on-exec set (every daemon fd has it).
        let placed = if args.fd == 3 {
            libc::fcntl(3, libc::F_SETFD, 0)
        } else {
            libc::dup2(args.fd, 3)
        };
        if placed < 0 {
            fail(args, Stage::Fds);
        }
        // Close-on-exec: the copy on 0 is what the server keeps.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null < 0 || libc::dup2(null, 0) < 0 {
            fail(args, Stage::Fds);
        }
    }
    // SAFETY: `listen_pid` is the spawner's own buffer (`Spawner::listen_pid`), non-null
    // here, and no one else touches it until exec: the parent is suspended from clone
    // until this child execs or exits (CLONE_VFORK), the daemon's other threads (lookups)
    // never see the spawner, and the parent has only put its address in envp. execve
    // copies the environment into the new image before the parent wakes, so the next
    // spawn may rewrite it; each child writes all its digits and the NUL after them, so
    // no digit of an earlier pid is left. getpid is a raw syscall: the child's pid, never
    // a value cached from the parent.
    unsafe {
        let pid = libc::syscall(libc::SYS_getpid) as u32;
        write_listen_pid(&mut *args.listen_pid, pid);
    }
}

/// setgroups, setgid, setuid: in this order, since each step needs the privilege the
/// next one gives up. Raw syscalls change only this process; glibc's wrappers would
/// try to broadcast the change to the threads of the (shared) parent.
///
/// # Safety
/// Only in the cloned child, before exec, with `args` and `credentials` prepared by
/// the parent (live and unshared while the parent is suspended).
unsafe fn drop_privileges(args: &ChildArgs, credentials: &Credentials) {
    // SAFETY: the group list is a live slice of gid_t; the ids are plain integers.
    unsafe {
        let groups = &credentials.groups;
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) < 0 {
            fail(args, Stage::Groups);
        }
        if libc::syscall(libc::SYS_setgid, credentials.gid) < 0 {
            fail(args, Stage::Gid);
        }
        if libc::syscall(libc::SYS_setuid, credentials.uid) < 0 {
            fail(args, Stage::Uid);
        }
    }
}

fn fail(args: &ChildArgs, stage: Stage) -> ! {
    // SAFETY: errno is thread-local storage shared with the suspended parent thread;
    // reading it right after the failed call is what errno is for.
    let errno = unsafe { *libc::__errno_location() };
    args.failure.store(
        ((stage as u64) << 32) | errno as u32 as u64,
        Ordering::Release,
    );
    // SAFETY: _exit ends this process without running the parent's atexit handlers or
    // flushing its stdio buffers, which belong to the parent.
    unsafe { libc::_exit(127) }
}

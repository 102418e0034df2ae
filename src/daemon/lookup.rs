//! Slow lookups (DNS, ident) on helper threads, so the event loop never blocks.
//!
//! The loop submits a `Job` with a ticket of its choosing and goes on; a helper thread
//! does the blocking work and sends back an `Answer` with the same ticket, then bumps
//! an eventfd the loop watches. The loop enforces its own deadlines (a name lookup
//! that takes too long counts as no name): a late answer only finds its ticket gone.
//!
//! The helpers start on the first job, since most configurations never need them, and
//! live as long as the daemon. Dropping `Lookups` ends them once their current job
//! returns, which a hung DNS query may delay: they hold nothing the daemon needs.
//!
//! Two things keep them out of the daemon's way. They block every signal, so a
//! SIGCHLD or SIGTERM meant for the loop's signalfd is never taken by one of them.
//! And the spawner's `clone(CLONE_VM | CLONE_VFORK)` child only makes syscalls on
//! memory prepared beforehand: it takes no lock a helper could be holding.

use std::cell::{Cell, OnceCell};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use socket2::{Domain, Socket, Type};

pub const IDENT_PORT: u16 = 113;
/// Jobs submitted and not yet collected by `answers()`; beyond this `submit` refuses.
pub const MAX_PENDING: usize = 1024;
/// RFC 1413 caps the user id at 512 octets; a reply line is shorter than this.
const MAX_IDENT_LINE: usize = 1024;
const MAX_USER: usize = 512;

pub enum Job {
    /// Reverse-resolve the peer, then confirm by forward lookup: the answer holds the
    /// names whose forward lookup includes the peer address (lowercase, no trailing
    /// dot). IPv4-mapped IPv6 peers are looked up as IPv4.
    Names { ticket: u64, peer: IpAddr },
    /// RFC 1413 query from `local.ip()` to `remote.ip():port` (`IDENT_PORT` but in
    /// tests) about the connection `remote` → `local`; `timeout` bounds connect, query
    /// and reply together.
    Ident {
        ticket: u64,
        local: SocketAddr,
        remote: SocketAddr,
        port: u16,
        timeout: Duration,
    },
    /// Resolve a redirect target now; the first address wins.
    Resolve {
        ticket: u64,
        host: String,
        port: u16,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Names {
        ticket: u64,
        names: Vec<String>,
    },
    /// `None`: no answer, an ERROR answer, or one that does not parse.
    Ident {
        ticket: u64,
        user: Option<String>,
    },
    Resolve {
        ticket: u64,
        result: Result<SocketAddr, String>,
    },
}

impl Answer {
    pub fn ticket(&self) -> u64 {
        match self {
            Answer::Names { ticket, .. }
            | Answer::Ident { ticket, .. }
            | Answer::Resolve { ticket, .. } => *ticket,
        }
    }
}

pub struct Lookups {
    threads: usize,
    /// Set once the helpers run.
    jobs: OnceCell<Sender<Job>>,
    answers_in: Sender<Answer>,
    answers_out: Receiver<Answer>,
    ready: Arc<EventFd>,
    pending: Cell<usize>,
}

impl Lookups {
    /// Starts no thread yet: the first `submit` starts `threads` of them.
    pub fn new(threads: usize) -> io::Result<Lookups> {
        let ready = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        let (answers_in, answers_out) = mpsc::channel();
        Ok(Lookups {
            threads: threads.max(1),
            jobs: OnceCell::new(),
            answers_in,
            answers_out,
            ready: Arc::new(ready),
            pending: Cell::new(0),
        })
    }

    /// Queues a job; false if `MAX_PENDING` answers are outstanding or no helper
    /// thread could be started.
    pub fn submit(&self, job: Job) -> bool {
        if self.pending.get() >= MAX_PENDING {
            return false;
        }
        let jobs = match self.jobs.get() {
            Some(jobs) => jobs,
            None => match self.start() {
                Some(jobs) => self.jobs.get_or_init(|| jobs),
                None => return false,
            },
        };
        if jobs.send(job).is_err() {
            return false;
        }
        self.pending.set(self.pending.get() + 1);
        true
    }

    /// Readable when answers are waiting; the loop watches it with EPOLLIN.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ready.as_fd()
    }

    /// Every answer that has arrived; never blocks.
    pub fn answers(&self) -> Vec<Answer> {
        // Read before draining: an answer sent after the drain bumps the counter
        // again, so it is never left without a wakeup.
        let _ = self.ready.read();
        let answers: Vec<Answer> = self.answers_out.try_iter().collect();
        self.pending
            .set(self.pending.get().saturating_sub(answers.len()));
        answers
    }

    fn start(&self) -> Option<Sender<Job>> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        // Threads inherit the creator's mask: block everything while creating them.
        let mut original = SigSet::empty();
        pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&SigSet::all()),
            Some(&mut original),
        )
        .ok()?;
        let started = (0..self.threads)
            .filter(|_| {
                let (queue, answers, ready) = (
                    Arc::clone(&queue),
                    self.answers_in.clone(),
                    Arc::clone(&self.ready),
                );
                thread::Builder::new()
                    .name("lookup".into())
                    .spawn(move || work(&queue, &answers, &ready))
                    .is_ok()
            })
            .count();
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&original), None);
        (started > 0).then_some(jobs)
    }
}

fn work(queue: &Mutex<Receiver<Job>>, answers: &Sender<Answer>, ready: &EventFd) {
    loop {
        // The lock is held while waiting: one helper waits on the channel, the
        // others on the lock.
        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = job else {
            return; // Lookups was dropped.
        };
        if answers.send(run(job)).is_err() {
            return;
        }
        let _ = ready.write(1);
    }
}

fn run(job: Job) -> Answer {
    match job {
        Job::Names { ticket, peer } => Answer::Names {
            ticket,
            names: confirmed_names(peer.to_canonical()),
        },
        Job::Ident {
            ticket,
            local,
            remote,
            port,
            timeout,
        } => Answer::Ident {
            ticket,
            user: ident(local, remote, port, timeout),
        },
        Job::Resolve { ticket, host, port } => Answer::Resolve {
            ticket,
            result: resolve(&host, port),
        },
    }
}

/// Anyone can make their address's PTR record say anything, so a name counts only
/// if it leads back to the address.
fn confirmed_names(peer: IpAddr) -> Vec<String> {
    let Some(name) = reverse_name(peer) else {
        return Vec::new();
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    // A PTR record holding an address would confirm itself.
    if name.is_empty() || name.parse::<IpAddr>().is_ok() {
        return Vec::new();
    }
    let leads_back = (name.as_str(), 0)
        .to_socket_addrs()
        .is_ok_and(|mut addresses| addresses.any(|a| a.ip().to_canonical() == peer));
    if leads_back { vec![name] } else { Vec::new() }
}

fn reverse_name(peer: IpAddr) -> Option<String> {
    crate::sys::socket::reverse_name(peer)
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    match (host, port).to_socket_addrs() {
        Ok(mut addresses) => addresses
            .next()
            .ok_or_else(|| format!("{host}: no address")),
        Err(error) => Err(format!("{host}: {error}")),
    }
}

fn ident(local: SocketAddr, remote: SocketAddr, port: u16, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let server = SocketAddr::new(remote.ip().to_canonical(), port);
    let socket = Socket::new(Domain::for_address(server), Type::STREAM, None).ok()?;
    // The reply is about the connection to `local`: ask from that address, which is
    // the one the peer knows us by.
    socket
        .bind(&SocketAddr::new(local.ip().to_canonical(), 0).into())
        .ok()?;
    socket.connect_timeout(&server.into(), timeout).ok()?;
    let mut stream = TcpStream::from(socket);
    stream.set_write_timeout(Some(left(deadline)?)).ok()?;
    let query = format!("{} , {}\r\n", remote.port(), local.port());
    stream.write_all(query.as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 256];
    while !reply.contains(&b'\n') && reply.len() < MAX_IDENT_LINE {
        stream.set_read_timeout(Some(left(deadline)?)).ok()?;
        match stream.read(&mut chunk).ok()? {
            0 => break,
            n => reply.extend_from_slice(&chunk[..n]),
        }
    }
    let line = reply.split(|&b| b == b'\n').next().unwrap_or(&[]);
    parse_ident(line, remote.port(), local.port())
}

/// Time left before `deadline`, or `None` once it has passed (a zero timeout would
/// mean "block forever" to the socket calls).
fn left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

/// The user of `RPORT , LPORT : USERID : OS[,charset] : USER`, if the reply is about
/// this port pair. Control characters become `?`: the user ends up in a log line.
pub fn parse_ident(line: &[u8], remote_port: u16, local_port: u16) -> Option<String> {
    let line = String::from_utf8_lossy(line);
    let mut fields = line.trim_end_matches(['\r', '\n']).splitn(4, ':');
    let (rport, lport) = fields.next()?.split_once(',')?;
    if rport.trim().parse::<u16>().ok()? != remote_port
        || lport.trim().parse::<u16>().ok()? != local_port
        || !fields.next()?.trim().eq_ignore_ascii_case("USERID")
    {
        return None;
    }
    let _os = fields.next()?;
    let user = fields.next()?.trim();
    if user.is_empty() || user.len() > MAX_USER {
        return None;
    }
    Some(
        user.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::thread::JoinHandle;

    /// Collects answers until `count` have come, polling the eventfd.
    fn collect(lookups: &Lookups, count: usize, within: Duration) -> Vec<Answer> {
        let deadline = Instant::now() + within;
        let mut answers = Vec::new();
        while answers.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "only {answers:?} within {within:?}");
            let mut fd = libc::pollfd {
                fd: lookups.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ready = crate::sys::fd::poll(
                std::slice::from_mut(&mut fd),
                left.max(Duration::from_millis(1)),
            );
            assert!(ready.is_ok(), "poll: {ready:?}");
            answers.extend(lookups.answers());
        }
        answers
    }

    fn one(job: Job, within: Duration) -> Answer {
        let lookups = Lookups::new(2).unwrap();
        assert!(lookups.submit(job));
        collect(&lookups, 1, within).remove(0)
    }

    fn names(peer: &str) -> Vec<String> {
        let peer = peer.parse().unwrap();
        match one(Job::Names { ticket: 1, peer }, Duration::from_secs(10)) {
            Answer::Names { ticket: 1, names } => names,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loopback_is_localhost() {
        // /etc/hosts on the test machines: "127.0.0.1 localhost" comes first.
        assert_eq!(names("127.0.0.1"), ["localhost"]);
        assert_eq!(names("::ffff:127.0.0.1"), ["localhost"]);
    }

    #[test]
    fn no_ptr_no_names() {
        assert_eq!(names("127.0.0.9"), Vec::<String>::new());
    }

    #[test]
    fn resolves_localhost_and_not_invalid() {
        let job = Job::Resolve {
            ticket: 7,
            host: "localhost".into(),
            port: 8080,
        };
        match one(job, Duration::from_secs(10)) {
            Answer::Resolve {
                ticket: 7,
                result: Ok(address),
            } => {
                assert!(address.ip().is_loopback());
                assert_eq!(address.port(), 8080);
            }
            other => panic!("{other:?}"),
        }
        let job = Job::Resolve {
            ticket: 8,
            host: "no-such-host.invalid".into(),
            port: 80,
        };
        match one(job, Duration::from_secs(15)) {
            Answer::Resolve {
                ticket: 8,
                result: Err(message),
            } => assert!(message.starts_with("no-such-host.invalid: ")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_beyond_max_pending() {
        let lookups = Lookups::new(1).unwrap();
        let job = |ticket| Job::Resolve {
            ticket,
            host: "localhost".into(),
            port: 1,
        };
        for ticket in 0..MAX_PENDING as u64 {
            assert!(lookups.submit(job(ticket)));
        }
        assert!(!lookups.submit(job(9999)));
        let answers = collect(&lookups, MAX_PENDING, Duration::from_secs(30));
        assert_eq!(answers.len(), MAX_PENDING);
        assert!(lookups.submit(job(9999)));
    }

    #[test]
    fn helpers_block_the_loops_signals() {
        let lookups = Lookups::new(2).unwrap();
        let job = Job::Resolve {
            ticket: 1,
            host: "localhost".into(),
            port: 1,
        };
        assert!(lookups.submit(job));
        collect(&lookups, 1, Duration::from_secs(10));
        // A thread takes its name when it starts running, so the second helper may not
        // be named yet: look again until both are, within a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let helpers = lookup_thread_masks();
            for blocked in &helpers {
                for signal in [libc::SIGCHLD, libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
                    assert_ne!(blocked & (1 << (signal - 1)), 0, "signal {signal} open");
                }
            }
            if helpers.len() >= 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} lookup threads",
                helpers.len()
            );
            std::thread::yield_now();
        }
    }

    /// The blocked-signal mask of each thread of this process named `lookup`.
    fn lookup_thread_masks() -> Vec<u64> {
        let mut masks = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let status = std::fs::read_to_string(task.unwrap().path().join("status"));
            let Ok(status) = status else { continue }; // The thread has exited.
            if !status.lines().any(|line| line == "Name:\tlookup") {
                continue;
            }
            let blocked = status
                .lines()
                .find_map(|line| line.strip_prefix("SigBlk:\t"))
                .map(|mask| u64::from_str_radix(mask, 16).unwrap())
                .unwrap();
            masks.push(blocked);
        }
        masks
    }

    /// An identd on a loopback port that reads one query and sends `reply`, or
    /// nothing until the querier hangs up; it returns the query it got.
    fn fake_identd(reply: Option<&'static str>) -> (u16, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut query = Vec::new();
            let mut byte = [0u8];
            while !query.ends_with(b"\n") && stream.read(&mut byte).unwrap() == 1 {
                query.push(byte[0]);
            }
            match reply {
                Some(reply) => stream.write_all(reply.as_bytes()).unwrap(),
                None => while stream.read(&mut byte).unwrap() > 0 {},
            }
            String::from_utf8(query).unwrap()
        });
        (port, handle)
    }

    fn ident_user(reply: Option<&'static str>, timeout: Duration) -> Option<String> {
        let (port, identd) = fake_identd(reply);
        let job = Job::Ident {
            ticket: 3,
            local: "127.0.0.1:2323".parse().unwrap(),
            remote: "[::ffff:127.0.0.1]:40001".parse().unwrap(),
            port,
            timeout,
        };
        let started = Instant::now();
        let answer = one(job, timeout + Duration::from_secs(2));
        assert!(started.elapsed() < timeout + Duration::from_secs(2));
        assert_eq!(identd.join().unwrap(), "40001 , 2323\r\n");
        match answer {
            Answer::Ident { ticket: 3, user } => user,
            other => panic!("{other:?}"),
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn ident_user_from_a_fake_identd() {
        let reply = Some("40001 , 2323 : USERID : UNIX : alice\r\n");
        assert_eq!(ident_user(reply, 5 * SECOND).as_deref(), Some("alice"));
    }

    #[test]
    fn ident_error_reply_is_none() {
        let reply = Some("40001 , 2323 : ERROR : NO-USER\r\n");
        assert_eq!(ident_user(reply, 5 * SECOND), None);
    }

    #[test]
    fn ident_malformed_reply_is_none() {
        assert_eq!(ident_user(Some("hello there\r\n"), 5 * SECOND), None);
    }

    #[test]
    fn ident_silent_server_times_out() {
        assert_eq!(ident_user(None, Duration::from_millis(300)), None);
    }

    #[test]
    fn ident_refused_is_none() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let job = Job::Ident {
            ticket: 4,
            local: "127.0.0.1:2323".parse().unwrap(),
            remote: "127.0.0.1:40001".parse().unwrap(),
            port,
            timeout: 5 * SECOND,
        };
        let answer = one(job, 5 * SECOND);
        assert_eq!(
            answer,
            Answer::Ident {
                ticket: 4,
                user: None
            }
        );
    }

    macro_rules! ident {
        ($reply:expr, $user:expr) => {
            assert_eq!(
                parse_ident($reply.as_bytes(), 6191, 23).as_deref(),
                $user,
                "{:?}",
                $reply
            );
        };
    }

    #[test]
    fn ident_replies() {
        ident!("6191 , 23 : USERID : UNIX : stjohns", Some("stjohns"));
        ident!("6191,23:USERID:UNIX:stjohns\r", Some("stjohns"));
        ident!(
            "6191 , 23 : userid : UNIX , UTF-8 : jo : hn ",
            Some("jo : hn")
        );
        ident!("6191 , 23 : USERID : OTHER : a\u{1b}b", Some("a?b"));
        ident!("6191 , 23 : ERROR : NO-USER", None);
        ident!("6191 , 24 : USERID : UNIX : stjohns", None);
        ident!("6192 , 23 : USERID : UNIX : stjohns", None);
        ident!("6191 , 23 : USERID : UNIX :   ", None);
        ident!("6191 , 23 : USERID : UNIX", None);
        ident!("6191 23 : USERID : UNIX : stjohns", None);
        ident!("", None);
        ident!(
            format!("6191 , 23 : USERID : UNIX : {}", "x".repeat(512)),
            Some("x".repeat(512).as_str())
        );
        ident!(
            format!("6191 , 23 : USERID : UNIX : {}", "x".repeat(513)),
            None
        );
    }
}

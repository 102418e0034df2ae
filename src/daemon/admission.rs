//! Who may connect: xinetd's checks on a new connection, in xinetd's order, as one pure
//! function of the service, the counts, the peer, its names and the time. The daemon
//! gathers these inputs (`accept.rs`) and applies the verdict; nothing here reads a
//! clock, a file or a socket.
//!
//! The order, which is the one place it is written down:
//!
//! 0. A SENSOR service trips: the peer goes on the deny list, nothing else is checked.
//! 1. The sensors' deny list: `address`.
//! 2. `only_from` and `no_access`: `address`. A rule that needs the peer's host name
//!    while none was looked up yet asks for the names first (`NeedNames`); the check
//!    runs again from 1 with them.
//! 3. `access_times`: `time`.
//! 4. `max_load`: `load`.
//!
//! Then the limits, for connections that will count against them (a datagram the loop
//! answers itself is checked by 1-4 only):
//!
//! 5. `instances`: `service_limit`.
//! 6. `per_source`: `per_source_limit`.
//! 7. `max_servers`, for services that run a process: `process_limit`.
//! 8. `cps`: `cps`, logged once per episode rather than per connection.
//!
//! A refusal is logged (`FAIL`) unless said otherwise, and costs the peer one accept and
//! one close. What an admitted connection needs next (its ident user, a redirect
//! target's address) is the daemon's business, not a check.

use std::net::IpAddr;
use std::time::Instant;

use super::service_log::Reason;
use crate::access::Decision;
use crate::config::ServiceSpec;
use crate::config::spec::Program;
use crate::limits::{Cps, CpsVerdict, DenyTime};

/// The peer as the checks see it.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub ip: IpAddr,
    /// On the sensors' deny list now.
    pub denied: bool,
}

/// The time, as values. The daemon reads the local minute only for a service with
/// `access_times`, and the load only for one with `max_load`; the others get 0.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    pub minute_of_day: u16,
    pub load: f64,
}

/// What the limits count now.
pub struct Counts<'a> {
    /// This service's servers, sessions and relays.
    pub running: usize,
    /// Of those, the ones from this peer (counted only when `per_source` is set).
    pub from_peer: u32,
    /// Exec'd servers of every service, and the limit on them.
    pub servers: usize,
    pub max_servers: Option<u32>,
    /// The service's cps buckets, which admitting a connection fills.
    pub cps: Option<&'a mut Cps>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Admit,
    Refuse { reason: Reason, log: bool },
    NeedNames,
    Trip(DenyTime),
}

const fn refuse(reason: Reason) -> Verdict {
    Verdict::Refuse { reason, log: true }
}

/// The checks above, in their order. `counts` is `None` for a datagram the loop answers
/// itself; `names` is `None` until the peer's names were looked up.
pub fn decide(
    spec: &ServiceSpec,
    counts: Option<Counts>,
    peer: Peer,
    names: Option<&[String]>,
    now: &Now,
) -> Verdict {
    if let Program::Sensor(time) = spec.program {
        return Verdict::Trip(time);
    }
    if peer.denied {
        return refuse(Reason::Address);
    }
    let access = &spec.access;
    if !access.rules.is_open() {
        match access.rules.decide(peer.ip, names) {
            Decision::Allow => {}
            Decision::Deny => return refuse(Reason::Address),
            Decision::NeedNames => return Verdict::NeedNames,
        }
    }
    if let Some(verdict) = conditions(spec, now) {
        return verdict;
    }
    let Some(counts) = counts else {
        return Verdict::Admit;
    };
    if let Some(verdict) = limits(spec, &counts) {
        return verdict;
    }
    if let Some(cps) = counts.cps
        && let CpsVerdict::Shed { episode_started } = cps.admit(peer.ip, now.instant)
    {
        return Verdict::Refuse {
            reason: Reason::Cps,
            log: episode_started,
        };
    }
    Verdict::Admit
}

/// A connection on a Unix-domain socket: it has no address, so steps 0-2 and 8 (which
/// need one) do not apply, and its service has none of their keys; `from_peer` counts
/// the peer's uid.
pub fn decide_local(spec: &ServiceSpec, counts: Counts, now: &Now) -> Verdict {
    conditions(spec, now)
        .or_else(|| limits(spec, &counts))
        .unwrap_or(Verdict::Admit)
}

/// Steps 3 and 4.
fn conditions(spec: &ServiceSpec, now: &Now) -> Option<Verdict> {
    let access = &spec.access;
    if let Some(times) = &access.times
        && !times.admits(now.minute_of_day)
    {
        return Some(refuse(Reason::Time));
    }
    if let Some(max) = access.max_load
        && now.load >= max
    {
        return Some(refuse(Reason::Load));
    }
    None
}

/// Steps 5 to 7.
fn limits(spec: &ServiceSpec, counts: &Counts) -> Option<Verdict> {
    if !spec.instances.admits(counts.running) {
        return Some(refuse(Reason::ServiceLimit));
    }
    if let Some(limit) = spec.limits.per_source
        && counts.from_peer >= limit
    {
        return Some(refuse(Reason::PerSourceLimit));
    }
    let runs_process = matches!(spec.program, Program::Exec(_));
    if runs_process
        && counts
            .max_servers
            .is_some_and(|max| counts.servers >= max as usize)
    {
        return Some(refuse(Reason::ProcessLimit));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::access::{AccessTimes, Rules, parse_patterns};
    use crate::config::spec::{ExecSpec, Instances, Internal, Protocol, SocketSpec, SocketType};

    /// An internal stream service; `with` changes what a case needs.
    fn spec(with: impl FnOnce(&mut ServiceSpec)) -> ServiceSpec {
        let mut spec = ServiceSpec {
            name: "echo".into(),
            id: "echo".into(),
            file: PathBuf::from("test.toml"),
            socket: SocketSpec {
                socket_type: SocketType::Stream,
                protocol: Protocol::Tcp,
                address: crate::config::spec::Address::Ip(SocketAddr::from(([127, 0, 0, 1], 7))),
                v6only: None,
                backlog: 64,
                nodelay: false,
                keepalive: false,
                timeouts: Default::default(),
            },
            wait: false,
            program: Program::Internal(Internal::Echo),
            instances: Instances::Unlimited,
            tcpmux: None,
            access: Default::default(),
            limits: Default::default(),
            logging: Default::default(),
            banners: Default::default(),
            rpc: None,
            no_retry: false,
        };
        with(&mut spec);
        spec
    }

    fn exec(spec: &mut ServiceSpec) {
        spec.program = Program::Exec(std::rc::Rc::new(ExecSpec {
            server: PathBuf::from("/bin/true"),
            argv: vec!["true".into()],
            identity: None,
            environment: Vec::new().into(),
            umask: None,
            nice: None,
            rlimits: Vec::new(),
            cwd: PathBuf::from("/"),
            no_new_privs: false,
            listen_fds: None,
            setsid: false,
        }));
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    fn only_from(text: &str) -> impl FnOnce(&mut ServiceSpec) {
        let patterns = parse_patterns(&words(text)).unwrap();
        move |spec| {
            std::rc::Rc::make_mut(&mut spec.access).rules = Rules {
                only_from: Some(patterns),
                no_access: Vec::new(),
            }
        }
    }

    const PEER: &str = "10.0.0.1";

    /// A case: the spec, and the world it meets. Everything quiet unless changed.
    struct World {
        denied: bool,
        names: Option<Vec<String>>,
        minute: u16,
        load: f64,
        counts: Option<(usize, u32, usize, Option<u32>)>,
    }

    const QUIET: World = World {
        denied: false,
        names: None,
        minute: 12 * 60,
        load: 0.0,
        counts: Some((0, 0, 0, None)),
    };

    fn verdict(spec: &ServiceSpec, world: World) -> Verdict {
        let now = Now {
            instant: Instant::now(),
            minute_of_day: world.minute,
            load: world.load,
        };
        let counts = world
            .counts
            .map(|(running, from_peer, servers, max_servers)| Counts {
                running,
                from_peer,
                servers,
                max_servers,
                cps: None,
            });
        let peer = Peer {
            ip: PEER.parse().unwrap(),
            denied: world.denied,
        };
        decide(spec, counts, peer, world.names.as_deref(), &now)
    }

    macro_rules! case {
        ($spec:expr, $world:expr => $verdict:expr) => {
            assert_eq!(
                verdict(&$spec, $world),
                $verdict,
                "{}",
                stringify!($spec, $world)
            )
        };
    }

    const ADDRESS: Verdict = refuse(Reason::Address);

    #[test]
    fn each_check_refuses_with_its_reason() {
        let open = spec(|_| {});
        case!(open, QUIET => Verdict::Admit);
        case!(open, World { denied: true, ..QUIET } => ADDRESS);
        case!(spec(only_from("10.0.0.0/8")), QUIET => Verdict::Admit);
        case!(spec(only_from("192.168.0.0/16")), QUIET => ADDRESS);
        case!(spec(only_from("host.example")), QUIET => Verdict::NeedNames);
        let names = Some(vec!["host.example".to_string()]);
        case!(spec(only_from("host.example")), World { names, ..QUIET } => Verdict::Admit);
        case!(spec(only_from("host.example")), World { names: Some(vec![]), ..QUIET } => ADDRESS);
        let office = |spec: &mut ServiceSpec| {
            std::rc::Rc::make_mut(&mut spec.access).times =
                Some(AccessTimes::parse(&words("08:00-17:00")).unwrap())
        };
        case!(spec(office), QUIET => Verdict::Admit);
        case!(spec(office), World { minute: 18 * 60, ..QUIET } => refuse(Reason::Time));
        let loaded =
            |spec: &mut ServiceSpec| std::rc::Rc::make_mut(&mut spec.access).max_load = Some(2.0);
        case!(spec(loaded), World { load: 1.99, ..QUIET } => Verdict::Admit);
        case!(spec(loaded), World { load: 2.0, ..QUIET } => refuse(Reason::Load));
        let two = |spec: &mut ServiceSpec| spec.instances = Instances::Limit(2);
        case!(spec(two), World { counts: Some((1, 0, 0, None)), ..QUIET } => Verdict::Admit);
        case!(spec(two), World { counts: Some((2, 0, 0, None)), ..QUIET } => refuse(Reason::ServiceLimit));
        let per_source =
            |spec: &mut ServiceSpec| std::rc::Rc::make_mut(&mut spec.limits).per_source = Some(1);
        case!(spec(per_source), World { counts: Some((5, 1, 0, None)), ..QUIET } => refuse(Reason::PerSourceLimit));
        // max_servers counts processes: a service served in the loop is not held to it.
        let full = World {
            counts: Some((0, 0, 4, Some(4))),
            ..QUIET
        };
        case!(spec(exec), full => refuse(Reason::ProcessLimit));
        case!(spec(|_| {}), World { counts: Some((0, 0, 4, Some(4))), ..QUIET } => Verdict::Admit);
        case!(spec(|s| s.program = Program::Sensor(DenyTime::Forever)), QUIET => Verdict::Trip(DenyTime::Forever));
    }

    #[test]
    fn checks_run_in_xinetds_order() {
        // Every check fails: the earliest one names the reason.
        let strict = |with_rules: bool| {
            spec(move |spec| {
                exec(spec);
                if with_rules {
                    only_from("192.168.0.0/16")(spec);
                }
                std::rc::Rc::make_mut(&mut spec.access).times =
                    Some(AccessTimes::parse(&words("08:00-09:00")).unwrap());
                std::rc::Rc::make_mut(&mut spec.access).max_load = Some(1.0);
                spec.instances = Instances::Limit(1);
                std::rc::Rc::make_mut(&mut spec.limits).per_source = Some(1);
            })
        };
        let everything = || World {
            denied: true,
            names: None,
            minute: 20 * 60,
            load: 5.0,
            counts: Some((1, 1, 1, Some(1))),
        };
        case!(strict(true), everything() => ADDRESS);
        case!(strict(true), World { denied: false, ..everything() } => ADDRESS);
        case!(strict(false), World { denied: false, ..everything() } => refuse(Reason::Time));
        case!(strict(false), World { denied: false, minute: 8 * 60, ..everything() } => refuse(Reason::Load));
        let limits_only = || World {
            denied: false,
            minute: 8 * 60,
            load: 0.0,
            ..everything()
        };
        case!(strict(false), limits_only() => refuse(Reason::ServiceLimit));
        case!(strict(false), World { counts: Some((0, 1, 1, Some(1))), ..limits_only() } => refuse(Reason::PerSourceLimit));
        case!(strict(false), World { counts: Some((0, 0, 1, Some(1))), ..limits_only() } => refuse(Reason::ProcessLimit));
        // Without counts (a datagram the loop answers), the limits are not checked.
        case!(strict(false), World { counts: None, ..limits_only() } => Verdict::Admit);
        // A sensor trips before any check.
        let sensor = spec(|s| s.program = Program::Sensor(DenyTime::Minutes(5)));
        case!(sensor, everything() => Verdict::Trip(DenyTime::Minutes(5)));
    }

    #[test]
    fn cps_sheds_and_logs_once_per_episode() {
        let spec = spec(|spec| {
            std::rc::Rc::make_mut(&mut spec.limits).cps = Some((1, Duration::from_secs(10)))
        });
        let mut cps = Cps::new(1, Duration::from_secs(10));
        let start = Instant::now();
        let peer = Peer {
            ip: PEER.parse().unwrap(),
            denied: false,
        };
        let at = |offset_ms: u64, cps: &mut Cps| {
            let now = Now {
                instant: start + Duration::from_millis(offset_ms),
                minute_of_day: 0,
                load: 0.0,
            };
            let counts = Counts {
                running: 0,
                from_peer: 0,
                servers: 0,
                max_servers: None,
                cps: Some(cps),
            };
            decide(&spec, Some(counts), peer, None, &now)
        };
        assert_eq!(at(0, &mut cps), Verdict::Admit);
        let shed = |log| Verdict::Refuse {
            reason: Reason::Cps,
            log,
        };
        assert_eq!(at(1, &mut cps), shed(true));
        assert_eq!(at(2, &mut cps), shed(false));
    }
}

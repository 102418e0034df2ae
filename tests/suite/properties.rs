//! Property tests of the pure layers against simple models: access decisions, the cps
//! limiter's promises, and the reload plan. Public API only.
//!
//! Case counts keep the whole file well under five seconds in a debug build; proptest
//! shrinks a failure to a small case and prints it. Nothing is written to the tree
//! (failure persistence is off): a shrunk failure worth keeping becomes a named test.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use oxinetd::access::{self, Decision, Pattern, Rules};
use oxinetd::config::spec::{Address, Instances, Protocol};
use oxinetd::config::{self, Host, ServiceSpec, UserEntry};
use oxinetd::daemon::reload::{self, Change, SocketChange};
use oxinetd::limits::{Cps, CpsVerdict};

fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Access: `Rules::decide` against the rule as src/access.rs's module doc states it.

/// Addresses from small spaces, so that patterns and peers meet often.
fn v4() -> impl Strategy<Value = Ipv4Addr> {
    (0u8..3, 0u8..3, 0u8..3).prop_map(|(b, c, d)| Ipv4Addr::new(10, b, c, d))
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    (0u16..3, 0u16..3).prop_map(|(net, host)| Ipv6Addr::new(0x2001, 0xdb8, net, 0, 0, 0, 0, host))
}

fn peer() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        v4().prop_map(IpAddr::V4),
        v6().prop_map(IpAddr::V6),
        // A dual-stack socket's view of an IPv4 peer.
        v4().prop_map(|v4| IpAddr::V6(v4.to_ipv6_mapped())),
    ]
}

/// Host names from a two-label alphabet: `a.b`, `b`...; some end in a dot or shout.
fn name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(labels, dot, shout)| {
            let name = labels.join(".") + if dot { "." } else { "" };
            if shout { name.to_uppercase() } else { name }
        })
}

/// One `only_from`/`no_access` word as an operator writes it.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        (v4(), 0u8..=32).prop_map(|(address, prefix)| {
            let bits =
                u32::from(address) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            format!("{}/{prefix}", Ipv4Addr::from(bits))
        }),
        v4().prop_map(|address| address.to_string()),
        (
            v6(),
            prop::sample::select(vec![0u8, 32, 48, 64, 112, 127, 128])
        )
            .prop_map(|(address, prefix)| {
                let bits = u128::from(address)
                    & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                format!("{}/{prefix}", Ipv6Addr::from(bits))
            }),
        name(),
        name().prop_map(|name| format!(".{}", name.trim_end_matches('.'))),
    ]
}

fn words() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(word(), 0..4)
}

/// How specific a match is, in the doc's order: `/0`, then domains by their labels,
/// then networks by prefix scaled to 128 bits (an address or host name is 128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Everything,
    Domain(usize),
    Prefix(u32),
}

/// The peer as a family and 128 bits of address (IPv4 in the low 32 bits).
fn family_bits(address: IpAddr) -> (bool, u128, u32) {
    match address {
        IpAddr::V4(v4) => (true, u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (true, u128::from(u32::from(v4)), 32),
            None => (false, u128::from(v6), 128),
        },
    }
}

fn model_rank(pattern: &Pattern, peer: IpAddr, names: &[String]) -> Option<Rank> {
    let names: Vec<String> = names
        .iter()
        .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    match pattern {
        Pattern::Net { network, prefix } => {
            let (peer_v4, peer_bits, width) = family_bits(peer);
            let (net_v4, net_bits, _) = family_bits(*network);
            let prefix = u32::from(*prefix);
            // Families first: an IPv6 prefix can be longer than an IPv4 peer.
            let same = peer_v4 == net_v4
                && (prefix == 0
                    || peer_bits.checked_shr(width - prefix)
                        == net_bits.checked_shr(width - prefix));
            same.then(|| match prefix {
                0 => Rank::Everything,
                _ => Rank::Prefix(prefix * 128 / width),
            })
        }
        Pattern::Host(host) => names.contains(host).then_some(Rank::Prefix(128)),
        // Strictly inside the domain: `x.example.com` is in `.example.com`.
        Pattern::Domain(domain) => names
            .iter()
            .any(|name| name.len() > domain.len() && name.ends_with(domain.as_str()))
            .then(|| Rank::Domain(domain.matches('.').count())),
    }
}

/// xinetd's documented rule, case by case as the module doc lists it.
fn model_allows(rules: &Rules, peer: IpAddr, names: &[String]) -> bool {
    let best = |list: &[Pattern]| {
        list.iter()
            .filter_map(|pattern| model_rank(pattern, peer, names))
            .max()
    };
    let no = best(&rules.no_access);
    match (&rules.only_from, rules.no_access.is_empty()) {
        (None, true) => true,
        (Some(only), true) => best(only).is_some(),
        (None, false) => no.is_none(),
        (Some(only), false) => match (best(only), no) {
            (Some(only), Some(no)) => only > no,
            (Some(_), None) => true,
            _ => false,
        },
    }
}

/// Names that match each name pattern of the rules, and some that match none.
fn name_pool(rules: &Rules) -> Vec<String> {
    let mut pool = vec!["zz-unrelated.invalid".to_string()];
    for pattern in rules.only_from.iter().flatten().chain(&rules.no_access) {
        match pattern {
            Pattern::Host(host) => pool.push(host.clone()),
            Pattern::Domain(domain) => pool.push(format!("zz{domain}")),
            Pattern::Net { .. } => {}
        }
    }
    pool.sort();
    pool.dedup();
    pool.truncate(8);
    pool
}

proptest! {
    #![proptest_config(cases(400))]

    /// With the peer's names known, `decide` is the documented rule. Without them it
    /// answers only when no names could change the answer: every set of names a lookup
    /// could return (here: every subset of names matching the rules' name patterns)
    /// gets that same answer.
    #[test]
    fn access_decisions_follow_the_documented_rule(
        only in prop::option::of(words()),
        no in words(),
        peer in peer(),
        names in prop::collection::vec(name(), 0..3),
    ) {
        let rules = Rules {
            only_from: only.as_ref().map(|words| access::parse_patterns(words).expect("valid words")),
            no_access: access::parse_patterns(&no).expect("valid words"),
        };
        let allow = |allowed| if allowed { Decision::Allow } else { Decision::Deny };
        prop_assert_eq!(
            rules.decide(peer, Some(&names)),
            allow(model_allows(&rules, peer, &names)),
            "names {:?}", names
        );
        let early = rules.decide(peer, None);
        let pool = name_pool(&rules);
        let mut outcomes = Vec::new();
        for subset in 0..1u32 << pool.len() {
            let names: Vec<String> = pool
                .iter()
                .enumerate()
                .filter(|(at, _)| subset & (1 << at) != 0)
                .map(|(_, name)| name.clone())
                .collect();
            let late = rules.decide(peer, Some(&names));
            prop_assert_eq!(late, allow(model_allows(&rules, peer, &names)), "names {:?}", names);
            outcomes.push(late);
            if early != Decision::NeedNames {
                prop_assert_eq!(early, late, "decided without names, but names {:?} change it", names);
            }
        }
        // ...and asks for names only when some names would change the answer. Known
        // exception: a name pattern in both lists (`.example.com` allowed and denied)
        // always ties, so always denies, yet a lookup is asked for. It costs a lookup,
        // never a wrong answer.
        let in_both = rules
            .no_access
            .iter()
            .filter(|pattern| !matches!(pattern, Pattern::Net { .. }))
            .any(|pattern| rules.only_from.iter().flatten().any(|other| other == pattern));
        if early == Decision::NeedNames && !in_both {
            prop_assert!(
                outcomes.iter().any(|outcome| *outcome != outcomes[0]),
                "a lookup asked for, but every set of names gets {:?}", outcomes[0]
            );
        }
        if !rules.uses_names() {
            prop_assert_ne!(early, Decision::NeedNames);
        }
    }
}

// ---------------------------------------------------------------------------------------
// cps: `Cps` against the promises of src/limits.rs's module doc.

/// Peers: two IPv4 hosts, the first also as seen on a dual-stack socket, two addresses
/// of one IPv6 /64 (one source), and one of another /64.
const PEERS: [(&str, usize); 6] = [
    ("10.0.0.1", 0),
    ("::ffff:10.0.0.1", 0),
    ("10.0.0.2", 1),
    ("2001:db8::1", 2),
    ("2001:db8::ffff:2", 2),
    ("2001:db8:0:1::1", 3),
];
const SOURCES: usize = 4;

#[derive(Clone, Debug)]
enum Event {
    /// A connection from `PEERS[peer]`, `gap` milliseconds after the previous event.
    Connect { peer: usize, gap: u64 },
    /// The daemon's timer runs `expire`.
    Expire { gap: u64 },
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let gap = prop_oneof![3 => 0u64..50, 1 => 0u64..1500];
    let event = prop_oneof![
        8 => (0..PEERS.len(), gap.clone()).prop_map(|(peer, gap)| Event::Connect { peer, gap }),
        1 => gap.prop_map(|gap| Event::Expire { gap }),
    ];
    prop::collection::vec(event, 1..300)
}

/// Runs the events through a fresh `Cps`: each connection's (source, time in ms, verdict),
/// and the connections the `expire` calls reported shed (a final one long after).
fn run_cps(rate: u32, pause: u64, events: &[Event]) -> (Vec<(usize, u64, CpsVerdict)>, u64) {
    let start = Instant::now();
    let mut cps = Cps::new(rate, Duration::from_secs(pause));
    let (mut now, mut verdicts, mut reported) = (0u64, Vec::new(), 0u64);
    for event in events {
        match *event {
            Event::Connect { peer, gap } => {
                now += gap;
                let (address, source) = PEERS[peer];
                let at = start + Duration::from_millis(now);
                verdicts.push((source, now, cps.admit(address.parse().unwrap(), at)));
            }
            Event::Expire { gap } => {
                now += gap;
                let at = start + Duration::from_millis(now);
                reported += cps.expire(at).iter().map(|(_, shed, _)| shed).sum::<u64>();
            }
        }
    }
    let end = start + Duration::from_millis(now) + Duration::from_secs(pause + 1);
    reported += cps.expire(end).iter().map(|(_, shed, _)| shed).sum::<u64>();
    (verdicts, reported)
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn cps_bounds_each_source_and_serves_it_again_after_each_episode(
        rate in 1u32..5,
        pause in 1u64..3,
        events in events(),
    ) {
        let (verdicts, reported) = run_cps(rate, pause, &events);
        for source in 0..SOURCES {
            let mine: Vec<(u64, CpsVerdict)> = verdicts
                .iter()
                .filter(|(s, _, _)| *s == source)
                .map(|&(_, at, verdict)| (at, verdict))
                .collect();
            // In any window of t seconds, at most rate + rate * t admitted.
            let admitted: Vec<u64> = mine
                .iter()
                .filter(|(_, verdict)| *verdict == CpsVerdict::Admit)
                .map(|&(at, _)| at)
                .collect();
            for (first, &from) in admitted.iter().enumerate() {
                for (last, &to) in admitted.iter().enumerate().skip(first) {
                    let count = (last - first + 1) as u64;
                    let bound = u64::from(rate) + u64::from(rate) * (to - from) / 1000;
                    prop_assert!(count <= bound, "source {source}: {count} admitted in {} ms", to - from);
                }
            }
            // An episode starts with a shed connection, sheds everything for `pause`,
            // and then the source is served again.
            let mut episode_end: Option<u64> = None;
            for &(at, verdict) in &mine {
                if episode_end.is_some_and(|end| at >= end) {
                    prop_assert_eq!(verdict, CpsVerdict::Admit, "source {}: first connection after its episode, at {} ms", source, at);
                    episode_end = None;
                }
                let in_episode = episode_end.is_some();
                match verdict {
                    CpsVerdict::Shed { episode_started: true } => {
                        prop_assert!(!in_episode, "source {source}: a second episode at {at} ms");
                        episode_end = Some(at + pause * 1000);
                    }
                    CpsVerdict::Shed { episode_started: false } => {
                        prop_assert!(in_episode, "source {source}: shed at {at} ms outside an episode");
                    }
                    CpsVerdict::Admit => {
                        prop_assert!(!in_episode, "source {source}: admitted at {at} ms in an episode");
                    }
                }
            }
        }
        // Every shed connection is in some episode's summary, once.
        let shed = verdicts.iter().filter(|(_, _, v)| *v != CpsVerdict::Admit).count() as u64;
        prop_assert_eq!(reported, shed);
    }

    /// Each source gets the same verdicts whether other sources connect or not, and
    /// whenever the timer runs `expire`.
    #[test]
    fn cps_sources_do_not_affect_each_other(
        rate in 1u32..5,
        pause in 1u64..3,
        events in events(),
    ) {
        let (together, _) = run_cps(rate, pause, &events);
        for source in 0..SOURCES {
            // The same connections at the same times, alone and without timer calls.
            let mut alone_events = Vec::new();
            let mut carried = 0;
            for event in &events {
                match *event {
                    Event::Connect { peer, gap } if PEERS[peer].1 == source => {
                        alone_events.push(Event::Connect { peer, gap: carried + gap });
                        carried = 0;
                    }
                    Event::Connect { gap, .. } | Event::Expire { gap } => carried += gap,
                }
            }
            let (alone, _) = run_cps(rate, pause, &alone_events);
            let mine: Vec<_> = together.iter().filter(|(s, _, _)| *s == source).cloned().collect();
            prop_assert_eq!(mine, alone, "source {}", source);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reload: applying `reload::plan` to the running set gives the new set.

/// Just enough of a system to load one internal service.
struct Bare;

impl Host for Bare {
    fn user(&self, _: &str) -> Option<UserEntry> {
        None
    }
    fn group(&self, _: &str) -> Option<u32> {
        None
    }
    fn group_list(&self, _: &str, gid: u32) -> Vec<u32> {
        vec![gid]
    }
    fn service_port(&self, _: &str, _: Protocol) -> Option<u16> {
        None
    }
    fn is_executable(&self, _: &Path) -> bool {
        false
    }
    fn euid(&self) -> u32 {
        1000
    }
    fn somaxconn(&self) -> u32 {
        4096
    }
    fn environment(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        Vec::new()
    }
    fn read(&self, _: &Path, _: usize) -> io::Result<Vec<u8>> {
        Ok(b"[service.echo]\ntype = \"INTERNAL UNLISTED\"\nsocket_type = \"stream\"\nwait = false\nport = 10000\n".to_vec())
    }
    fn status(&self, _: &Path) -> io::Result<oxinetd::config::FileStatus> {
        Err(io::ErrorKind::NotFound.into())
    }
    fn rpc_number(&self, _: &str) -> Option<u32> {
        None
    }
    fn toml_files(&self, _: &Path) -> io::Result<Vec<PathBuf>> {
        Err(io::ErrorKind::NotFound.into())
    }
}

/// One definition: which service, and settings that ask different things of a reload.
#[derive(Clone, Copy, Debug)]
struct Variant {
    id: usize,
    /// A new port needs a new socket.
    port: u16,
    /// A new backlog or NODELAY is set on the live listener.
    backlog: u32,
    nodelay: bool,
    /// A new instance limit changes nothing about the socket.
    instances: Option<u32>,
}

const IDS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn variants() -> impl Strategy<Value = Vec<Variant>> {
    let variant = (
        0..IDS.len(),
        0u16..2,
        prop::sample::select(vec![16u32, 64]),
        any::<bool>(),
        prop::option::of(1u32..3),
    )
        .prop_map(|(id, port, backlog, nodelay, instances)| Variant {
            id,
            port,
            backlog,
            nodelay,
            instances,
        });
    // Ids are unique in a configuration.
    prop::collection::vec(variant, 0..IDS.len()).prop_map(|mut list| {
        list.sort_by_key(|v| v.id);
        list.dedup_by_key(|v| v.id);
        list
    })
}

/// The variant as a spec: the loaded base, with the public fields changed. Built from a
/// loaded spec, so a field added to `ServiceSpec` later needs nothing here.
fn spec(base: &ServiceSpec, variant: Variant) -> ServiceSpec {
    let mut spec = base.clone();
    spec.id = IDS[variant.id].to_string();
    if let Address::Ip(address) = &mut spec.socket.address {
        address.set_port(10000 + variant.port);
    }
    spec.socket.backlog = variant.backlog;
    spec.socket.nodelay = variant.nodelay;
    spec.instances = variant
        .instances
        .map_or(Instances::Unlimited, Instances::Limit);
    spec
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn applying_the_reload_plan_gives_the_new_set(
        old in variants(),
        new in variants(),
        broken_ids in prop::collection::vec(0..IDS.len(), 0..3),
    ) {
        let loaded = config::load(Path::new("/etc/oxinetd.toml"), &Bare);
        prop_assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let base = &loaded.services[0];
        let old: Vec<ServiceSpec> = old.iter().map(|v| spec(base, *v)).collect();
        let new: Vec<ServiceSpec> = new.iter().map(|v| spec(base, *v)).collect();
        // A broken service is one whose new definition has errors: it is not in the new set.
        let broken: Vec<String> = broken_ids
            .iter()
            .map(|&id| IDS[id].to_string())
            .filter(|id| !new.iter().any(|spec| &spec.id == id))
            .collect();
        let running: Vec<&ServiceSpec> = old.iter().collect();
        let changes = reload::plan(&running, &new, &broken);

        let mut live: BTreeMap<String, ServiceSpec> =
            old.iter().map(|spec| (spec.id.clone(), spec.clone())).collect();
        let mut touched = Vec::new();
        for change in &changes {
            match change {
                Change::Keep(id) => {
                    let new_spec = new.iter().find(|spec| spec.id == *id);
                    prop_assert_eq!(new_spec, live.get(*id), "kept but changed");
                    touched.push(id.to_string());
                }
                Change::KeepOld(id) => {
                    prop_assert!(broken.iter().any(|b| b == id) && live.contains_key(*id));
                    touched.push(id.to_string());
                }
                Change::Update { spec, socket } => {
                    let before = live.get(&spec.id).expect("updates a running service");
                    prop_assert_ne!(before, *spec, "an update that changes nothing");
                    let expected = if before.socket.address != spec.socket.address {
                        SocketChange::Rebind
                    } else if before.socket != spec.socket {
                        SocketChange::Adjust
                    } else {
                        SocketChange::Same
                    };
                    prop_assert_eq!(*socket, expected);
                    touched.push(spec.id.clone());
                    live.insert(spec.id.clone(), (*spec).clone());
                }
                Change::Remove(id) => {
                    prop_assert!(live.remove(*id).is_some(), "removes {} that is not running", id);
                    touched.push(id.to_string());
                }
                Change::Add(spec) => {
                    prop_assert!(live.insert(spec.id.clone(), (*spec).clone()).is_none(), "adds a running service");
                    touched.push(spec.id.clone());
                }
            }
        }
        // One change per service, old or new.
        let mut sorted = touched.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), touched.len(), "a service changed twice: {:?}", touched);
        // The new set, plus the old definitions of the broken services that ran.
        let mut expected: BTreeMap<String, ServiceSpec> =
            new.iter().map(|spec| (spec.id.clone(), spec.clone())).collect();
        for spec in &old {
            if broken.contains(&spec.id) {
                expected.insert(spec.id.clone(), spec.clone());
            }
        }
        prop_assert_eq!(live, expected);
    }
}

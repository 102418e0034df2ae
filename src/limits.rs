//! How many and how fast: per-source counts, the cps rate limit, the sensor deny list.
//!
//! # cps
//!
//! xinetd's `cps = rate pause` turns the whole service off for `pause` seconds once the
//! service as a whole exceeds `rate` connections per second, so one flooder turns it off
//! for everyone. oxinetd limits each source instead:
//!
//! - Each source has a token bucket holding up to `rate` tokens and refilled at `rate`
//!   tokens per second. A connection that takes a token is admitted.
//! - A connection that finds no token starts a shed *episode* for its source (the daemon
//!   logs `FAIL: ID cps` once, for that connection). During the episode every connection
//!   from the source is shed (closed at once) and takes no token.
//! - The episode ends exactly `pause` seconds after it started, however many connections
//!   the source made meanwhile: shed connections do not extend it. This is xinetd's
//!   meaning of `pause` (it re-enables the service after it), per source.
//! - After the episode the source is served again from its bucket as refilled by then.
//!   Nothing took from it during the episode and `pause` is at least one second, the
//!   time an empty bucket takes to fill, so the source starts again with a full bucket,
//!   as after a pause xinetd starts counting afresh. The next connection that finds no
//!   token starts a new episode, with its own `FAIL` line and summary.
//! - Other sources are unaffected.
//!
//! So a source is never shut out for good: one that keeps connecting above `rate`
//! alternates between being served from its bucket and `pause`-long episodes. Shed
//! connections take no tokens, so the bucket alone bounds what a source is served: in
//! any `t` seconds at most `rate + rate * t` connections, and none during its episodes.
//! A source that floods gets its burst of `rate` at the end of each episode and starts
//! the next one at once: `rate` connections per `pause`. One a little above `rate` is
//! served for longer between episodes, at `rate` per second until its burst is spent.
//!
//! A source is an IPv4 address, or an IPv6 /64: a host usually gets a whole /64 from
//! its provider, so limiting each IPv6 address alone would be useless against it.
//! `::ffff:a.b.c.d` is the IPv4 address `a.b.c.d`.
//!
//! Memory is bounded: at most `MAX_TRACKED` sources are tracked. When a new source
//! arrives at a full table, sources whose bucket is full again and that are not in an
//! episode are forgotten; if none is, the one with the fullest bucket that is not in an
//! episode is forgotten (it starts afresh, with a full bucket, when it comes back). If
//! every tracked source is in an episode, new sources share one overflow bucket, with
//! the same rules, whose episodes are reported as `OVERFLOW` (0.0.0.0): flooders cannot
//! evict each other to earn fresh bursts, and everyone else still gets `rate`
//! connections per second.
//!
//! # The sensor deny list
//!
//! Addresses that touched a `SENSOR` service, each until a time or forever. At most
//! `MAX_DENIED` addresses are kept: when it is full, expired entries are dropped first,
//! then the entry that expires soonest (an arbitrary one if all are forever).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::peer::Source;

/// The number of servers running for each peer (`per_source`): an IP address, or a
/// Unix-domain peer's uid.
#[derive(Clone, Debug, Default)]
pub struct PerSource {
    /// Made at the first peer counted: every service holds a `PerSource`, most never
    /// count one, and a map is 48 bytes before it holds anything (a box is 8).
    #[allow(clippy::box_collection)]
    counts: Option<Box<HashMap<Source, u32>>>,
}

impl PerSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// An IP peer is counted by its canonical address (`Source::from`).
    pub fn count(&self, peer: impl Into<Source>) -> u32 {
        self.counts
            .as_ref()
            .and_then(|counts| counts.get(&peer.into()).copied())
            .unwrap_or(0)
    }

    pub fn add(&mut self, peer: impl Into<Source>) {
        *self
            .counts
            .get_or_insert_default()
            .entry(peer.into())
            .or_insert(0) += 1;
    }

    /// Removing a peer that is not counted does nothing; a count of 0 is forgotten.
    pub fn remove(&mut self, peer: impl Into<Source>) {
        let peer = peer.into();
        let Some(counts) = &mut self.counts else {
            return;
        };
        if let Some(count) = counts.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&peer);
            }
        }
    }

    /// How many peers have servers running.
    pub fn len(&self) -> usize {
        self.counts.as_ref().map_or(0, |counts| counts.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The most sources `Cps` tracks one by one.
pub const MAX_TRACKED: usize = 4096;

/// How the shared overflow bucket's episodes are reported by `Cps::expire`.
pub const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// How often `Cps` forgets sources whose bucket is full again, at most.
const SWEEP: Duration = Duration::from_secs(10);

/// The cps rate limit of one service (see the module doc). Its state is boxed: every
/// service holds an `Option<Cps>`, which is one pointer when it has none.
#[derive(Debug)]
pub struct Cps(Box<CpsState>);

impl std::ops::Deref for Cps {
    type Target = CpsState;
    fn deref(&self) -> &CpsState {
        &self.0
    }
}

impl std::ops::DerefMut for Cps {
    fn deref_mut(&mut self) -> &mut CpsState {
        &mut self.0
    }
}

#[derive(Debug)]
pub struct CpsState {
    /// Time for one token to come back.
    interval: Duration,
    /// Time for an empty bucket to fill: `rate` intervals.
    window: Duration,
    pause: Duration,
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by new sources while every tracked one is in an episode.
    overflow: Option<Bucket>,
    /// Episodes found over by `admit`, for the next `expire` to report.
    ended: Vec<(IpAddr, u64, Duration)>,
    /// No episode ends before this (it may be early, never late).
    episode_due: Option<Instant>,
    /// When `expire` next forgets buckets that are full again.
    sweep_due: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpsVerdict {
    Admit,
    /// Close the connection at once; the daemon logs `FAIL: ID cps` when
    /// `episode_started` (once per episode, not per connection).
    Shed {
        episode_started: bool,
    },
}

#[derive(Debug)]
struct Bucket {
    /// When the bucket will be full again; a token is `interval` of it (GCRA's
    /// theoretical arrival time, which needs no floating point).
    full_at: Instant,
    episode: Option<Episode>,
}

#[derive(Debug)]
struct Episode {
    /// The peer that started it, as reported: for IPv6 one address of the /64.
    peer: IpAddr,
    /// It ends `pause` after this, whatever the source does meanwhile.
    started: Instant,
    /// Connections shed, the one that started it included.
    shed: u64,
}

impl Episode {
    fn ends(&self, pause: Duration) -> Instant {
        self.started + pause
    }

    fn report(&self, pause: Duration) -> (IpAddr, u64, Duration) {
        (self.peer, self.shed, pause)
    }
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            full_at: now,
            episode: None,
        }
    }

    /// Not in an episode and full again: forgetting it changes nothing.
    fn idle(&self, now: Instant) -> bool {
        self.episode.is_none() && self.full_at <= now
    }
}

impl Cps {
    /// `rate` connections per second per source (at least 1); an episode sheds the source
    /// for `pause` from its start (at most `u32::MAX` seconds, so instants stay
    /// representable).
    pub fn new(rate: u32, pause: Duration) -> Cps {
        let rate = rate.max(1);
        let pause = pause.min(Duration::from_secs(u64::from(u32::MAX)));
        let interval = Duration::from_secs(1) / rate;
        Cps(Box::new(CpsState {
            interval,
            window: interval * rate,
            pause,
            buckets: HashMap::new(),
            overflow: None,
            ended: Vec::new(),
            episode_due: None,
            sweep_due: None,
        }))
    }
}

impl CpsState {
    /// Judges one connection from `peer` arriving at `now`.
    pub fn admit(&mut self, peer: IpAddr, now: Instant) -> CpsVerdict {
        let peer = peer.to_canonical();
        let source = source(peer);
        let tracked = self.buckets.contains_key(&source);
        if !tracked && self.buckets.len() >= MAX_TRACKED {
            self.make_room(now);
        }
        let (bucket, reported) = if tracked || self.buckets.len() < MAX_TRACKED {
            if !tracked {
                self.sweep_due.get_or_insert(now + SWEEP);
            }
            let bucket = self
                .buckets
                .entry(source)
                .or_insert_with(|| Bucket::new(now));
            (bucket, peer)
        } else {
            let bucket = self.overflow.get_or_insert_with(|| Bucket::new(now));
            (bucket, OVERFLOW)
        };

        if let Some(episode) = &bucket.episode
            && episode.ends(self.pause) <= now
        {
            self.ended.push(episode.report(self.pause));
            bucket.episode = None;
            self.episode_due = Some(now);
        }

        if let Some(episode) = &mut bucket.episode {
            // Shed, taking no token: the bucket refills meanwhile.
            episode.shed += 1;
            return CpsVerdict::Shed {
                episode_started: false,
            };
        }
        let base = bucket.full_at.max(now);
        if base + self.interval - now <= self.window {
            bucket.full_at = base + self.interval;
            return CpsVerdict::Admit;
        }
        let episode = Episode {
            peer: reported,
            started: now,
            shed: 1,
        };
        let ends = episode.ends(self.pause);
        bucket.episode = Some(episode);
        self.episode_due = Some(self.episode_due.map_or(ends, |due| due.min(ends)));
        CpsVerdict::Shed {
            episode_started: true,
        }
    }

    /// Frees a slot in a full table if a bucket can go (see the module doc).
    fn make_room(&mut self, now: Instant) {
        self.buckets.retain(|_, bucket| !bucket.idle(now));
        if self.buckets.len() < MAX_TRACKED {
            return;
        }
        let fullest = self
            .buckets
            .iter()
            .filter(|(_, bucket)| bucket.episode.is_none())
            .min_by_key(|(_, bucket)| bucket.full_at)
            .map(|(&source, _)| source);
        if let Some(source) = fullest {
            self.buckets.remove(&source);
        }
    }

    /// Episodes that ended (peer, connections shed, how long): the daemon logs a summary
    /// line for each. Called from a timer at `next_deadline`; also forgets idle buckets.
    ///
    /// An episode lasts `pause` from the connection that started it, so the duration
    /// reported is always `pause`. The peer is the one that started the episode
    /// (`OVERFLOW` for the shared bucket).
    pub fn expire(&mut self, now: Instant) -> Vec<(IpAddr, u64, Duration)> {
        let mut ended = std::mem::take(&mut self.ended);
        let mut due: Option<Instant> = None;
        let pause = self.pause;
        for bucket in self.buckets.values_mut().chain(self.overflow.as_mut()) {
            let Some(episode) = &bucket.episode else {
                continue;
            };
            let ends = episode.ends(pause);
            if ends <= now {
                ended.push(episode.report(pause));
                bucket.episode = None;
            } else {
                due = Some(due.map_or(ends, |due| due.min(ends)));
            }
        }
        self.buckets.retain(|_, bucket| !bucket.idle(now));
        if self
            .overflow
            .as_ref()
            .is_some_and(|bucket| bucket.idle(now))
        {
            self.overflow = None;
        }
        self.episode_due = due;
        let waiting = self.buckets.values().chain(&self.overflow);
        self.sweep_due = waiting
            .into_iter()
            .any(|bucket| bucket.episode.is_none())
            .then_some(now + SWEEP);
        ended
    }

    /// When `expire` next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.episode_due, self.sweep_due]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether an episode may be running: true from the one that starts it until the
    /// `expire` that ends the last (for `oxinetd status`).
    pub fn shedding(&self) -> bool {
        self.episode_due.is_some()
    }

    /// How many sources are tracked one by one.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// The address a peer is limited by: itself for IPv4, its /64 for IPv6.
fn source(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

/// Parses `cps = [rate, pause]` (already split into words): rate connections per
/// second, pause in seconds, both at least 1.
pub fn parse_cps(words: &[String]) -> Result<(u32, Duration), String> {
    let [rate, pause] = words else {
        return Err(
            "needs two numbers: the rate (connections per second) and the pause (seconds), like [25, 30]"
                .into(),
        );
    };
    let rate = positive("rate", rate)?;
    let pause = positive("pause", pause)?;
    Ok((rate, Duration::from_secs(u64::from(pause))))
}

fn positive(what: &str, text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {text:?} is not a whole number"));
    }
    match text.parse::<u32>() {
        Ok(0) => Err(format!("{what} must be at least 1")),
        Ok(value) => Ok(value),
        Err(_) => Err(format!("{what} {text} is too large")),
    }
}

/// How long a `SENSOR` service denies a peer that touched it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyTime {
    /// Only log the peer.
    Never,
    Forever,
    Minutes(u32),
}

/// Parses `deny_time`: `"FOREVER"`, `"NEVER"` (any case) or a number of minutes ≥ 1.
pub fn parse_deny_time(text: &str) -> Result<DenyTime, String> {
    if text.eq_ignore_ascii_case("FOREVER") {
        return Ok(DenyTime::Forever);
    }
    if text.eq_ignore_ascii_case("NEVER") {
        return Ok(DenyTime::Never);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a number of minutes, \"FOREVER\" or \"NEVER\""
        ));
    }
    match text.parse::<u32>() {
        Ok(0) => Err("must be at least 1 minute (\"NEVER\" only logs)".into()),
        Ok(minutes) => Ok(DenyTime::Minutes(minutes)),
        Err(_) => Err(format!("{text} minutes is too long (use \"FOREVER\")")),
    }
}

/// The most addresses the sensor deny list holds.
pub const MAX_DENIED: usize = 65536;

/// Addresses denied by `SENSOR` services: until when (None is forever).
#[derive(Clone, Debug, Default)]
pub struct DenyList {
    until: HashMap<IpAddr, Option<Instant>>,
}

impl DenyList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Denies `peer` for `time` from `now`; true if it was not denied already. A peer
    /// denied already keeps the later of its two ends.
    pub fn add(&mut self, peer: IpAddr, time: DenyTime, now: Instant) -> bool {
        let until = match time {
            DenyTime::Never => return false,
            DenyTime::Forever => None,
            // An end too far to represent is forever.
            DenyTime::Minutes(minutes) => {
                now.checked_add(Duration::from_secs(u64::from(minutes) * 60))
            }
        };
        let peer = peer.to_canonical();
        if let Some(current) = self.until.get_mut(&peer) {
            let active = current.is_none_or(|end| now < end);
            *current = match (active, *current, until) {
                (false, _, until) => until,
                (true, Some(a), Some(b)) => Some(a.max(b)),
                (true, _, _) => None,
            };
            return !active;
        }
        if self.until.len() >= MAX_DENIED {
            self.make_room(now);
        }
        self.until.insert(peer, until);
        true
    }

    fn make_room(&mut self, now: Instant) {
        self.purge(now);
        if self.until.len() < MAX_DENIED {
            return;
        }
        let soonest = self
            .until
            .iter()
            .min_by_key(|(_, until)| (until.is_none(), **until))
            .map(|(&peer, _)| peer);
        if let Some(peer) = soonest {
            self.until.remove(&peer);
        }
    }

    pub fn denies(&self, peer: IpAddr, now: Instant) -> bool {
        self.until
            .get(&peer.to_canonical())
            .is_some_and(|until| until.is_none_or(|end| now < end))
    }

    /// Forgets the entries that have expired.
    pub fn purge(&mut self, now: Instant) {
        self.until
            .retain(|_, until| until.is_none_or(|end| now < end));
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn per_source() {
        let mut counts = PerSource::new();
        counts.add(ip("10.0.0.1"));
        counts.add(ip("::ffff:10.0.0.1"));
        counts.add(ip("::1"));
        assert_eq!(counts.count(ip("10.0.0.1")), 2);
        assert_eq!(counts.count(ip("::1")), 1);
        assert_eq!(counts.count(ip("::2")), 0);
        counts.remove(ip("10.0.0.1"));
        assert_eq!(counts.count(ip("::ffff:10.0.0.1")), 1);
        counts.remove(ip("10.0.0.1"));
        counts.remove(ip("10.0.0.1"));
        counts.remove(ip("10.9.9.9"));
        assert_eq!(counts.count(ip("10.0.0.1")), 0);
        assert_eq!(counts.len(), 1);
        counts.remove(ip("::1"));
        assert!(counts.is_empty());
    }

    /// Peers of the cps scripts: `a` and `m` are one IPv4 address, `c` and `d` share a
    /// /64, `e` is in another /64.
    const PEERS: &[(&str, &str)] = &[
        ("a", "10.0.0.1"),
        ("m", "::ffff:10.0.0.1"),
        ("b", "10.0.0.2"),
        ("c", "2001:db8::1"),
        ("d", "2001:db8::2"),
        ("e", "2001:db8:0:1::1"),
    ];

    fn peer(name: &str) -> IpAddr {
        ip(PEERS.iter().find(|(n, _)| *n == name).unwrap().1)
    }

    fn name(address: IpAddr) -> &'static str {
        if address == OVERFLOW {
            return "*";
        }
        PEERS.iter().find(|(_, a)| ip(a) == address).unwrap().0
    }

    /// Runs a script of space-separated steps against `Cps::new(rate, pause seconds)`,
    /// times in milliseconds from the start:
    /// - `a@250=A` peer `a` connects at 250 ms: `A` admitted, `S` shed starting an
    ///   episode, `s` shed in one;
    /// - `expire@3000=a/4/3000,b/1/2000` expire reports these episodes (peer/shed/ms),
    ///   sorted; `expire@3000=` reports none;
    /// - `next=3000` next_deadline is 3000 ms from the start, `next=-` none.
    fn run(rate: u32, pause: u64, script: &str) {
        let start = Instant::now();
        let at = |ms: &str| start + Duration::from_millis(ms.parse().unwrap());
        let mut cps = Cps::new(rate, Duration::from_secs(pause));
        for step in script.split_whitespace() {
            if let Some(want) = step.strip_prefix("next=") {
                let got = cps.next_deadline().map_or("-".to_string(), |deadline| {
                    (deadline - start).as_millis().to_string()
                });
                assert_eq!(got, want, "{script}: at step {step}");
                continue;
            }
            let (who, rest) = step.split_once('@').unwrap();
            let (ms, want) = rest.split_once('=').unwrap();
            let got = if who == "expire" {
                let mut ended: Vec<String> = cps
                    .expire(at(ms))
                    .into_iter()
                    .map(|(peer, shed, took)| format!("{}/{shed}/{}", name(peer), took.as_millis()))
                    .collect();
                ended.sort();
                ended.join(",")
            } else {
                match cps.admit(peer(who), at(ms)) {
                    CpsVerdict::Admit => "A",
                    CpsVerdict::Shed {
                        episode_started: true,
                    } => "S",
                    CpsVerdict::Shed {
                        episode_started: false,
                    } => "s",
                }
                .to_string()
            };
            assert_eq!(got, want, "{script}: at step {step}");
        }
    }

    #[test]
    fn cps_buckets() {
        // A burst of `rate`, then one token per 1/rate seconds.
        run(2, 5, "a@0=A a@0=A a@0=S");
        run(3, 5, "a@0=A a@0=A a@0=A a@0=S");
        run(2, 5, "a@0=A a@0=A a@499=S");
        run(2, 5, "a@0=A a@0=A a@500=A a@500=S");
        run(2, 5, "a@0=A a@0=A a@1000=A a@1000=A a@1000=S");
        // The bucket holds at most `rate` tokens however long the peer was away.
        run(2, 5, "a@0=A a@60000=A a@60000=A a@60000=S");
        // One peer's flood sheds only that peer.
        run(1, 5, "a@0=A a@0=S a@0=s b@0=A b@1=S c@1=A");
        // IPv4 per address, a dual-stack peer is its IPv4 address.
        run(1, 5, "a@0=A m@0=S b@0=A");
        // IPv6 per /64.
        run(1, 5, "c@0=A d@0=S e@0=A");
    }

    #[test]
    fn cps_episodes() {
        // An episode lasts `pause` from its start.
        run(1, 2, "a@0=A a@0=S a@1999=s a@2000=A");
        run(1, 2, "a@0=A a@0=S a@2000=A");
        run(1, 2, "a@0=A a@0=S a@1999=s a@3000=A");
        // Excess connections during it do not extend it, however many: a source that
        // keeps flooding is served again at the end (the old rule, `pause` after the
        // last excess connection, would shed a@2000 and every one after it).
        run(
            1,
            2,
            "a@0=A a@0=S a@500=s a@1000=s a@1000=s a@1500=s a@1999=s a@1999=s a@2000=A",
        );
        run(1, 2, "a@0=A a@0=S a@500=s a@2100=A");
        // Shed connections take no tokens: the bucket refills during the episode and the
        // source comes out with its whole burst.
        run(
            3,
            1,
            "a@0=A a@0=A a@0=A a@0=S a@100=s a@500=s a@999=s a@1000=A a@1000=A a@1000=A a@1000=S",
        );
        // A source that slows down below `rate` stays served.
        run(
            1,
            2,
            "a@0=A a@0=S a@1000=s a@2000=A a@3000=A a@4000=A a@5000=A",
        );
        // A new excess connection after the end starts a new episode, which again lasts
        // `pause` from its own start.
        run(
            1,
            2,
            "a@0=A a@0=S a@2000=A a@2000=S a@3000=s a@3999=s a@4000=A",
        );
        run(1, 0, "a@0=A a@0=S a@1=S");
    }

    /// A client from `a` connecting every `period_ms` from 0 to `until_ms` against
    /// `Cps::new(rate, pause s)`, with `expire` called as soon as `next_deadline` is due
    /// (the daemon's housekeeping comes later, which changes only when summaries appear):
    /// its verdicts as runs `A9@0` (9 admitted from 0 ms
    /// on; `S` starts an episode, `s` shed in one), and the episodes `expire` reported
    /// (shed/ms).
    fn client(rate: u32, pause: u64, period_ms: u64, until_ms: u64) -> (String, String) {
        let start = Instant::now();
        let mut cps = Cps::new(rate, Duration::from_secs(pause));
        let mut runs: Vec<(char, u64, u64)> = Vec::new();
        let mut ended = Vec::new();
        for ms in (0..=until_ms).step_by(period_ms as usize) {
            let now = start + Duration::from_millis(ms);
            if let Some(due) = cps.next_deadline()
                && due <= now
            {
                for (who, shed, took) in cps.expire(due) {
                    assert_eq!(who, peer("a"));
                    ended.push(format!("{shed}/{}", took.as_millis()));
                }
            }
            let verdict = match cps.admit(peer("a"), now) {
                CpsVerdict::Admit => 'A',
                CpsVerdict::Shed {
                    episode_started: true,
                } => 'S',
                CpsVerdict::Shed {
                    episode_started: false,
                } => 's',
            };
            match runs.last_mut() {
                Some((letter, count, _)) if *letter == verdict => *count += 1,
                _ => runs.push((verdict, 1, ms)),
            }
        }
        let runs: Vec<String> = runs
            .iter()
            .map(|(letter, count, from)| format!("{letter}{count}@{from}"))
            .collect();
        (runs.join(" "), ended.join(" "))
    }

    #[test]
    fn cps_episode_ends_at_start_plus_pause_under_continuous_excess() {
        // (rate, pause, period, until): verdict runs, episodes reported.
        let table: &[(u32, u64, u64, u64, &str, &str)] = &[
            // Every 100 ms against 1/s: each episode is exactly 2 s, then one is served.
            (
                1,
                2,
                100,
                6500,
                "A1@0 S1@100 s19@200 A1@2100 S1@2200 s19@2300 A1@4200 S1@4300 s19@4400 A1@6300 S1@6400 s1@6500",
                "20/2000 20/2000 20/2000",
            ),
            // The client: every 250 ms against cps = [3, 2]. Its burst of 3 and
            // 3 tokens a second serve it for 2 s, then 2 s of episode, then again.
            (
                3,
                2,
                250,
                10000,
                "A9@0 S1@2250 s7@2500 A9@4250 S1@6500 s7@6750 A7@8500",
                "8/2000 8/2000",
            ),
            // A flood (every 10 ms) gets its burst of `rate` per episode, no more.
            (
                3,
                1,
                10,
                2500,
                "A3@0 S1@30 s99@40 A3@1030 S1@1060 s99@1070 A3@2060 S1@2090 s41@2100",
                "100/1000 100/1000",
            ),
            // At the rate exactly: never an episode.
            (4, 5, 250, 10000, "A41@0", ""),
        ];
        for &(rate, pause, period, until, runs, ended) in table {
            assert_eq!(
                client(rate, pause, period, until),
                (runs.to_string(), ended.to_string()),
                "cps = [{rate}, {pause}], a connection every {period} ms until {until} ms"
            );
        }
    }

    #[test]
    fn cps_never_shuts_out_a_source_above_the_rate() {
        // Clients a little and far above the rate, for 2 simulated minutes.
        for (rate, pause) in [(1, 1), (3, 2), (25, 30), (10, 1)] {
            let per_token = 1000 / u64::from(rate);
            for period in [1, per_token / 2, per_token * 3 / 4, per_token * 9 / 10] {
                let period = period.max(1);
                let what = format!("cps = [{rate}, {pause}], every {period} ms");
                let start = Instant::now();
                let pause_ms = pause * 1000;
                let mut cps = Cps::new(rate, Duration::from_secs(pause));
                let mut admitted = Vec::new();
                let mut episode: Option<u64> = None;
                let mut episodes = 0;
                for ms in (0..=120_000).step_by(period as usize) {
                    let verdict = cps.admit(peer("a"), start + Duration::from_millis(ms));
                    match verdict {
                        CpsVerdict::Admit => {
                            // Never during an episode; and the first connection after
                            // one is served.
                            if let Some(began) = episode.take() {
                                assert!(ms >= began + pause_ms, "{what}: served at {ms} ms");
                            }
                            admitted.push(ms);
                        }
                        CpsVerdict::Shed {
                            episode_started: true,
                        } => {
                            // Not while one runs, nor without serving one first after it.
                            assert!(episode.is_none(), "{what}: not served before {ms} ms");
                            episode = Some(ms);
                            episodes += 1;
                        }
                        CpsVerdict::Shed {
                            episode_started: false,
                        } => {
                            let began = episode.expect("shed outside an episode");
                            assert!(ms < began + pause_ms, "{what}: still shed at {ms} ms");
                        }
                    }
                }
                assert!(episodes > 1, "{what}: {episodes} episodes");
                // Served again after every episode but one still running at the end.
                assert!(
                    admitted.len() >= episodes * rate as usize,
                    "{what}: {} served in {episodes} episodes",
                    admitted.len()
                );
                // The bucket bounds it: at most `rate` at once plus `rate` a second.
                for (i, &from) in admitted.iter().enumerate() {
                    let within = admitted[i..].iter().take_while(|&&t| t < from + 1000);
                    assert!(
                        within.count() <= 2 * rate as usize,
                        "{what}: too many served in the second from {from} ms"
                    );
                }
            }
        }
    }

    #[test]
    fn cps_expire() {
        run(
            1,
            2,
            "next=- a@0=A next=10000 a@0=S next=2000 a@500=s next=2000 expire@1999= next=2000 expire@2000=a/2/2000 next=-",
        );
        run(
            1,
            2,
            "a@0=A a@0=S a@500=s a@700=s a@1999=s expire@2700=a/4/2000 next=-",
        );
        run(
            1,
            2,
            "a@0=A a@0=S b@100=A b@100=S expire@2000=a/1/2000 expire@2100=b/1/2000",
        );
        run(
            1,
            2,
            "a@0=A a@0=S b@0=A b@0=S expire@5000=a/1/2000,b/1/2000 expire@9000=",
        );
        // An episode found over by `admit` is reported by the next `expire`.
        run(
            1,
            2,
            "a@0=A a@0=S a@3000=A next=3000 expire@3000=a/1/2000 next=13000",
        );
        run(
            1,
            2,
            "a@0=A a@0=S a@3000=A a@3000=S expire@3000=a/1/2000 next=5000",
        );
        run(1, 2, "c@0=A d@0=S c@0=s expire@2000=d/2/2000");
        // Idle buckets are forgotten, the sweep is rescheduled while some wait.
        run(1, 2, "a@0=A next=10000 expire@10000= next=-");
        run(
            2,
            2,
            "a@0=A a@9999=A a@9999=A next=10000 expire@10000= next=20000 expire@20000= next=-",
        );
    }

    #[test]
    fn cps_table_is_bounded() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let nth = |n: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n as u32));
        let mut cps = Cps::new(1, Duration::from_secs(2));
        // Peer n comes at n/10 ms, so its bucket is full again at 1000 + n/10 ms.
        for n in 0..MAX_TRACKED {
            let when = start + Duration::from_micros(100 * n as u64);
            assert_eq!(cps.admit(nth(n), when), CpsVerdict::Admit);
        }
        // Full: a new peer evicts the fullest bucket, peer 0's, which starts afresh.
        assert_eq!(cps.admit(nth(MAX_TRACKED), at(600)), CpsVerdict::Admit);
        assert_eq!(cps.tracked(), MAX_TRACKED);
        assert_eq!(cps.admit(nth(0), at(600)), CpsVerdict::Admit);
        assert_eq!(
            cps.admit(nth(2), at(600)),
            CpsVerdict::Shed {
                episode_started: true
            }
        );
        // Buckets that are full again are forgotten first: at 1100 ms those of peers
        // 3 to 1000 (0 came back, 1 was evicted, 2 is in an episode).
        assert_eq!(cps.admit(nth(MAX_TRACKED + 1), at(1100)), CpsVerdict::Admit);
        assert_eq!(cps.tracked(), MAX_TRACKED - 998 + 1);

        // Every tracked peer in an episode: new peers share the overflow bucket.
        let mut cps = Cps::new(1, Duration::from_secs(2));
        for n in 0..MAX_TRACKED {
            cps.admit(nth(n), at(0));
            cps.admit(nth(n), at(0));
        }
        let shed = |started| CpsVerdict::Shed {
            episode_started: started,
        };
        assert_eq!(cps.admit(nth(MAX_TRACKED), at(100)), CpsVerdict::Admit);
        assert_eq!(cps.admit(nth(MAX_TRACKED + 1), at(100)), shed(true));
        assert_eq!(cps.admit(nth(MAX_TRACKED + 2), at(100)), shed(false));
        assert_eq!(cps.admit(nth(5), at(100)), shed(false));
        assert_eq!(cps.tracked(), MAX_TRACKED);
        let ended = cps.expire(at(2100));
        assert_eq!(ended.len(), MAX_TRACKED + 1);
        assert!(ended.contains(&(OVERFLOW, 2, Duration::from_secs(2))));
        assert!(ended.contains(&(nth(5), 2, Duration::from_secs(2))));
        assert_eq!(cps.tracked(), 0);
    }

    macro_rules! ok {
        ($parse:ident($($arg:expr),*) => $want:expr) => {
            assert_eq!($parse($($arg),*), Ok($want), "{}", stringify!($($arg),*));
        };
    }

    macro_rules! err {
        ($parse:ident($($arg:expr),*) => $needle:literal) => {
            let message = $parse($($arg),*).unwrap_err();
            assert!(message.contains($needle), "{}: {message}", stringify!($($arg),*));
        };
    }

    fn cps(text: &str) -> Result<(u32, Duration), String> {
        let words: Vec<String> = text.split_whitespace().map(String::from).collect();
        parse_cps(&words)
    }

    #[test]
    fn parsing() {
        ok!(cps("25 30") => (25, Duration::from_secs(30)));
        ok!(cps("1 1") => (1, Duration::from_secs(1)));
        err!(cps("25") => "needs two numbers");
        err!(cps("") => "needs two numbers");
        err!(cps("1 2 3") => "needs two numbers");
        err!(cps("0 30") => "rate must be at least 1");
        err!(cps("25 0") => "pause must be at least 1");
        err!(cps("-1 30") => "rate \"-1\" is not a whole number");
        err!(cps("25 1.5") => "pause \"1.5\" is not a whole number");
        err!(cps("99999999999 1") => "rate 99999999999 is too large");

        ok!(parse_deny_time("FOREVER") => DenyTime::Forever);
        ok!(parse_deny_time("forever") => DenyTime::Forever);
        ok!(parse_deny_time("Never") => DenyTime::Never);
        ok!(parse_deny_time("1") => DenyTime::Minutes(1));
        ok!(parse_deny_time("120") => DenyTime::Minutes(120));
        err!(parse_deny_time("0") => "at least 1 minute");
        err!(parse_deny_time("") => "is not a number of minutes");
        err!(parse_deny_time("always") => "\"always\" is not a number of minutes, \"FOREVER\" or \"NEVER\"");
        err!(parse_deny_time("-5") => "is not a number of minutes");
        err!(parse_deny_time("99999999999") => "too long");
    }

    #[test]
    fn deny_list() {
        let start = Instant::now();
        let min = |m: u64| start + Duration::from_secs(60 * m);
        let mut list = DenyList::new();
        assert!(!list.add(ip("10.0.0.1"), DenyTime::Never, min(0)));
        assert!(!list.denies(ip("10.0.0.1"), min(0)));
        assert!(list.is_empty());

        assert!(list.add(ip("10.0.0.1"), DenyTime::Minutes(2), min(0)));
        assert!(list.denies(ip("10.0.0.1"), min(0)));
        assert!(list.denies(ip("::ffff:10.0.0.1"), min(1)));
        assert!(!list.denies(ip("10.0.0.2"), min(1)));
        assert!(!list.denies(ip("10.0.0.1"), min(2)));
        // Again while denied: not new, and the later end is kept.
        assert!(!list.add(ip("10.0.0.1"), DenyTime::Minutes(5), min(1)));
        assert!(!list.add(ip("10.0.0.1"), DenyTime::Minutes(1), min(1)));
        assert!(list.denies(ip("10.0.0.1"), min(5)));
        assert!(!list.denies(ip("10.0.0.1"), min(6)));
        // Expired but not yet purged: new again.
        assert!(list.add(ip("10.0.0.1"), DenyTime::Minutes(1), min(7)));
        assert!(!list.denies(ip("10.0.0.1"), min(8)));

        assert!(list.add(ip("::1"), DenyTime::Forever, min(0)));
        assert!(!list.add(ip("::1"), DenyTime::Minutes(1), min(0)));
        assert!(list.denies(ip("::1"), min(1_000_000)));
        assert!(list.add(ip("::2"), DenyTime::Minutes(1), min(0)));
        assert!(!list.add(ip("::2"), DenyTime::Forever, min(0)));
        assert!(list.denies(ip("::2"), min(1_000_000)));
        assert!(list.add(ip("::3"), DenyTime::Minutes(u32::MAX), min(0)));
        assert!(list.denies(ip("::3"), min(1_000_000)));

        assert_eq!(list.len(), 4);
        list.purge(min(8));
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn deny_list_is_bounded() {
        let start = Instant::now();
        let nth = |n: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n as u32));
        let mut list = DenyList::new();
        list.add(nth(0), DenyTime::Forever, start);
        for n in 1..MAX_DENIED {
            list.add(nth(n), DenyTime::Minutes(10 + n as u32), start);
        }
        assert_eq!(list.len(), MAX_DENIED);
        // Full: the entry that expires soonest goes.
        assert!(list.add(nth(MAX_DENIED), DenyTime::Minutes(1), start));
        assert_eq!(list.len(), MAX_DENIED);
        assert!(!list.denies(nth(1), start));
        assert!(list.denies(nth(0), start));
        assert!(list.denies(nth(2), start));
        // Expired entries go first.
        let later = start + Duration::from_secs(60 * 13);
        assert!(list.add(nth(MAX_DENIED + 1), DenyTime::Forever, later));
        assert_eq!(list.len(), MAX_DENIED - 2);
        assert!(list.denies(nth(0), later));
    }
}

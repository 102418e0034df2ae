//! A connection in flight, from accept to what serves it: one value, parked or not,
//! and the inputs admission reads that are not the service's own (the load average).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::admission::Now;
use super::slab::ServiceKey;
use crate::clock;
use crate::config::ServiceSpec;

/// An ident server that has not answered by then counts as no answer.
pub const IDENT_TIMEOUT: Duration = Duration::from_secs(5);
/// /proc/loadavg changes every 5 s; reading it once per 100 ms is plenty.
const LOAD_REFRESH: Duration = Duration::from_millis(100);

/// An accepted connection on its way to a server, session or relay.
pub struct Incoming {
    pub key: ServiceKey,
    pub fd: OwnedFd,
    pub remote: SocketAddr,
    /// Reached through tcpmux: the reply line comes before any banner.
    pub via_tcpmux: bool,
}

impl Incoming {
    pub fn peer(&self) -> IpAddr {
        self.remote.ip().to_canonical()
    }
}

/// A connection waiting for an answer from the lookup threads.
pub struct Parked {
    pub incoming: Incoming,
    pub stage: Stage,
}

/// What a parked connection waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The peer's host names, for an access rule that names hosts.
    Names,
    /// The peer's ident (RFC 1413) user.
    Ident,
    /// A redirect target's address.
    Resolve,
}

/// The 1-minute load average, read at most once per `LOAD_REFRESH`.
#[derive(Default)]
pub struct LoadAverage {
    value: f64,
    read_at: Option<Instant>,
}

impl LoadAverage {
    pub fn current(&mut self, now: Instant) -> f64 {
        if self
            .read_at
            .is_none_or(|at| now.duration_since(at) >= LOAD_REFRESH)
        {
            if let Some(value) = std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse().ok())
            {
                self.value = value;
            }
            self.read_at = Some(now);
        }
        self.value
    }
}

/// What admission reads of the clock and the machine for `spec`, read only when the
/// service asks: the local minute with `access_times`, the load with `max_load`.
pub fn now_for(spec: &ServiceSpec, instant: Instant, load: &mut LoadAverage) -> Now {
    Now {
        instant,
        minute_of_day: match spec.access.times {
            Some(_) => clock::local_now().minute_of_day(),
            None => 0,
        },
        load: match spec.access.max_load {
            Some(_) => load.current(instant),
            None => 0.0,
        },
    }
}

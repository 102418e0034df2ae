//! Deadlines: each names what to look at again when it passes. The loop's epoll
//! timeout is the time to the earliest.

use std::time::Instant;

use nix::sys::epoll::EpollTimeout;

use super::slab::{ParkedKey, ServiceKey, SessionKey};

pub enum Timer {
    /// Watch a service's listener again (after a back-off or a pause).
    Arm(ServiceKey),
    /// A session's connect, idle or request deadline may have passed.
    Session(SessionKey),
    /// A parked connection's lookup took too long.
    Parked(ParkedKey),
    /// Forget cps buckets and deny-list entries that expired.
    Housekeeping,
    /// Tell systemd's watchdog the loop is alive.
    Watchdog,
}

#[derive(Default)]
pub struct Timers {
    pending: Vec<(Instant, Timer)>,
}

impl Timers {
    pub fn push(&mut self, at: Instant, timer: Timer) {
        self.pending.push((at, timer));
    }

    pub fn any_due(&self, now: Instant) -> bool {
        self.pending.iter().any(|(at, _)| *at <= now)
    }

    /// Takes the timers that passed by `now`; the others stay.
    pub fn take_due(&mut self, now: Instant) -> Vec<Timer> {
        let (due, pending): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(at, _)| *at <= now);
        self.pending = pending;
        due.into_iter().map(|(_, timer)| timer).collect()
    }

    /// How long epoll may wait: until the earliest timer or `also`, rounded up so the
    /// deadline has passed when the loop wakes, and at most a minute.
    pub fn timeout(&self, also: Option<Instant>) -> EpollTimeout {
        let next = self.pending.iter().map(|(at, _)| *at).chain(also).min();
        match next {
            None => EpollTimeout::NONE,
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                let millis = wait.as_micros().div_ceil(1000).min(60_000) as u16;
                EpollTimeout::from(millis)
            }
        }
    }
}

//! Deadlines: each names what to look at again when it passes. The loop's epoll
//! timeout is the time to the earliest.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use nix::sys::epoll::EpollTimeout;
use nix::unistd::Pid;

use super::slab::{ParkedKey, ServiceKey, SessionKey};

pub enum Timer {
    /// Watch a service's listener again (after a back-off or a pause).
    Arm(ServiceKey),
    /// A session's connect, idle, request or `max_duration` deadline may have passed.
    Session(SessionKey),
    /// A server's `max_duration` (or the grace after its SIGTERM) may have passed. The
    /// pid may have been reaped and reused since: `Children` checks the deadline.
    Child(Pid),
    /// Quiet servers were reaped only at the end of each loop turn: reap, and wake on
    /// exits again.
    ReapLater,
    /// A parked connection's lookup took too long.
    Parked(ParkedKey),
    /// Forget cps buckets and deny-list entries that expired.
    Housekeeping,
    /// A control client's deadline may have passed (`control`, by slot).
    Control(u8),
    /// Tell systemd's watchdog the loop is alive.
    Watchdog,
}

/// Kept in a heap by deadline, so the loop finds the earliest in O(1) each turn however
/// many servers and sessions have a `max_duration`. A timer whose server or session is
/// gone stays until its time and then finds nothing to do.
#[derive(Default)]
pub struct Timers {
    pending: BinaryHeap<Pending>,
}

struct Pending {
    at: Instant,
    timer: Timer,
}

/// Ordered by deadline alone, earliest greatest: `BinaryHeap` is a max-heap.
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Pending {}

impl Timers {
    pub fn push(&mut self, at: Instant, timer: Timer) {
        self.pending.push(Pending { at, timer });
    }

    pub fn any_due(&self, now: Instant) -> bool {
        self.pending.peek().is_some_and(|next| next.at <= now)
    }

    /// Takes the timers that passed by `now`, earliest first; the others stay.
    pub fn take_due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due = Vec::new();
        while self.any_due(now) {
            due.extend(self.pending.pop().map(|next| next.timer));
        }
        due
    }

    /// How long epoll may wait: until the earliest timer or `also`, rounded up so the
    /// deadline has passed when the loop wakes, and at most a minute.
    pub fn timeout(&self, also: Option<Instant>) -> EpollTimeout {
        let next = self
            .pending
            .peek()
            .map(|next| next.at)
            .into_iter()
            .chain(also)
            .min();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn due_timers_come_out_earliest_first_and_the_rest_stay() {
        let now = Instant::now();
        let mut timers = Timers::default();
        let second = Duration::from_secs(1);
        timers.push(now + second * 3, Timer::Housekeeping);
        timers.push(now + second, Timer::Child(Pid::from_raw(1)));
        timers.push(now + second * 2, Timer::Child(Pid::from_raw(2)));
        timers.push(now + second * 9, Timer::Child(Pid::from_raw(9)));
        assert!(!timers.any_due(now));
        assert!(timers.take_due(now).is_empty());
        let due: Vec<String> = timers
            .take_due(now + second * 3)
            .iter()
            .map(|timer| match timer {
                Timer::Child(pid) => pid.to_string(),
                Timer::Housekeeping => "housekeeping".to_string(),
                _ => "other".to_string(),
            })
            .collect();
        assert_eq!(due, ["1", "2", "housekeeping"]);
        assert!(!timers.any_due(now + second * 8));
        assert!(timers.any_due(now + second * 9));
    }
}

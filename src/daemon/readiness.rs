//! Tells systemd how the daemon is (`notify`): ready, reloading, stopping, a status
//! line, and the watchdog's keep-alive. Nothing is sent outside systemd.

use std::time::Instant;

use log::warn;

use super::Daemon;
use super::timers::Timer;
use crate::notify::{self, Notifier};
use crate::sys;

/// The notifier systemd asked for through the environment, if any. A `NOTIFY_SOCKET`
/// oxinetd cannot use is logged and ignored: the daemon serves all the same.
pub(super) fn notifier() -> Option<Notifier> {
    use std::os::unix::ffi::OsStringExt;
    let lookup = |name: &str| std::env::var_os(name).map(OsStringExt::into_vec);
    Notifier::new(lookup, std::process::id()).unwrap_or_else(|error| {
        warn!("systemd notification: {error}; not notifying");
        None
    })
}

impl Daemon {
    /// Once every listener is bound and the pidfile written: `READY=1` with the status,
    /// and the watchdog's first deadline.
    pub fn ready(&mut self) {
        self.notify(&format!("READY=1\n{}", self.status_line()));
        if let Some(interval) = self.notifier.as_ref().and_then(Notifier::watchdog_interval) {
            self.timers.push(Instant::now() + interval, Timer::Watchdog);
        }
    }

    /// Before a reload reads the configuration: systemd's `Type=notify-reload` waits for
    /// this, with the monotonic time it correlates with its own SIGHUP.
    pub(super) fn notify_reloading(&self) {
        if self.notifier.is_some() {
            self.notify(&notify::reloading(sys::time::monotonic()));
        }
    }

    /// After a reload, applied or refused: ready again, with the status.
    pub(super) fn notify_reloaded(&self) {
        if self.notifier.is_some() {
            self.notify(&format!("READY=1\n{}", self.status_line()));
        }
    }

    pub(super) fn notify_stopping(&self) {
        self.notify("STOPPING=1");
    }

    /// Half of `WATCHDOG_USEC` has passed: the loop is alive, and says so.
    pub(super) fn watchdog(&mut self, now: Instant) {
        self.notify("WATCHDOG=1");
        if let Some(interval) = self.notifier.as_ref().and_then(Notifier::watchdog_interval) {
            self.timers.push(now + interval, Timer::Watchdog);
        }
    }

    fn status_line(&self) -> String {
        format!(
            "STATUS={} services, {} servers running",
            self.services.len(),
            self.children.len()
        )
    }

    /// A lost notification costs that message only; it is logged once.
    fn notify(&self, state: &str) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        if let Err(error) = notifier.send(state)
            && !self.notify_failed.replace(true)
        {
            warn!("systemd notification failed: {error} (further failures are not logged)");
        }
    }
}

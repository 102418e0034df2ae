//! The event loop: one epoll set holding the signalfd, every listener, every session of
//! a service the daemon serves itself, and the lookup threads' eventfd. It calls the
//! pure layers (config, reload plan, admission) and the spawner; it owns every fd and
//! every child.
//!
//! The state lives in rooms, each the one owner of its piece, none importing another's
//! handlers: `services` (listeners and their lifecycle, with `rpcbind` and
//! `listeners`), `sessions`, `children`, `timers`, `signals`, `control` (the control
//! socket and what `oxinetd status` tells), `poller` (the epoll set in `Token`s), and
//! `slab` for their keys. The files named for events (`accept`, `parking`, `servers`,
//! `datagrams`, `on_session`, and `local` for Unix-domain listeners) are this loop's
//! handlers: each an
//! `impl Daemon` block that moves a connection from one room to the next.

mod accept;
mod admission;
mod children;
mod control;
mod datagrams;
mod incoming;
mod inherited;
pub mod listeners;
mod local;
pub mod lookup;
mod on_session;
mod parking;
mod poller;
mod readiness;
pub mod relay;
pub mod reload;
mod rpcbind;
mod servers;
mod service_log;
mod services;
mod sessions;
mod signals;
mod slab;
mod timers;

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::signal::Signal;

use crate::config::{self, Config, ServiceSpec};
use crate::limits::DenyList;
use crate::logging;
use crate::spawn::Spawner;
use crate::system::System;
use children::Children;
use control::Control;
use incoming::{LoadAverage, Parked};
use lookup::Lookups;
use poller::{Poller, Token};
use service_log::Lines;
use services::{OwnedChange, Services};
use sessions::Sessions;
use signals::Signals;
use slab::{ParkedKey, Slab};
use timers::{Timer, Timers};

/// After SIGKILL, how long shutdown waits for the kernel to reap.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// Threads for DNS and ident lookups; started only when a service needs one.
const LOOKUP_THREADS: usize = 4;

pub use signals::block as block_signals;

pub struct Daemon {
    config_path: PathBuf,
    /// What the load of the configuration that runs made of each included file: the
    /// next reload reads, parses and validates only the files that changed.
    cache: config::Cache,
    poller: Poller,
    signals: Signals,
    spawner: Spawner,
    services: Services,
    sessions: Sessions,
    parked: Slab<ParkedKey, Parked>,
    children: Children,
    timers: Timers,
    lines: Lines,
    lookups: Lookups,
    lookups_watched: bool,
    control: Control,
    deny_list: DenyList,
    load: LoadAverage,
    max_servers: Option<u32>,
    housekeeping_due: Option<Instant>,
    shutdown_grace: Duration,
    /// Set once shutdown begins: when to SIGKILL, then when to give up waiting.
    stopping: Option<Instant>,
    killed: bool,
    fd_exhaustion_logged: bool,
    datagram: Vec<u8>,
    scratch: Vec<u8>,
    /// systemd's `NOTIFY_SOCKET`, when oxinetd runs under it (`readiness`).
    notifier: Option<crate::notify::Notifier>,
    notify_failed: std::cell::Cell<bool>,
}

impl Daemon {
    pub fn new(config_path: &Path, syslog_socket: PathBuf) -> io::Result<Daemon> {
        let poller = Poller::new()?;
        let signals = Signals::new()?;
        poller.add(&signals, Token::Signals, EpollFlags::EPOLLIN)?;
        Ok(Daemon {
            config_path: config_path.to_path_buf(),
            cache: config::Cache::default(),
            poller,
            signals,
            spawner: Spawner::new(),
            services: Services::default(),
            sessions: Sessions::default(),
            parked: Slab::default(),
            children: Children::default(),
            timers: Timers::default(),
            lines: Lines::new(syslog_socket),
            lookups: Lookups::new(LOOKUP_THREADS)?,
            lookups_watched: false,
            control: Control::default(),
            deny_list: DenyList::new(),
            load: LoadAverage::default(),
            max_servers: None,
            housekeeping_due: None,
            shutdown_grace: config::DEFAULT_SHUTDOWN_GRACE,
            stopping: None,
            killed: false,
            fd_exhaustion_logged: false,
            datagram: vec![0; 65536],
            scratch: Vec::new(),
            notifier: readiness::notifier(),
            notify_failed: std::cell::Cell::new(false),
        })
    }

    /// Starts every service of a loaded configuration, keeping the cache of its load
    /// for the reloads; returns how many listen.
    pub fn start(&mut self, config: Config, cache: config::Cache) -> usize {
        self.cache = cache;
        // A line per service: written together (64 KiB a write), not one write each.
        logging::hold_lines();
        self.shutdown_grace = config.shutdown_grace;
        self.max_servers = config.max_servers;
        self.control
            .configure(config.control_socket.as_deref(), &self.poller);
        self.control.forget_failures(config.disabled);
        self.services
            .inherit(inherited::Inherited::from_environment(&config.services));
        for spec in config.services {
            let failed = control::Failed::of(&spec);
            let name = spec.id.clone();
            if let Err(message) = self.services.add(spec, &self.poller, &mut self.lines) {
                error!("service {name}: {message}");
                self.control.failed_to_start(failed, message);
            }
        }
        self.services.forget_prepared();
        logging::release_lines();
        // The load's garbage (the TOML tree, the definitions) goes back to the system.
        crate::sys::memory::release_free_memory();
        self.services.len()
    }

    /// Runs until shutdown completes.
    pub fn run(&mut self) -> io::Result<()> {
        logging::hold_lines();
        let result = self.run_loop();
        self.lines.sinks.flush();
        logging::release_lines();
        result
    }

    fn run_loop(&mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            // Log lines are written once per turn, not once per line.
            self.lines.sinks.flush();
            logging::flush();
            let timeout = self.timers.timeout(self.stopping);
            let count = self.poller.wait(&mut events, timeout)?;
            for event in &events[..count] {
                match Token::from_u64(event.data()) {
                    Token::Signals => self.on_signals(),
                    Token::Lookups => self.on_lookup_answers(),
                    Token::Control(event) => self.on_control(event),
                    Token::Listener(key) => self.on_listener(key),
                    Token::Session(key) => self.on_session(key),
                }
            }
            if !self.signals.wakes_on_exits() {
                self.reap();
            }
            let now = Instant::now();
            if self.timers.any_due(now) || self.stopping.is_some_and(|at| now >= at) {
                self.run_timers();
            }
            if self.stopping.is_some() && (self.children.is_empty() || self.gave_up_waiting()) {
                info!("shutdown: done");
                return Ok(());
            }
        }
    }

    fn on_signals(&mut self) {
        let pending = self.signals.take();
        if pending.reap {
            self.reap();
        }
        if pending.status {
            self.status_to_stderr();
        }
        if pending.stop && self.stopping.is_none() {
            self.begin_shutdown();
        } else if pending.reload && self.stopping.is_none() {
            // Rotated log files are reopened with the reload, as xinetd's users expect.
            self.lines.sinks.reopen();
            self.notify_reloading();
            self.reload();
            self.notify_reloaded();
        }
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        for timer in self.timers.take_due(now) {
            match timer {
                Timer::Arm(key) => self.services.set_armed(key, true, &self.poller),
                Timer::Session(key) => self.session_deadline(key),
                Timer::Child(pid) => self.child_deadline(pid),
                Timer::ReapLater => self.reap_on_exit(),
                Timer::Parked(key) => self.parked_deadline(key),
                Timer::Housekeeping => self.housekeeping(now),
                Timer::Control(slot) => self.control_deadline(slot),
                Timer::Watchdog => self.watchdog(now),
            }
        }
        if let Some(deadline) = self.stopping
            && now >= deadline
            && !self.killed
        {
            let grace = self.shutdown_grace.as_secs();
            self.children.signal_all(Signal::SIGKILL, |pid| {
                warn!("shutdown: killing pid={pid} after {grace} s");
            });
            self.killed = true;
            self.stopping = Some(now + KILL_WAIT);
        }
    }

    fn gave_up_waiting(&self) -> bool {
        self.killed
            && self
                .stopping
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    fn begin_shutdown(&mut self) {
        self.reap_on_exit();
        self.notify_stopping();
        info!(
            "shutdown: closing listeners, stopping {} servers",
            self.children.len()
        );
        self.services.remove_all(&self.poller);
        self.control.close(&self.poller);
        for key in self.sessions.keys() {
            self.end_session(key);
        }
        self.unpark_all();
        self.children.signal_all(Signal::SIGTERM, |_| {});
        self.stopping = Some(Instant::now() + self.shutdown_grace);
    }

    fn reload(&mut self) {
        // The new configuration may set `max_servers`, which counts every server.
        self.reap_on_exit();
        self.apply_new_config();
        // Only once the new configuration is applied and the old dropped: what the load
        // freed goes back to the system.
        crate::sys::memory::release_free_memory();
    }

    fn apply_new_config(&mut self) {
        info!("reloading {}", self.config_path.display());
        let (config, cache) =
            config::load_cached(&self.config_path, &System::new(), Some(&mut self.cache));
        log_diagnostics(&config);
        if config.files_read + config.files_unchanged > 0 {
            info!(
                "reload: {} included files read, {} unchanged since the last load",
                config.files_read, config.files_unchanged
            );
        }
        let mut errors: Vec<String> = config.errors.iter().map(ToString::to_string).collect();
        if config.fatal {
            error!("reload: failed, keeping the old configuration");
            let summary = format!(
                "failed, keeping the old configuration ({})",
                counted(errors.len(), "error")
            );
            // The cache stays the one of the configuration that runs.
            self.control.reloaded(false, summary, errors);
            return;
        }
        self.cache = cache;
        self.shutdown_grace = config.shutdown_grace;
        self.max_servers = config.max_servers;
        self.lines
            .sinks
            .set_syslog_socket(config.syslog_socket.clone());
        let running: Vec<&Rc<ServiceSpec>> = self.services.specs().collect();
        let changes: Vec<OwnedChange> = reload::plan(&running, &config.services, &config.broken)
            .into_iter()
            .map(OwnedChange::from)
            .collect();
        // Before the changes, so a service added or updated now is not tried twice.
        self.services.reopen_failed_logs(&mut self.lines);
        self.services.register_missing_rpc();
        self.control
            .configure(config.control_socket.as_deref(), &self.poller);
        self.control.forget_failures(config.disabled);
        for change in changes {
            let failed = match &change {
                OwnedChange::Add(spec) => Some(control::Failed::of(spec)),
                _ => None,
            };
            let applied =
                self.services
                    .apply(change, &self.poller, &mut self.lines, &self.children);
            if let Err(message) = applied {
                if let Some(failed) = failed {
                    self.control.failed_to_start(failed, message.clone());
                }
                errors.push(message);
            }
        }
        self.services.forget_prepared();
        let used: Vec<_> = self.services.logs().filter_map(|log| log.sink).collect();
        self.lines.sinks.retain(&used);
        info!("reload: done ({} services)", self.services.len());
        let services = counted(self.services.len(), "service");
        let summary = match errors.len() {
            0 => format!("done ({services})"),
            n => format!("{}; {services} running", counted(n, "error")),
        };
        self.control.reloaded(errors.is_empty(), summary, errors);
    }
}

/// `1 error`, `2 errors`.
fn counted(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

pub fn log_diagnostics(config: &Config) {
    for error in &config.errors {
        error!("{error}");
    }
    for warning in &config.warnings {
        warn!("{warning}");
    }
}

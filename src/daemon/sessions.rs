//! Connections the daemon serves itself, without a process: internal stream services,
//! redirect relays, and tcpmux clients still sending the name of their service. This
//! room keeps them and their place in the epoll set; `on_session.rs` moves them on.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Instant;

use log::error;
use nix::sys::epoll::EpollFlags;

use super::poller::{Poller, Token};
use super::relay::Relay;
use super::service_log::ServiceLog;
use super::slab::{ServiceKey, SessionKey, Slab};
use crate::internal::{Interest, Session};

pub enum Work {
    Internal(Session),
    Relay(Box<Relay>),
    Mux(MuxRequest),
}

/// A tcpmux client that has not sent its whole request line yet.
pub struct MuxRequest {
    pub stream: TcpStream,
    pub remote: SocketAddr,
}

pub struct SessionEntry {
    pub work: Work,
    pub service: ServiceKey,
    pub log: Rc<ServiceLog>,
    pub peer: IpAddr,
    /// Counted against `per_source`.
    pub counted: bool,
    pub started: Instant,
    /// `max_duration`: when the daemon closes it, whatever it is doing.
    pub ends: Option<Instant>,
    /// The flags each fd is in the epoll set with; empty means not in the set, since
    /// epoll reports hang-ups whatever the flags and would wake the loop forever.
    registered: [EpollFlags; 2],
}

impl SessionEntry {
    pub fn new(work: Work, service: ServiceKey, log: Rc<ServiceLog>, peer: IpAddr) -> Self {
        SessionEntry {
            work,
            service,
            log,
            peer,
            counted: false,
            started: Instant::now(),
            ends: None,
            registered: [EpollFlags::empty(); 2],
        }
    }

    fn streams(&self) -> [Option<&TcpStream>; 2] {
        match &self.work {
            Work::Internal(session) => [Some(&session.stream), None],
            Work::Relay(relay) => [Some(relay.client()), Some(relay.upstream())],
            Work::Mux(request) => [Some(&request.stream), None],
        }
    }

    fn wanted(&self) -> [EpollFlags; 2] {
        match &self.work {
            Work::Internal(session) => [flags(session.interest()), EpollFlags::empty()],
            Work::Relay(relay) => [
                flags(relay.client_interest()),
                flags(relay.upstream_interest()),
            ],
            Work::Mux(_) => [EpollFlags::EPOLLIN, EpollFlags::empty()],
        }
    }
}

fn flags(interest: Interest) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    if interest.read {
        flags |= EpollFlags::EPOLLIN;
    }
    if interest.write {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}

#[derive(Default)]
pub struct Sessions {
    slab: Slab<SessionKey, SessionEntry>,
}

impl Sessions {
    pub fn insert(&mut self, entry: SessionEntry) -> SessionKey {
        self.slab.insert(entry)
    }

    pub fn get(&self, key: SessionKey) -> Option<&SessionEntry> {
        self.slab.get(key)
    }

    pub fn get_mut(&mut self, key: SessionKey) -> Option<&mut SessionEntry> {
        self.slab.get_mut(key)
    }

    pub fn keys(&self) -> Vec<SessionKey> {
        self.slab.keys()
    }

    /// Brings the epoll set in line with what the session waits for.
    pub fn update_interest(&mut self, key: SessionKey, poller: &Poller) -> bool {
        let Some(entry) = self.slab.get_mut(key) else {
            return false;
        };
        let wanted = entry.wanted();
        for (side, stream) in entry.streams().into_iter().enumerate() {
            let Some(stream) = stream else {
                continue;
            };
            let (had, want) = (entry.registered[side], wanted[side]);
            if had == want {
                continue;
            }
            let token = Token::Session(key);
            let result = if had.is_empty() {
                poller.add(stream, token, want)
            } else if want.is_empty() {
                poller.delete(stream)
            } else {
                poller.modify(stream, token, want)
            };
            if let Err(errno) = result {
                error!("epoll: {errno}");
                return false;
            }
        }
        entry.registered = wanted;
        true
    }

    /// Takes a session out of the epoll set and the room.
    pub fn take(&mut self, key: SessionKey, poller: &Poller) -> Option<SessionEntry> {
        let entry = self.slab.remove(key)?;
        for (stream, flags) in entry.streams().into_iter().zip(entry.registered) {
            if let Some(stream) = stream
                && !flags.is_empty()
            {
                let _ = poller.delete(stream);
            }
        }
        Some(entry)
    }
}

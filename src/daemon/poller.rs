//! The epoll set, spoken in tokens: what an event is for, decoded in one place.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::slab::{Key, ServiceKey, SessionKey};

/// What an epoll event is about. Keys carry their generation, so an event for a
/// listener or session replaced since is recognised and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Signals,
    Lookups,
    Control(ControlEvent),
    Listener(ServiceKey),
    Session(SessionKey),
}

/// The control socket's listener or one of its clients (`control`), by slot. A slot
/// reused within one batch of events may see its predecessor's event: harmless, a
/// client's reads and writes are non-blocking and each retried on the next event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlEvent {
    Listener,
    Client(u8),
}

const SIGNALS: u64 = u64::MAX;
const LOOKUPS: u64 = u64::MAX - 1;
const CONTROL: u64 = u64::MAX - 2;
/// Control clients count down from here, one value per slot (at most 256). Like the
/// two above, these are session tokens of generation 2^31 - 1 at an index past four
/// billion: never reached.
const CONTROL_CLIENT: u64 = u64::MAX - 3;
const CONTROL_CLIENT_LAST: u64 = CONTROL_CLIENT - u8::MAX as u64;
const SESSION_BIT: u64 = 1 << 63;

impl Token {
    pub fn to_u64(self) -> u64 {
        match self {
            Token::Signals => SIGNALS,
            Token::Lookups => LOOKUPS,
            Token::Control(ControlEvent::Listener) => CONTROL,
            Token::Control(ControlEvent::Client(slot)) => CONTROL_CLIENT - u64::from(slot),
            Token::Listener(key) => key.to_u64(),
            Token::Session(key) => SESSION_BIT | key.to_u64(),
        }
    }

    pub fn from_u64(data: u64) -> Token {
        match data {
            SIGNALS => Token::Signals,
            LOOKUPS => Token::Lookups,
            CONTROL => Token::Control(ControlEvent::Listener),
            CONTROL_CLIENT_LAST..=CONTROL_CLIENT => {
                Token::Control(ControlEvent::Client((CONTROL_CLIENT - data) as u8))
            }
            _ if data & SESSION_BIT != 0 => Token::Session(SessionKey::from_u64(data)),
            _ => Token::Listener(ServiceKey::from_u64(data)),
        }
    }
}

pub struct Poller {
    epoll: Epoll,
}

impl Poller {
    pub fn new() -> nix::Result<Poller> {
        Ok(Poller {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
        })
    }

    pub fn add(&self, fd: impl AsFd, token: Token, flags: EpollFlags) -> nix::Result<()> {
        self.epoll.add(fd, EpollEvent::new(flags, token.to_u64()))
    }

    pub fn modify(&self, fd: impl AsFd, token: Token, flags: EpollFlags) -> nix::Result<()> {
        self.epoll
            .modify(fd, &mut EpollEvent::new(flags, token.to_u64()))
    }

    pub fn delete(&self, fd: impl AsFd) -> nix::Result<()> {
        self.epoll.delete(fd)
    }

    /// Waits for events; EINTR reads as none.
    pub fn wait(&self, events: &mut [EpollEvent], timeout: EpollTimeout) -> nix::Result<usize> {
        match self.epoll.wait(events, timeout) {
            Err(Errno::EINTR) => Ok(0),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for token in [
            Token::Signals,
            Token::Lookups,
            Token::Control(ControlEvent::Listener),
            Token::Control(ControlEvent::Client(0)),
            Token::Control(ControlEvent::Client(255)),
            Token::Listener(ServiceKey::from_parts(0, 0)),
            Token::Listener(ServiceKey::from_parts(u32::MAX, 0x7fff_ffff)),
            Token::Session(SessionKey::from_parts(0, 0)),
            Token::Session(SessionKey::from_parts(7, 0x7fff_fffe)),
        ] {
            assert_eq!(Token::from_u64(token.to_u64()), token, "{token:?}");
        }
    }
}

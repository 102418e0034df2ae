//! Listening sockets systemd hands over (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`):
//! which service each one is for, and the pool they wait in until a service takes one.
//!
//! A socket goes to the service whose `id` is its name, else to the service whose socket
//! type, address and port it has (`assign`, pure). It stays that service's for the
//! daemon's life: a reload never closes or re-binds it, and a service a reload removes
//! gives it back to the pool, where the service (or another with its address) finds it
//! again. Sockets no service claims at start-up are logged and closed.

use std::borrow::Borrow;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use log::{info, warn};
use socket2::{Socket, Type};

use crate::config::ServiceSpec;
use crate::config::spec::SocketType;
use crate::sys;

/// systemd's first passed fd (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;
/// More than any socket unit hands over; a larger count is a mistake, not a plan.
const MOST_FDS: usize = 4096;

/// What a service wants of a socket; what an inherited socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub socket_type: SocketType,
    pub address: SocketAddr,
}

impl Shape {
    /// `None` for a Unix-domain service: only IP sockets are taken from systemd.
    fn of(spec: &ServiceSpec) -> Option<Shape> {
        Some(Shape {
            socket_type: spec.socket.socket_type,
            address: spec.socket.address.ip()?,
        })
    }

    /// The same kind of socket on the same address and port (flow and scope ids of
    /// IPv6 aside).
    fn matches(&self, other: &Shape) -> bool {
        self.socket_type == other.socket_type
            && self.address.ip() == other.address.ip()
            && self.address.port() == other.address.port()
    }
}

/// An inherited socket as `assign` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub name: Option<&'a str>,
    /// `None` when it is no socket oxinetd can serve (not TCP or UDP over IP).
    pub shape: Option<Shape>,
}

/// For each candidate, the index of the service that gets it, if any. Names first: a
/// socket named after a service's `id` (and of its socket type) is that service's. Then
/// addresses: a socket nobody named goes to the first service, in order, of its type,
/// address and port. One socket per service; a second socket for a service is claimed
/// by none.
pub fn assign(services: &[(&str, Shape)], candidates: &[Candidate]) -> Vec<Option<usize>> {
    let mut owner: Vec<Option<usize>> = vec![None; candidates.len()];
    let mut served = vec![false; services.len()];
    for (candidate, owner) in candidates.iter().zip(owner.iter_mut()) {
        let (Some(name), Some(shape)) = (candidate.name, candidate.shape) else {
            continue;
        };
        if let Some(index) = services
            .iter()
            .position(|(id, want)| *id == name && want.socket_type == shape.socket_type)
            && !served[index]
        {
            served[index] = true;
            *owner = Some(index);
        }
    }
    for (candidate, owner) in candidates.iter().zip(owner.iter_mut()) {
        let Some(shape) = candidate.shape.filter(|_| owner.is_none()) else {
            continue;
        };
        if let Some(index) =
            (0..services.len()).find(|&i| !served[i] && services[i].1.matches(&shape))
        {
            served[index] = true;
            *owner = Some(index);
        }
    }
    owner
}

/// The fds' names, when the variables say they are for this process (`LISTEN_PID`):
/// one entry per fd from 3 on, its `LISTEN_FDNAMES` name if it has a non-empty one.
pub fn handed_over(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    own_pid: u32,
) -> Vec<Option<String>> {
    let ours = pid.and_then(|pid| pid.trim().parse::<u32>().ok()) == Some(own_pid);
    let Some(count) = fds
        .filter(|_| ours)
        .and_then(|fds| fds.trim().parse::<usize>().ok())
    else {
        return Vec::new();
    };
    let mut names = names.unwrap_or("").split(':');
    (0..count.min(MOST_FDS))
        .map(|_| {
            names
                .next()
                .filter(|name| !name.is_empty())
                .map(str::to_string)
        })
        .collect()
}

struct Handed {
    socket: Socket,
    name: Option<String>,
    shape: Option<Shape>,
    /// The service id that claimed it; `None` when any service of its shape may.
    owner: Option<String>,
}

/// The inherited sockets not in use by a service.
#[derive(Default)]
pub struct Inherited {
    pool: Vec<Handed>,
}

impl Inherited {
    /// Takes the sockets systemd handed over and assigns them to `services`; the ones no
    /// service claims are logged and closed.
    pub fn from_environment(services: &[impl Borrow<ServiceSpec>]) -> Inherited {
        let variable = |name| std::env::var(name).ok();
        let names = handed_over(
            variable("LISTEN_PID").as_deref(),
            variable("LISTEN_FDS").as_deref(),
            variable("LISTEN_FDNAMES").as_deref(),
            std::process::id(),
        );
        if names.is_empty() {
            return Inherited::default();
        }
        let handed: Vec<Handed> = sys::fd::take_inherited(FIRST_FD, names.len())
            .into_iter()
            .map(Socket::from)
            .zip(names)
            .map(|(socket, name)| Handed {
                shape: shape_of(&socket),
                socket,
                name,
                owner: None,
            })
            .collect();
        Inherited::assigned(handed, services)
    }

    fn assigned(mut handed: Vec<Handed>, services: &[impl Borrow<ServiceSpec>]) -> Inherited {
        let services: Vec<(&ServiceSpec, Shape)> = services
            .iter()
            .map(Borrow::borrow)
            .filter(|spec| spec.tcpmux.is_none())
            .filter_map(|spec| Some((spec, Shape::of(spec)?)))
            .collect();
        let wants: Vec<(&str, Shape)> = services
            .iter()
            .map(|(spec, shape)| (spec.id.as_str(), *shape))
            .collect();
        let candidates: Vec<Candidate> = handed
            .iter()
            .map(|handed| Candidate {
                name: handed.name.as_deref(),
                shape: handed.shape,
            })
            .collect();
        let owners = assign(&wants, &candidates);
        for (handed, owner) in handed.iter_mut().zip(owners) {
            handed.owner = owner.map(|index| services[index].0.id.clone());
        }
        let (claimed, unclaimed): (Vec<_>, Vec<_>) = handed
            .into_iter()
            .partition(|handed| handed.owner.is_some());
        for handed in unclaimed {
            warn!(
                "systemd socket {}: no service claims it; closed",
                describe(&handed)
            );
        }
        Inherited { pool: claimed }
    }

    /// The socket for `spec`: the one it claimed or held, else one of its shape (the
    /// socket of a service a reload renamed, say). At start-up every socket in the pool
    /// is claimed, and each claiming service takes its own before any other looks.
    pub fn take(&mut self, spec: &ServiceSpec) -> Option<Socket> {
        let shape = Shape::of(spec)?;
        let at = self
            .pool
            .iter()
            .position(|handed| handed.owner.as_deref() == Some(spec.id.as_str()))
            .or_else(|| {
                self.pool
                    .iter()
                    .position(|handed| handed.shape.is_some_and(|s| s.matches(&shape)))
            })?;
        let handed = self.pool.swap_remove(at);
        info!(
            "service {}: listening on the socket systemd handed over ({})",
            spec.id,
            describe(&handed)
        );
        Some(handed.socket)
    }

    /// A socket a removed service held: kept (never closed by a reload) for that service
    /// when it comes back, or another of its shape.
    pub fn give_back(&mut self, id: &str, socket: Socket) {
        self.pool.push(Handed {
            shape: shape_of(&socket),
            socket,
            name: None,
            owner: Some(id.to_string()),
        });
    }
}

/// `fd 3 "name" stream 127.0.0.1:80`, for the log.
fn describe(handed: &Handed) -> String {
    let name = handed
        .name
        .as_deref()
        .map_or(String::new(), |name| format!(" {name:?}"));
    let shape = match handed.shape {
        Some(Shape {
            socket_type,
            address,
        }) => format!("{} {address}", socket_type.name()),
        None => "not a TCP or UDP socket".to_string(),
    };
    format!("fd {}{name} {shape}", handed.socket.as_raw_fd())
}

/// The socket type (SO_TYPE) and bound address (getsockname) of an inherited fd.
fn shape_of(socket: &Socket) -> Option<Shape> {
    let socket_type = match socket.r#type().ok()? {
        Type::STREAM => SocketType::Stream,
        Type::DGRAM => SocketType::Dgram,
        _ => return None,
    };
    let address = socket.local_addr().ok()?.as_socket()?;
    Some(Shape {
        socket_type,
        address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(kind: SocketType, address: &str) -> Option<Shape> {
        Some(Shape {
            socket_type: kind,
            address: address.parse().unwrap(),
        })
    }

    use SocketType::{Dgram, Stream};

    #[test]
    fn sockets_go_by_name_then_by_type_address_and_port() {
        let services = [
            ("web", shape(Stream, "0.0.0.0:80").unwrap()),
            ("time", shape(Dgram, "127.0.0.1:37").unwrap()),
            ("web2", shape(Stream, "0.0.0.0:80").unwrap()),
            ("v6", shape(Stream, "[::1]:79").unwrap()),
        ];
        let c = |name, shape| Candidate { name, shape };
        #[rustfmt::skip]
        let cases: &[(&[Candidate], &[Option<usize>])] = &[
            // By name, whatever the address (systemd's unit says where it listens).
            (&[c(Some("web2"), shape(Stream, "0.0.0.0:8080"))], &[Some(2)]),
            // A name of another type is no claim; nor is its address another type's.
            (&[c(Some("time"), shape(Stream, "127.0.0.1:37"))], &[None]),
            // By address: the first service of that shape; the second socket the next.
            (&[c(None, shape(Stream, "0.0.0.0:80")), c(None, shape(Stream, "0.0.0.0:80"))],
             &[Some(0), Some(2)]),
            // A name claims before any address does, whatever the order of the fds.
            (&[c(None, shape(Stream, "0.0.0.0:80")), c(Some("web"), shape(Stream, "0.0.0.0:80"))],
             &[Some(2), Some(0)]),
            // A name that is no service falls back to the address.
            (&[c(Some("unknown"), shape(Dgram, "127.0.0.1:37"))], &[Some(1)]),
            // Two sockets named alike: the second is nobody's.
            (&[c(Some("time"), shape(Dgram, "127.0.0.1:9")), c(Some("time"), shape(Dgram, "127.0.0.1:37"))],
             &[Some(1), None]),
            // Address and port must both match; the wildcard is not a match for loopback.
            (&[c(None, shape(Stream, "0.0.0.0:81")), c(None, shape(Dgram, "0.0.0.0:37")),
               c(None, shape(Stream, "[::1]:79"))],
             &[None, None, Some(3)]),
            // Not a socket oxinetd serves (a unix socket, a FIFO): nobody's, even by name.
            (&[c(Some("web"), None)], &[None]),
        ];
        for (candidates, want) in cases {
            assert_eq!(assign(&services, candidates), *want, "{candidates:?}");
        }
    }

    #[test]
    fn the_variables_count_only_for_the_pid_they_name() {
        let names = |pid, fds, names| handed_over(pid, fds, names, 42);
        assert_eq!(
            names(Some("42"), Some("2"), Some("a:b")),
            [Some("a".into()), Some("b".into())]
        );
        assert_eq!(
            names(Some("42"), Some("3"), Some("a::c:d")),
            [Some("a".into()), None, Some("c".into())]
        );
        assert_eq!(names(Some("42"), Some("2"), None), [None, None]);
        assert!(names(Some("7"), Some("2"), Some("a:b")).is_empty());
        assert!(names(None, Some("2"), None).is_empty());
        assert!(names(Some("42"), None, None).is_empty());
        assert!(names(Some("42"), Some("-1"), None).is_empty());
        assert!(names(Some("42x"), Some("1"), None).is_empty());
        assert_eq!(names(Some("42"), Some("1000000"), None).len(), MOST_FDS);
    }
}

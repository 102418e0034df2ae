//! What a reload changes, decided from the old and new service lists alone.
//! Services are matched by `id`, which is unique in a configuration.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};

use crate::config::ServiceSpec;
use crate::config::spec::{Address, SocketSpec, UnixAddress};

/// What a changed definition asks of the service's listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketChange {
    /// The socket settings did not change: the listener stays as it is.
    Same,
    /// Only settings a live listener takes differ (`backlog`, `NODELAY`, `KEEPALIVE`,
    /// the keepalive timeouts set or changed, `tcp_user_timeout`, a Unix socket file's
    /// mode and owners): they are set on it, so it keeps its queue and its port or path.
    Adjust,
    /// The address, port, socket type, protocol, `v6only`, the RPC program or whether
    /// the service has a socket of its own (TCPMUX) differ, or a keepalive timeout was
    /// removed (Linux takes no value meaning "the system's default" back): a new
    /// socket.
    Rebind,
}

/// Compares two definitions of one service. Any socket setting not named here as
/// adjustable asks for a new socket, so a setting added to `SocketSpec` later is safe.
pub fn socket_change(old: &ServiceSpec, new: &ServiceSpec) -> SocketChange {
    let (was, is) = (&old.socket.timeouts, &new.socket.timeouts);
    let removed = |was: Option<u32>, is: Option<u32>| was.is_some() && is.is_none();
    let settable = !removed(was.idle, is.idle)
        && !removed(was.interval, is.interval)
        && !removed(was.count, is.count);
    let address = match (&old.socket.address, &new.socket.address) {
        (Address::Unix(old), Address::Unix(new)) => Address::Unix(UnixAddress {
            permissions: old.permissions,
            ..new.clone()
        }),
        (_, new) => new.clone(),
    };
    let with_old_adjustables = SocketSpec {
        backlog: old.socket.backlog,
        nodelay: old.socket.nodelay,
        keepalive: old.socket.keepalive,
        address,
        timeouts: if settable { *was } else { *is },
        ..new.socket.clone()
    };
    // A changed RPC program or version range is registered afresh with the socket it
    // comes with.
    if with_old_adjustables != old.socket
        || new.rpc != old.rpc
        || new.tcpmux.is_some() != old.tcpmux.is_some()
    {
        SocketChange::Rebind
    } else if new.socket != old.socket {
        SocketChange::Adjust
    } else {
        SocketChange::Same
    }
}

/// `S` is a `ServiceSpec`, or the daemon's shared `Rc` of one.
#[derive(Debug, PartialEq)]
pub enum Change<'a, S = ServiceSpec> {
    /// Same definition: nothing to do.
    Keep(&'a str),
    /// The new definition is invalid: the old one goes on serving.
    KeepOld(&'a str),
    /// New settings for new connections, and what they ask of the socket.
    Update {
        spec: &'a S,
        socket: SocketChange,
    },
    /// Close the listener; running servers finish on their own.
    Remove(&'a str),
    Add(&'a S),
}

/// In `running`'s order, then the additions in `new`'s. Linear: 10,000 services are
/// matched by id at their place in both lists (a reload lists them in the order they
/// run, most often), else through a hash map, never by scanning (issue 13: 1.2 s of a
/// reload). A definition the reload took from the cache is the very one that runs: it
/// is known unchanged by its address, without comparing it field by field.
pub fn plan<'a, S: Borrow<ServiceSpec>>(
    running: &[&'a S],
    new: &'a [S],
    broken: &'a [String],
) -> Vec<Change<'a, S>> {
    let mut by_id: Option<HashMap<&str, usize>> = None;
    let mut matched = vec![false; new.len()];
    let broken: HashSet<&str> = broken.iter().map(String::as_str).collect();
    let mut changes = Vec::with_capacity(running.len().max(new.len()));
    for (place, old) in running.iter().enumerate() {
        let old: &'a ServiceSpec = (*old).borrow();
        let name = old.id.as_str();
        let found = match new.get(place) {
            Some(spec) if spec.borrow().id == old.id => Some(place),
            _ => by_id
                .get_or_insert_with(|| {
                    (new.iter().enumerate())
                        .map(|(at, spec)| (spec.borrow().id.as_str(), at))
                        .collect()
                })
                .get(name)
                .copied(),
        };
        changes.push(match found {
            Some(at) => {
                matched[at] = true;
                let spec = &new[at];
                if std::ptr::eq(spec.borrow(), old) || spec.borrow() == old {
                    Change::Keep(name)
                } else {
                    Change::Update {
                        spec,
                        socket: socket_change(old, spec.borrow()),
                    }
                }
            }
            None if broken.contains(name) => Change::KeepOld(name),
            None => Change::Remove(name),
        });
    }
    for (spec, matched) in new.iter().zip(matched) {
        if !matched {
            changes.push(Change::Add(spec));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::{
        Instances, Internal, Program, Protocol, RpcSpec, SocketSpec, SocketType, TcpMux,
        TcpTimeouts,
    };

    fn spec(name: &str, port: u16) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            id: name.to_string(),
            file: "a.toml".into(),
            socket: SocketSpec {
                socket_type: SocketType::Stream,
                protocol: Protocol::Tcp,
                address: Address::Ip(([127, 0, 0, 1], port).into()),
                v6only: None,
                backlog: 128,
                nodelay: false,
                keepalive: false,
                timeouts: Default::default(),
            },
            wait: false,
            program: Program::Internal(Internal::Echo),
            instances: Instances::Unlimited,
            tcpmux: None,
            access: Default::default(),
            limits: Default::default(),
            logging: Default::default(),
            banners: Default::default(),
            rpc: None,
            no_retry: false,
        }
    }

    #[test]
    fn each_kind_of_change() {
        let (same, moved, limited, gone, bad) = (
            spec("same", 1),
            spec("moved", 2),
            spec("limited", 3),
            spec("gone", 4),
            spec("bad", 5),
        );
        let mut limited_new = spec("limited", 3);
        limited_new.instances = Instances::Limit(2);
        let new = vec![
            spec("same", 1),
            spec("moved", 20),
            limited_new,
            spec("added", 6),
        ];
        let broken = vec!["bad".to_string()];
        let changes = plan(&[&same, &moved, &limited, &gone, &bad], &new, &broken);
        assert_eq!(
            changes,
            vec![
                Change::Keep("same"),
                Change::Update {
                    spec: &new[1],
                    socket: SocketChange::Rebind
                },
                Change::Update {
                    spec: &new[2],
                    socket: SocketChange::Same
                },
                Change::Remove("gone"),
                Change::KeepOld("bad"),
                Change::Add(&new[3]),
            ]
        );
    }

    #[test]
    fn a_changed_rpc_range_is_registered_afresh() {
        let mut old = spec("rpcsvc", 7);
        old.rpc = Some(RpcSpec {
            number: 300_000,
            versions: (1, 1),
        });
        let mut new = old.clone();
        new.rpc = Some(RpcSpec {
            number: 300_000,
            versions: (1, 2),
        });
        let new = vec![new];
        assert_eq!(
            plan(&[&old], &new, &[]),
            vec![Change::Update {
                spec: &new[0],
                socket: SocketChange::Rebind
            }]
        );
    }

    #[test]
    fn options_a_live_listener_takes_are_adjusted_in_place() {
        let old = spec("svc", 7);
        let adjustments: [fn(&mut SocketSpec); 7] = [
            |socket| socket.backlog = 5,
            |socket| socket.nodelay = true,
            |socket| socket.keepalive = true,
            |socket| {
                socket.keepalive = true;
                socket.timeouts.idle = Some(60);
                socket.timeouts.count = Some(3);
            },
            |socket| {
                socket.keepalive = true;
                socket.timeouts.interval = Some(1);
            },
            |socket| {
                socket.keepalive = true;
                socket.timeouts.user_timeout = Some(30);
            },
            |socket| {
                socket.backlog = 1024;
                socket.nodelay = true;
                socket.keepalive = true;
            },
        ];
        for adjust in adjustments {
            let mut new = old.clone();
            adjust(&mut new.socket);
            assert_eq!(socket_change(&old, &new), SocketChange::Adjust, "{new:?}");
        }
        assert_eq!(socket_change(&old, &old.clone()), SocketChange::Same);
        let mut limited = old.clone();
        limited.instances = Instances::Limit(1);
        assert_eq!(socket_change(&old, &limited), SocketChange::Same);
    }

    #[test]
    fn keepalive_timeouts_are_adjusted_unless_removed() {
        let mut old = spec("svc", 7);
        old.socket.keepalive = true;
        old.socket.timeouts = TcpTimeouts {
            idle: Some(60),
            interval: Some(5),
            count: Some(3),
            user_timeout: Some(30),
        };
        let adjust = |change: fn(&mut TcpTimeouts)| {
            let mut new = old.clone();
            change(&mut new.socket.timeouts);
            socket_change(&old, &new)
        };
        assert_eq!(adjust(|t| t.idle = Some(1)), SocketChange::Adjust);
        assert_eq!(adjust(|t| t.count = Some(9)), SocketChange::Adjust);
        // 0 means the system's default for TCP_USER_TIMEOUT alone.
        assert_eq!(adjust(|t| t.user_timeout = None), SocketChange::Adjust);
        assert_eq!(adjust(|t| t.idle = None), SocketChange::Rebind);
        assert_eq!(adjust(|t| t.interval = None), SocketChange::Rebind);
        assert_eq!(adjust(|t| t.count = None), SocketChange::Rebind);
        assert_eq!(
            adjust(|t| *t = TcpTimeouts::default()),
            SocketChange::Rebind
        );
    }

    #[test]
    fn a_unix_socket_file_keeps_its_path_through_new_permissions() {
        let unix = |path: &str, mode: u32| {
            Address::Unix(UnixAddress {
                path: path.into(),
                permissions: crate::config::spec::Permissions {
                    mode,
                    owner: None,
                    group: None,
                },
            })
        };
        let mut old = spec("svc", 7);
        old.socket.address = unix("/run/a.sock", 0o666);
        let mut new = old.clone();
        new.socket.address = unix("/run/a.sock", 0o600);
        assert_eq!(socket_change(&old, &new), SocketChange::Adjust);
        new.socket.address = unix("/run/b.sock", 0o666);
        assert_eq!(socket_change(&old, &new), SocketChange::Rebind);
        new.socket.address = Address::Ip("[::]:7".parse().expect("address"));
        assert_eq!(socket_change(&old, &new), SocketChange::Rebind);
        let mut seqpacket = old.clone();
        seqpacket.socket.socket_type = SocketType::Seqpacket;
        assert_eq!(socket_change(&old, &seqpacket), SocketChange::Rebind);
    }

    #[test]
    fn options_fixed_at_bind_need_a_new_socket() {
        let mut old = spec("svc", 7);
        old.socket.address = Address::Ip("[::]:7".parse().expect("address"));
        old.socket.v6only = Some(false);
        let rebinds: [fn(&mut ServiceSpec); 8] = [
            |spec| spec.socket.address = Address::Ip("[::]:8".parse().expect("address")),
            |spec| spec.socket.address = Address::Ip("[::1]:7".parse().expect("address")),
            |spec| spec.socket.v6only = Some(true),
            |spec| spec.socket.socket_type = SocketType::Dgram,
            |spec| spec.socket.protocol = Protocol::Udp,
            |spec| {
                spec.rpc = Some(RpcSpec {
                    number: 300_000,
                    versions: (1, 1),
                })
            },
            |spec| spec.tcpmux = Some(TcpMux::Plain),
            |spec| {
                // Rebinding wins over adjusting when both kinds change.
                spec.socket.v6only = Some(true);
                spec.socket.backlog = 5;
            },
        ];
        for rebind in rebinds {
            let mut new = old.clone();
            rebind(&mut new);
            assert_eq!(socket_change(&old, &new), SocketChange::Rebind, "{new:?}");
        }
    }
}

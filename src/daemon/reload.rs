//! What a reload changes, decided from the old and new service lists alone.
//! Services are matched by `id`, which is unique in a configuration.

use crate::config::ServiceSpec;

#[derive(Debug, PartialEq)]
pub enum Change<'a> {
    /// Same definition: nothing to do.
    Keep(&'a str),
    /// The new definition is invalid: the old one goes on serving.
    KeepOld(&'a str),
    /// New settings for new connections; `rebind` when the socket itself differs.
    Update {
        spec: &'a ServiceSpec,
        rebind: bool,
    },
    /// Close the listener; running servers finish on their own.
    Remove(&'a str),
    Add(&'a ServiceSpec),
}

pub fn plan<'a>(
    running: &[&'a ServiceSpec],
    new: &'a [ServiceSpec],
    broken: &'a [String],
) -> Vec<Change<'a>> {
    let mut changes = Vec::new();
    for old in running {
        let name = old.id.as_str();
        changes.push(match new.iter().find(|spec| spec.id == name) {
            Some(spec) if spec == *old => Change::Keep(name),
            // A changed RPC program or version range is registered afresh with the
            // socket it comes with.
            Some(spec) => Change::Update {
                spec,
                rebind: spec.socket != old.socket || spec.rpc != old.rpc,
            },
            None if broken.iter().any(|b| b == name) => Change::KeepOld(name),
            None => Change::Remove(name),
        });
    }
    for spec in new {
        if !running.iter().any(|old| old.id == spec.id) {
            changes.push(Change::Add(spec));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::{
        Instances, Internal, Program, Protocol, RpcSpec, SocketSpec, SocketType,
    };

    fn spec(name: &str, port: u16) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            id: name.to_string(),
            file: "a.toml".into(),
            socket: SocketSpec {
                socket_type: SocketType::Stream,
                protocol: Protocol::Tcp,
                address: ([127, 0, 0, 1], port).into(),
                v6only: None,
                backlog: 128,
                nodelay: false,
                keepalive: false,
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
                    rebind: true
                },
                Change::Update {
                    spec: &new[2],
                    rebind: false
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
                rebind: true
            }]
        );
    }
}

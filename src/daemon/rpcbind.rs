//! The RPC programs oxinetd registered with rpcbind: registering, withdrawing exactly
//! what was registered, and mending what portmapper v2 withdraws too much.

use log::{debug, error, info};
use socket2::Socket;

use crate::config::ServiceSpec;
use crate::config::spec::{Protocol, RpcSpec};
use crate::rpc;

fn port_of(socket: &Socket) -> Option<u16> {
    socket
        .local_addr()
        .ok()
        .and_then(|address| address.as_socket())
        .map(|address| address.port())
}

/// Registers `versions` of an RPC service with rpcbind and returns the ones registered.
/// A missing rpcbind is logged; the service still listens for clients that know its
/// port.
pub fn register(spec: &ServiceSpec, rpc: &RpcSpec, socket: &Socket, versions: &[u32]) -> Vec<u32> {
    let mut registered = Vec::new();
    let Some(port) = port_of(socket) else {
        return registered;
    };
    for &version in versions {
        let mapping = rpc::Mapping {
            program: rpc.number,
            version,
            protocol: spec.socket.protocol,
            port,
        };
        match rpc::set(&mapping) {
            Ok(()) => {
                info!(
                    "service {}: registered RPC program {} version {version} on port {port}",
                    spec.id, rpc.number
                );
                registered.push(version);
            }
            // Another program holds this version: the next one may still be free.
            Err(error @ rpc::RpcError::Refused) => error!(
                "service {}: cannot register version {version} with rpcbind: {error}",
                spec.id
            ),
            // rpcbind is not there or not sane: every version would fail alike.
            Err(error) => {
                error!("service {}: cannot register with rpcbind: {error}", spec.id);
                break;
            }
        }
    }
    registered
}

/// Withdraws the versions a service registered, and only those: a version rpcbind
/// refused belongs to another program, which keeps it.
pub fn withdraw(spec: &ServiceSpec, socket: Option<&Socket>, registered: &[u32]) {
    let (Some(rpc), Some(socket)) = (&spec.rpc, socket) else {
        return;
    };
    let port = port_of(socket).unwrap_or(0);
    for &version in registered {
        let mapping = rpc::Mapping {
            program: rpc.number,
            version,
            protocol: spec.socket.protocol,
            port,
        };
        if let Err(error) = rpc::unset(&mapping) {
            debug!("service {}: rpcbind unset: {error}", spec.id);
            return;
        }
    }
}

/// A running RPC service as the registry sees it.
pub struct Registered<'a> {
    pub spec: &'a ServiceSpec,
    pub socket: &'a Socket,
    pub versions: &'a [u32],
}

/// Portmapper v2 withdraws a version for every protocol at once: after `withdrawn`
/// versions of program `number` over `protocol` are withdrawn, the services that hold
/// them over the other protocol (an RPC service defined for both tcp and udp)
/// register them again.
pub fn reregister<'a>(
    services: impl Iterator<Item = Registered<'a>>,
    number: u32,
    protocol: Protocol,
    withdrawn: &[u32],
) {
    for service in services {
        let Some(rpc) = &service.spec.rpc else {
            continue;
        };
        if rpc.number != number || service.spec.socket.protocol == protocol {
            continue;
        }
        let versions: Vec<u32> = service
            .versions
            .iter()
            .copied()
            .filter(|version| withdrawn.contains(version))
            .collect();
        register(service.spec, rpc, service.socket, &versions);
    }
}

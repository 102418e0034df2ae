//! Turns one service's keys, merged with `[defaults]`, into a `ServiceSpec`, or into
//! every error found in it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use std::time::Duration;

use super::attrs::{At, Attrs, Flag, OnFailure, OnSuccess, Origin, ServiceType};
use super::spec::{
    Access, Address, Banners, ExecSpec, Identity, Instances, Internal, Limit, Limits, Logging,
    Permissions, Program, Protocol, RedirectSpec, Resource, RpcSpec, ServiceSpec, SocketSpec,
    SocketType, TcpMux, TcpTimeouts, UnixAddress,
};
use super::{ConfigError, FileKind, Host};
use crate::access::{self, AccessTimes, Rules};
use crate::limits::{self, DenyTime};
use crate::logging;
use crate::peer::CONNECTION_VARIABLES;

/// What validating one service gives: a spec (or nothing for a disabled service),
/// or errors; warnings either way.
pub struct Outcome {
    pub spec: Result<Option<ServiceSpec>, Vec<ConfigError>>,
    pub warnings: Vec<ConfigError>,
}

struct Report<'a> {
    service: &'a str,
    file: &'a Path,
    /// Keys whose values could not be read (already reported).
    failed: &'a [String],
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    environments: &'a mut Environments,
}

/// The servers' environments of one load, made once for each distinct set of inputs and
/// shared: most services have the same one, and building it (oxinetd's own variables,
/// copied and filtered) for each of 10,000 services was a quarter of a load.
#[derive(Default)]
pub struct Environments {
    made: HashMap<EnvironmentInputs, Rc<[Vec<u8>]>>,
}

/// Everything `environment` reads besides the host's environment, which is the same
/// for the whole load.
#[derive(Hash, PartialEq, Eq)]
struct EnvironmentInputs {
    passenv: Option<Vec<String>>,
    /// `HOME`, `USER` and `SHELL` of a server that runs as another user than oxinetd.
    login: Option<(String, String, String)>,
    env: Vec<(String, String)>,
}

impl Report<'_> {
    /// Whether `key` was written but could not be read: it is unset in `Attrs`, and
    /// whatever depends on it is unknown rather than absent.
    fn failed(&self, key: &str) -> bool {
        self.failed.iter().any(|failed| failed == key)
    }

    fn error_at(&mut self, key: &str, origin: Option<&Origin>, message: impl Into<String>) {
        let error = self.diagnostic(key, origin, message.into());
        self.errors.push(error);
    }

    fn error<T>(&mut self, key: &str, at: &At<T>, message: impl Into<String>) {
        self.error_at(key, Some(&at.origin), message);
    }

    fn warn(&mut self, key: &str, origin: Option<&Origin>, message: impl Into<String>) {
        let warning = self.diagnostic(key, origin, message.into());
        self.warnings.push(warning);
    }

    fn diagnostic(&self, key: &str, origin: Option<&Origin>, message: String) -> ConfigError {
        ConfigError {
            file: origin.map_or(self.file, |o| &o.file).to_path_buf(),
            line: origin.map(|o| o.line),
            service: Some(self.service.to_string()),
            key: (!key.is_empty()).then(|| key.to_string()),
            message,
        }
    }
}

/// `line` is where the service's table starts; `attrs` already holds the defaults.
/// `failed` names the keys that were written but could not be read: each other key is
/// still checked, but no combination that needs a failed key.
// The service's place and keys, then what it may ask: each a different thing to pass.
#[allow(clippy::too_many_arguments)]
pub fn service(
    name: &str,
    id: &str,
    file: &Path,
    line: usize,
    attrs: &Attrs,
    failed: &[String],
    host: &dyn Host,
    environments: &mut Environments,
) -> Outcome {
    let mut report = Report {
        service: id,
        file,
        failed,
        errors: Vec::new(),
        warnings: Vec::new(),
        environments,
    };
    let table = Origin {
        file: file.into(),
        line,
        defaults: false,
    };
    let spec = build(name, id, &table, attrs, host, &mut report);
    Outcome {
        spec: if report.errors.is_empty() {
            Ok(spec)
        } else {
            Err(report.errors)
        },
        warnings: report.warnings,
    }
}

/// What runs for a connection, as the keys that decide it say.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sensor,
    Redirect,
    Internal,
    Exec,
}

/// `None` when a key that decides the kind (`flags`, `redirect`, `type`) failed.
fn program_kind(attrs: &Attrs, sensor: bool, internal: bool, report: &Report) -> Option<Kind> {
    if report.failed("flags") {
        return None;
    }
    if sensor {
        return Some(Kind::Sensor);
    }
    if report.failed("redirect") {
        return None;
    }
    if attrs.redirect.is_some() {
        return Some(Kind::Redirect);
    }
    if report.failed("type") {
        return None;
    }
    Some(if internal { Kind::Internal } else { Kind::Exec })
}

/// Every check runs whatever the others found, so that all of a service's errors show at
/// once; only what needs an unknown value (a failed key, or a combination already found
/// wrong) is skipped. The spec is built only when nothing failed.
fn build(
    name: &str,
    id: &str,
    table: &Origin,
    attrs: &Attrs,
    host: &dyn Host,
    report: &mut Report,
) -> Option<ServiceSpec> {
    if attrs.disable.as_ref().is_some_and(|at| at.value) {
        return None;
    }
    let types = value_or(&attrs.types, Vec::new());
    let flags = value_or(&attrs.flags, Vec::new());
    let internal = types.contains(&ServiceType::Internal);
    let unlisted = types.contains(&ServiceType::Unlisted);
    let tcpmux = tcpmux_kind(&types, attrs, report);
    let sensor = flags.contains(&Flag::Sensor);
    let kind = program_kind(attrs, sensor, internal, report);

    let unix = attrs.socket_path.as_ref();
    let socket_kind = match unix {
        Some(_) => unix_socket_kind(attrs, table, report),
        None => socket_kind(attrs, table, report),
    };
    let socket_type = socket_kind.map(|(socket_type, _)| socket_type);
    let dgram = socket_type == Some(SocketType::Dgram);
    let address = match unix {
        Some(path) => {
            not_for_unix(attrs, &flags, kind, &types, report);
            permissions(attrs, host, report).map(|permissions| {
                let unix = UnixAddress {
                    path: path.value.clone(),
                    permissions,
                };
                (Address::Unix(unix), None)
            })
        }
        None => {
            no_socket_path(attrs, report);
            let port = if tcpmux.is_some() {
                // Reached through the tcpmux service by name; never listens itself.
                Some(0)
            } else if internal && name == "tcpmux" && attrs.port.is_none() {
                Some(1)
            } else if types.contains(&ServiceType::Rpc) && attrs.port.is_none() {
                // Any free port: rpcbind tells clients which one.
                Some(0)
            } else if attrs.port.is_none() && report.failed("type") {
                // Whether the port comes from /etc/services depends on the type.
                None
            } else {
                match socket_kind {
                    Some((_, protocol)) => {
                        port(name, attrs, protocol, unlisted, table, host, report)
                    }
                    // /etc/services is looked up by protocol.
                    None => attrs.port.as_ref().map(|at| at.value),
                }
            };
            let address = address(attrs, &flags, report);
            port.zip(address)
                .map(|(port, (ip, v6only))| (Address::Ip(SocketAddr::new(ip, port)), v6only))
        }
    };
    let backlog = backlog(attrs, host, report);
    let timeouts = tcp_timeouts(attrs, socket_type, tcpmux.is_some(), report);
    let socket = socket_kind
        .zip(address)
        .map(|((socket_type, protocol), (address, v6only))| SocketSpec {
            socket_type,
            protocol,
            address,
            v6only,
            backlog,
            nodelay: flags.contains(&Flag::NoDelay),
            keepalive: flags.contains(&Flag::KeepAlive) || timeouts.any(),
            timeouts,
        });

    let program = match kind {
        Some(Kind::Sensor) => {
            no_server("a SENSOR", attrs, report);
            Some(Program::Sensor(deny_time(attrs, report)))
        }
        Some(Kind::Redirect) => redirect_program(attrs, dgram, report),
        Some(Kind::Internal) => internal_program(name, attrs, table, report),
        Some(Kind::Exec) => exec_program(attrs, &flags, table, host, report, true),
        None => {
            // Not known to be exec'd, but `server`, `user` and `group` are still checked.
            exec_program(attrs, &flags, table, host, report, false);
            None
        }
    };
    if !sensor
        && !report.failed("flags")
        && let Some(at) = &attrs.deny_time
    {
        report.warn(
            "deny_time",
            Some(&at.origin),
            "deny_time only matters with flags = [\"SENSOR\"]",
        );
    }
    if let Some(at) = attrs.max_duration.as_ref().filter(|at| !at.origin.defaults) {
        let moot = match kind {
            Some(Kind::Sensor) => Some("a SENSOR runs nothing"),
            Some(Kind::Internal) if dgram => {
                Some("an internal datagram service answers each datagram at once")
            }
            _ => None,
        };
        if let Some(why) = moot {
            report.warn(
                "max_duration",
                Some(&at.origin),
                format!("max_duration does nothing here: {why}"),
            );
        }
    }
    if internal && name == "tcpmux" && dgram {
        report.error_at(
            "socket_type",
            Some(table),
            "tcpmux is a stream (tcp) service",
        );
    }
    if tcpmux.is_some() && name.eq_ignore_ascii_case("help") {
        report.error_at(
            "type",
            Some(table),
            "a TCPMUX service cannot be called HELP: that word asks tcpmux for its list",
        );
    }
    if tcpmux.is_some() && dgram {
        report.error_at(
            "socket_type",
            Some(table),
            "TCPMUX services are stream (tcp) services",
        );
    }
    let wait = wait(kind, socket_type, tcpmux.is_some(), attrs, table, report);
    let program = program.map(|program| listen_fds(program, id, kind, attrs, report));

    // Only an exec'd `wait` stream server accepts its own connections.
    let server_accepts =
        wait == Some(true) && socket_type == Some(SocketType::Stream) && kind == Some(Kind::Exec);
    let access = access_rules(attrs, &flags, server_accepts, report);
    let limits = limits(attrs, report);
    let logging = logging(attrs, kind, socket_type, host, report);
    let banners = banners(attrs, host, report);
    let rpc = rpc(name, &types, attrs, table, host, report);
    if let Some(at) = &attrs.flags
        && flags.contains(&Flag::Intercept)
    {
        {
            report.warn("flags", Some(&at.origin), "INTERCEPT is not needed: oxinetd checks every connection and every datagram it reads in the daemon itself; a `wait` server's later peers are its own business");
        }
    }

    Some(ServiceSpec {
        name: name.to_string(),
        id: id.to_string(),
        file: table.file.to_path_buf(),
        socket: socket?,
        wait: wait?,
        program: program?,
        instances: value_or(&attrs.instances, Instances::Unlimited),
        tcpmux,
        access: Rc::new(access?),
        limits: Rc::new(limits?),
        logging: Rc::new(logging?),
        banners: Rc::new(banners?),
        rpc: rpc?,
        no_retry: flags.contains(&Flag::NoRetry),
    })
}

fn redirect_program(attrs: &Attrs, dgram: bool, report: &mut Report) -> Option<Program> {
    no_server("a redirect", attrs, report);
    let at = attrs.redirect.as_ref()?;
    if dgram {
        report.error(
            "redirect",
            at,
            "only stream (tcp) services can be redirected",
        );
    }
    Some(Program::Redirect(Box::new(RedirectSpec {
        host: at.value.0.clone(),
        port: at.value.1,
        connect_timeout: Duration::from_secs(
            attrs
                .connect_timeout
                .as_ref()
                .map_or(10, |at| at.value)
                .max(1)
                .into(),
        ),
        idle_timeout: attrs
            .idle_timeout
            .as_ref()
            .filter(|at| at.value > 0)
            .map(|at| Duration::from_secs(at.value.into())),
    })))
}

/// Whether the server is handed the listening socket. `None` when that cannot be told
/// (the kind of program or the socket type is unknown) or `wait` is wrong.
fn wait(
    kind: Option<Kind>,
    socket_type: Option<SocketType>,
    tcpmux: bool,
    attrs: &Attrs,
    table: &Origin,
    report: &mut Report,
) -> Option<bool> {
    let at = attrs.wait.as_ref();
    let wait = at.map(|at| at.value);
    match (kind?, wait) {
        // The daemon serves these itself; `wait` only says what xinetd did.
        (Kind::Internal | Kind::Sensor, wait) => {
            wait.or_else(|| socket_type.map(|kind| kind == SocketType::Dgram))
        }
        (Kind::Redirect, Some(true)) => {
            report.error(
                "wait",
                at?,
                "a redirect relays each connection: `wait = false`",
            );
            None
        }
        (Kind::Redirect, _) => Some(false),
        (Kind::Exec, Some(true)) if tcpmux => {
            report.error(
                "wait",
                at?,
                "a TCPMUX service is started per connection: `wait = false`",
            );
            None
        }
        (Kind::Exec, Some(false)) if socket_type == Some(SocketType::Dgram) => {
            report.error(
                "wait",
                at?,
                "a dgram server needs `wait = true`: it is handed the socket itself",
            );
            None
        }
        (Kind::Exec, Some(wait)) => Some(wait),
        (Kind::Exec, None) => {
            report.error_at("wait", Some(table), "`wait` is required: true (the server gets the listening socket) or false (one server per connection)");
            None
        }
    }
}

/// A service the daemon serves itself takes no `server` (nor `user`: nothing is exec'd).
fn no_server(what: &str, attrs: &Attrs, report: &mut Report) {
    if let Some(at) = &attrs.server {
        report.error("server", at, format!("{what} service runs no server"));
    }
}

fn tcpmux_kind(types: &[ServiceType], attrs: &Attrs, report: &mut Report) -> Option<TcpMux> {
    let plain = types.contains(&ServiceType::TcpMux);
    let plus = types.contains(&ServiceType::TcpMuxPlus);
    match (plain, plus) {
        (false, false) => None,
        (true, true) => {
            let origin = attrs.types.as_ref().map(|at| &at.origin);
            report.error_at("type", origin, "TCPMUX and TCPMUXPLUS exclude each other");
            None
        }
        (true, false) => Some(TcpMux::Plain),
        (false, true) => Some(TcpMux::Plus),
    }
}

fn deny_time(attrs: &Attrs, report: &mut Report) -> DenyTime {
    match &attrs.deny_time {
        None => DenyTime::Minutes(DEFAULT_DENY_MINUTES),
        Some(at) => limits::parse_deny_time(&at.value).unwrap_or_else(|message| {
            report.error("deny_time", at, message);
            DenyTime::Never
        }),
    }
}

/// How long a peer that touched a SENSOR is refused everywhere, unless `deny_time` says.
const DEFAULT_DENY_MINUTES: u32 = 60;
/// Banners are sent from the event loop without blocking, so they must fit a socket buffer.
const MAX_BANNER: usize = 64 * 1024;

fn access_rules(
    attrs: &Attrs,
    flags: &[Flag],
    server_accepts: bool,
    report: &mut Report,
) -> Option<Access> {
    let mut ok = true;
    let mut patterns = |key: &str, at: &Option<At<Vec<String>>>, report: &mut Report| {
        let at = at.as_ref()?;
        match access::parse_patterns(&at.value) {
            Ok(patterns) => Some(patterns),
            Err(message) => {
                report.error(key, at, message);
                ok = false;
                None
            }
        }
    };
    let only_from = patterns("only_from", &attrs.only_from, report);
    let no_access = patterns("no_access", &attrs.no_access, report).unwrap_or_default();
    if let (Some(list), Some(at)) = (&only_from, &attrs.only_from)
        && list.is_empty()
    {
        report.warn(
            "only_from",
            Some(&at.origin),
            "the list is empty: every peer is refused",
        );
    }
    let rules = Rules {
        only_from,
        no_access,
    };
    let times = match &attrs.access_times {
        Some(at) => match AccessTimes::parse(&at.value) {
            Ok(times) => Some(times),
            Err(message) => {
                report.error("access_times", at, message);
                ok = false;
                None
            }
        },
        None => None,
    };
    if server_accepts && (!rules.is_open() || times.is_some()) {
        let (key, origin) = [
            ("only_from", attrs.only_from.as_ref().map(|at| &at.origin)),
            ("no_access", attrs.no_access.as_ref().map(|at| &at.origin)),
            (
                "access_times",
                attrs.access_times.as_ref().map(|at| &at.origin),
            ),
        ]
        .into_iter()
        .find(|(_, origin)| origin.is_some())
        .unwrap_or(("only_from", None));
        report.warn(
            key,
            origin,
            "a `wait = true` stream server accepts its own connections: oxinetd cannot check them",
        );
    }
    ok.then(|| Access {
        rules,
        times,
        max_load: attrs.max_load.as_ref().map(|at| at.value),
        ident_required: flags.contains(&Flag::IdOnly),
    })
}

fn limits(attrs: &Attrs, report: &mut Report) -> Option<Limits> {
    let cps = match &attrs.cps {
        Some(at) => match limits::parse_cps(&at.value) {
            Ok(cps) => Some(cps),
            Err(message) => {
                report.error("cps", at, message);
                return None;
            }
        },
        None => None,
    };
    let per_source = match attrs.per_source.as_ref().map(|at| at.value) {
        Some(Instances::Limit(n)) => Some(n),
        _ => None,
    };
    let max_duration = attrs
        .max_duration
        .as_ref()
        .map(|at| Duration::from_secs(at.value.into()));
    Some(Limits {
        per_source,
        cps,
        max_duration,
    })
}

/// `keepalive_*` and `tcp_user_timeout`, which only a connection has: an error on a
/// datagram service or a TCPMUX one (whose connections come through the tcpmux
/// service's listener), left out quietly when it comes from `[defaults]`.
fn tcp_timeouts(
    attrs: &Attrs,
    socket_type: Option<SocketType>,
    tcpmux: bool,
    report: &mut Report,
) -> TcpTimeouts {
    let refusal = match (socket_type, tcpmux) {
        (_, true) => Some(
            "a TCPMUX service's connections come through the tcpmux service's socket: set it there",
        ),
        (Some(SocketType::Dgram), _) => {
            Some("only stream (tcp) services have connections to keep alive")
        }
        _ => None,
    };
    let mut take = |key: &str, at: &Option<At<u32>>| {
        let at = at.as_ref()?;
        match refusal {
            None => Some(at.value),
            Some(_) if at.origin.defaults => None,
            Some(why) => {
                report.error(key, at, why);
                None
            }
        }
    };
    TcpTimeouts {
        idle: take("keepalive_idle", &attrs.keepalive_idle),
        interval: take("keepalive_interval", &attrs.keepalive_interval),
        count: take("keepalive_count", &attrs.keepalive_count),
        user_timeout: take("tcp_user_timeout", &attrs.tcp_user_timeout),
    }
}

fn logging(
    attrs: &Attrs,
    kind: Option<Kind>,
    socket_type: Option<SocketType>,
    host: &dyn Host,
    report: &mut Report,
) -> Option<Logging> {
    let log_type = match &attrs.log_type {
        Some(at) => match logging::parse_log_type(&at.value) {
            Ok(logging::LogType::File { path, .. })
                if let Ok(status) = host.status(&path)
                    && !matches!(status.kind, FileKind::Regular | FileKind::CharDevice) =>
            {
                // Checked again when the daemon opens it, without blocking: the path
                // may change after the check.
                let what = status.kind.described();
                report.error(
                    "log_type",
                    at,
                    format!(
                        "{} is {what}, not a regular file or a character device",
                        path.display()
                    ),
                );
                return None;
            }
            Ok(log_type) => Some(log_type),
            Err(message) => {
                report.error("log_type", at, message);
                return None;
            }
        },
        None => None,
    };
    let success = value_or(
        &attrs.log_on_success,
        vec![
            OnSuccess::Pid,
            OnSuccess::Host,
            OnSuccess::Exit,
            OnSuccess::Duration,
        ],
    );
    let failure = value_or(&attrs.log_on_failure, vec![OnFailure::Host]);
    let relayed = kind == Some(Kind::Redirect);
    if let Some(at) = &attrs.log_on_success
        && success.contains(&OnSuccess::Traffic)
        && kind.is_some_and(|kind| kind != Kind::Redirect)
    {
        {
            report.warn(
                "log_on_success",
                Some(&at.origin),
                "TRAFFIC is only counted for redirected services",
            );
        }
    }
    let userid = success.contains(&OnSuccess::UserId) || failure.contains(&OnFailure::UserId);
    if userid && socket_type == Some(SocketType::Dgram) {
        let origin = attrs
            .log_on_success
            .as_ref()
            .map(|at| &at.origin)
            .or(attrs.log_on_failure.as_ref().map(|at| &at.origin));
        report.warn(
            "log_on_success",
            origin,
            "USERID needs a connection: ignored for dgram services",
        );
    }
    let stream = socket_type == Some(SocketType::Stream);
    Some(Logging {
        log_type,
        pid: success.contains(&OnSuccess::Pid),
        host: success.contains(&OnSuccess::Host),
        userid: stream && success.contains(&OnSuccess::UserId),
        exit: success.contains(&OnSuccess::Exit),
        duration: success.contains(&OnSuccess::Duration),
        traffic: relayed && success.contains(&OnSuccess::Traffic),
        failures: !failure.is_empty(),
        failure_host: failure.contains(&OnFailure::Host),
        failure_userid: stream && failure.contains(&OnFailure::UserId),
    })
}

fn banners(attrs: &Attrs, host: &dyn Host, report: &mut Report) -> Option<Banners> {
    let mut ok = true;
    let mut read = |key: &str, at: &Option<At<PathBuf>>| {
        let at = at.as_ref()?;
        match host.read(&at.value, MAX_BANNER) {
            Ok(bytes) if bytes.len() > MAX_BANNER => {
                report.error(
                    key,
                    at,
                    format!("{} is larger than 64 KiB", at.value.display()),
                );
                ok = false;
                None
            }
            Ok(bytes) => Some(bytes),
            Err(error) => {
                report.error(
                    key,
                    at,
                    format!("cannot read {}: {error}", at.value.display()),
                );
                ok = false;
                None
            }
        }
    };
    let banners = Banners {
        always: read("banner", &attrs.banner),
        success: read("banner_success", &attrs.banner_success),
        fail: read("banner_fail", &attrs.banner_fail),
    };
    ok.then_some(banners)
}

fn rpc(
    name: &str,
    types: &[ServiceType],
    attrs: &Attrs,
    table: &Origin,
    host: &dyn Host,
    report: &mut Report,
) -> Option<Option<RpcSpec>> {
    if !types.contains(&ServiceType::Rpc) {
        if report.failed("type") {
            // Whether this is an RPC service is unknown.
            return None;
        }
        let origin = attrs
            .rpc_number
            .as_ref()
            .map(|at| &at.origin)
            .or(attrs.rpc_version.as_ref().map(|at| &at.origin));
        if origin.is_some() {
            report.warn(
                "rpc_number",
                origin,
                "only RPC services (type = \"RPC\") are registered with rpcbind",
            );
        }
        return Some(None);
    }
    let Some(versions) = &attrs.rpc_version else {
        report.error_at(
            "rpc_version",
            Some(table),
            "an RPC service needs `rpc_version` (\"2\" or a range like \"2-4\")",
        );
        return None;
    };
    let number = match &attrs.rpc_number {
        Some(at) => at.value,
        None => match host.rpc_number(name) {
            Some(number) => number,
            None => {
                report.error_at("rpc_number", Some(table), format!("{name} is not in /etc/rpc: set `rpc_number` (and `type = [\"RPC\", \"UNLISTED\"]`)"));
                return None;
            }
        },
    };
    Some(Some(RpcSpec {
        number,
        versions: versions.value,
    }))
}

fn value_or<T: Clone>(at: &Option<At<T>>, default: T) -> T {
    at.as_ref().map_or(default, |at| at.value.clone())
}

/// `socket_type` and `protocol` each imply the other, as in xinetd.
fn socket_kind(
    attrs: &Attrs,
    table: &Origin,
    report: &mut Report,
) -> Option<(SocketType, Protocol)> {
    if report.failed("socket_type") || report.failed("protocol") {
        // Each implies the other: with one unknown, so is the pair.
        return None;
    }
    let socket_type = attrs.socket_type.as_ref().map(|at| at.value);
    let protocol = attrs.protocol.as_ref().map(|at| at.value);
    match (socket_type, protocol) {
        (Some(SocketType::Stream), None | Some(Protocol::Tcp)) | (None, Some(Protocol::Tcp)) => {
            Some((SocketType::Stream, Protocol::Tcp))
        }
        (Some(SocketType::Dgram), None | Some(Protocol::Udp)) | (None, Some(Protocol::Udp)) => {
            Some((SocketType::Dgram, Protocol::Udp))
        }
        (Some(SocketType::Seqpacket), _) => {
            let at = attrs.socket_type.as_ref()?;
            report.error(
                "socket_type",
                at,
                "seqpacket is for Unix sockets: set `socket_path`",
            );
            None
        }
        (Some(kind), Some(protocol)) => {
            let at = attrs.protocol.as_ref()?;
            let kind = kind.name();
            report.error(
                "protocol",
                at,
                format!("a {kind} socket cannot use {}", protocol.name()),
            );
            None
        }
        (None, None) => {
            report.error_at(
                "socket_type",
                Some(table),
                "`socket_type` is required (\"stream\" or \"dgram\")",
            );
            None
        }
    }
}

/// A Unix socket's type; it has no IP protocol (`protocol` is refused with the other
/// IP keys), so the pair's protocol only follows the type and is never read.
fn unix_socket_kind(
    attrs: &Attrs,
    table: &Origin,
    report: &mut Report,
) -> Option<(SocketType, Protocol)> {
    if report.failed("socket_type") {
        return None;
    }
    match attrs.socket_type.as_ref().map(|at| at.value) {
        Some(SocketType::Dgram) => Some((SocketType::Dgram, Protocol::Udp)),
        Some(kind) => Some((kind, Protocol::Tcp)),
        None => {
            report.error_at(
                "socket_type",
                Some(table),
                "`socket_type` is required (\"stream\", \"dgram\" or \"seqpacket\")",
            );
            None
        }
    }
}

/// Flags that mean something only for an IP socket or an IP peer.
const IP_FLAGS: &[(Flag, &str)] = &[
    (Flag::Ipv4, "IPv4"),
    (Flag::Ipv6, "IPv6"),
    (Flag::NoDelay, "NODELAY"),
    (Flag::KeepAlive, "KEEPALIVE"),
    (Flag::IdOnly, "IDONLY"),
    (Flag::Sensor, "SENSOR"),
];

/// With `socket_path`, every key about IP addresses, ports or IP peers is an error,
/// and so is any program but an exec'd server. (Keys of `[defaults]` that only apply
/// to IP are not inherited by such a service: see `Attrs::for_unix`.)
fn not_for_unix(
    attrs: &Attrs,
    flags: &[Flag],
    kind: Option<Kind>,
    types: &[ServiceType],
    report: &mut Report,
) {
    let why = "a Unix socket (`socket_path`) has no";
    let mut refuse = |key: &str, origin: Option<&Origin>, what: &str| {
        if let Some(origin) = origin {
            report.error_at(key, Some(origin), format!("{why} {what}"));
        }
    };
    refuse("port", attrs.port.as_ref().map(|at| &at.origin), "port");
    refuse(
        "protocol",
        attrs.protocol.as_ref().map(|at| &at.origin),
        "IP protocol",
    );
    refuse(
        "bind",
        attrs.bind.as_ref().map(|at| &at.origin),
        "IP address",
    );
    refuse(
        "interface",
        attrs.interface.as_ref().map(|at| &at.origin),
        "IP address",
    );
    refuse("v6only", attrs.v6only.as_ref().map(|at| &at.origin), "IPv6");
    refuse(
        "only_from",
        attrs.only_from.as_ref().map(|at| &at.origin),
        "peer address: limit who may connect with `socket_mode`, `socket_owner` and `socket_group`",
    );
    refuse(
        "no_access",
        attrs.no_access.as_ref().map(|at| &at.origin),
        "peer address: limit who may connect with `socket_mode`, `socket_owner` and `socket_group`",
    );
    refuse(
        "cps",
        attrs.cps.as_ref().map(|at| &at.origin),
        "peer address for `cps` to count by",
    );
    refuse(
        "redirect",
        attrs.redirect.as_ref().map(|at| &at.origin),
        "redirect: only exec'd servers listen on Unix sockets",
    );
    if let Some(at) = &attrs.flags {
        for (flag, word) in IP_FLAGS {
            if flags.contains(flag) {
                report.error(
                    "flags",
                    at,
                    format!("{why} use for {word}: it is for IP sockets"),
                );
            }
        }
    }
    if let Some(at) = &attrs.types
        && (kind == Some(Kind::Internal) || types.iter().any(|t| *t != ServiceType::Unlisted))
    {
        report.error(
            "type",
            at,
            "only exec'd servers listen on Unix sockets (no INTERNAL, RPC or TCPMUX)",
        );
    }
    for (key, at) in [
        (
            "log_on_success",
            attrs
                .log_on_success
                .as_ref()
                .map(|at| at.value.contains(&OnSuccess::UserId).then_some(&at.origin)),
        ),
        (
            "log_on_failure",
            attrs
                .log_on_failure
                .as_ref()
                .map(|at| at.value.contains(&OnFailure::UserId).then_some(&at.origin)),
        ),
    ] {
        if let Some(Some(origin)) = at {
            report.error_at(key, Some(origin), "USERID asks the peer's ident server, which a Unix socket has not: the peer's uid is logged with HOST");
        }
    }
}

/// `socket_mode`, `socket_owner` and `socket_group` belong to a `socket_path`.
fn no_socket_path(attrs: &Attrs, report: &mut Report) {
    for (key, origin) in [
        (
            "socket_mode",
            attrs.socket_mode.as_ref().map(|at| &at.origin),
        ),
        (
            "socket_owner",
            attrs.socket_owner.as_ref().map(|at| &at.origin),
        ),
        (
            "socket_group",
            attrs.socket_group.as_ref().map(|at| &at.origin),
        ),
    ] {
        if let Some(origin) = origin {
            report.error_at(
                key,
                Some(origin),
                "only a Unix socket (`socket_path`) has a file mode and owners",
            );
        }
    }
}

/// The socket file's mode (`"0666"` unless said: who may connect is for the mode and
/// owners to say, as with any file) and its owner and group, resolved now.
fn permissions(attrs: &Attrs, host: &dyn Host, report: &mut Report) -> Option<Permissions> {
    let mut ok = !report.failed("socket_mode");
    let owner = attrs.socket_owner.as_ref().and_then(|at| {
        let user = host.user(&at.value);
        if user.is_none() {
            report.error("socket_owner", at, format!("no such user: {}", at.value));
            ok = false;
        }
        user.map(|user| user.uid)
    });
    let group = attrs.socket_group.as_ref().and_then(|at| {
        let group = host.group(&at.value);
        if group.is_none() {
            report.error("socket_group", at, format!("no such group: {}", at.value));
            ok = false;
        }
        group
    });
    let changes_owner = owner.is_some() || group.is_some();
    if changes_owner && host.euid() != 0 && !report.failed("socket_owner") {
        let origin = attrs
            .socket_owner
            .as_ref()
            .or(attrs.socket_group.as_ref())
            .map(|at| &at.origin);
        report.warn(
            if attrs.socket_owner.is_some() { "socket_owner" } else { "socket_group" },
            origin,
            "oxinetd is not root: changing the socket's owner may fail (it is logged when the service starts)",
        );
    }
    ok.then(|| Permissions {
        mode: attrs
            .socket_mode
            .as_ref()
            .map_or(DEFAULT_SOCKET_MODE, |at| at.value),
        owner,
        group,
    })
}

/// Anyone may connect unless `socket_mode` says otherwise, as with xinetd's IP services
/// without `only_from`.
const DEFAULT_SOCKET_MODE: u32 = 0o666;

fn port(
    name: &str,
    attrs: &Attrs,
    protocol: Protocol,
    unlisted: bool,
    table: &Origin,
    host: &dyn Host,
    report: &mut Report,
) -> Option<u16> {
    let listed = if unlisted {
        None
    } else {
        host.service_port(name, protocol)
    };
    match (&attrs.port, listed) {
        (Some(at), Some(listed)) if at.value != listed => {
            report.warn(
                "port",
                Some(&at.origin),
                format!(
                    "{name} is port {listed} in /etc/services; using {}",
                    at.value
                ),
            );
            Some(at.value)
        }
        (Some(at), _) => Some(at.value),
        (None, Some(listed)) => Some(listed),
        (None, None) if unlisted => {
            report.error_at("port", Some(table), "an UNLISTED service needs `port`");
            None
        }
        (None, None) => {
            report.error_at(
                "port",
                Some(table),
                format!(
                    "{name}/{} is not in /etc/services: set `port` (and `type = \"UNLISTED\"`)",
                    protocol.name()
                ),
            );
            None
        }
    }
}

/// The listening address, and for IPv6 whether it is v6-only. The default is one
/// dual-stack `::` socket, which serves IPv4 and IPv6 peers alike.
fn address(attrs: &Attrs, flags: &[Flag], report: &mut Report) -> Option<(IpAddr, Option<bool>)> {
    let ipv4 = flags.contains(&Flag::Ipv4);
    let ipv6 = flags.contains(&Flag::Ipv6);
    let flags_at = attrs.flags.as_ref();
    if ipv4 && ipv6 {
        report.error_at(
            "flags",
            flags_at.map(|at| &at.origin),
            "IPv4 and IPv6 exclude each other; leave both out for a dual-stack socket",
        );
        return None;
    }
    let bind = match (&attrs.bind, &attrs.interface) {
        (Some(_), Some(at)) => {
            report.error(
                "interface",
                at,
                "`interface` is another name for `bind`: give one",
            );
            return None;
        }
        (bind, interface) => bind.as_ref().or(interface.as_ref()),
    };
    let ip = match bind {
        Some(at) if (ipv4 && at.value.is_ipv6()) || (ipv6 && at.value.is_ipv4()) => {
            report.error(
                "bind",
                at,
                format!("{} does not match the IPv4/IPv6 flag", at.value),
            );
            return None;
        }
        Some(at) => at.value,
        None if ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let v6only = attrs.v6only.as_ref();
    match (ip, v6only) {
        (IpAddr::V4(_), Some(at)) if at.value => {
            report.error("v6only", at, format!("{ip} is an IPv4 address"));
            None
        }
        (IpAddr::V4(_), _) => Some((ip, None)),
        (IpAddr::V6(_), v6only) => Some((ip, Some(v6only.is_some_and(|at| at.value)))),
    }
}

fn backlog(attrs: &Attrs, host: &dyn Host, report: &mut Report) -> u32 {
    let somaxconn = host.somaxconn();
    match &attrs.backlog {
        Some(at) if at.value > somaxconn => {
            report.warn(
                "backlog",
                Some(&at.origin),
                format!(
                    "{} will be clamped to net.core.somaxconn = {somaxconn}",
                    at.value
                ),
            );
            at.value
        }
        Some(at) => at.value,
        None => somaxconn,
    }
}

fn internal_program(
    name: &str,
    attrs: &Attrs,
    table: &Origin,
    report: &mut Report,
) -> Option<Program> {
    if let Some(at) = &attrs.server {
        report.error("server", at, "an INTERNAL service takes no server");
    }
    match Internal::from_name(name) {
        Some(internal) => Some(Program::Internal(internal)),
        None => {
            report.error_at(
                "type",
                attrs
                    .types
                    .as_ref()
                    .map_or(Some(table), |at| Some(&at.origin)),
                format!(
                    "there is no internal service `{name}` (echo, discard, daytime, time, chargen)"
                ),
            );
            None
        }
    }
}

/// `known` says the service is known to be exec'd; when it is not (a key deciding the
/// kind failed), `server`, `user` and `group` are checked if set, but none is required.
fn exec_program(
    attrs: &Attrs,
    flags: &[Flag],
    table: &Origin,
    host: &dyn Host,
    report: &mut Report,
    known: bool,
) -> Option<Program> {
    let server = server(attrs, table, host, report, known);
    let argv = if known {
        argv(attrs, flags, server, report)
    } else {
        None
    };
    let identity = identity(attrs, table, host, report, known);
    let cwd = cwd(attrs, host, report);
    let (server, argv, identity, cwd) = (server?, argv?, identity?, cwd?);
    let environment = shared_environment(attrs, identity.as_ref(), host, report.environments);
    Some(Program::Exec(Rc::new(ExecSpec {
        server: server.value.clone(),
        argv,
        environment,
        identity,
        umask: attrs.umask.as_ref().map(|at| at.value),
        nice: attrs.nice.as_ref().map(|at| at.value),
        rlimits: rlimits(attrs),
        cwd,
        no_new_privs: attrs.no_new_privs.as_ref().is_some_and(|at| at.value),
        listen_fds: None,
        setsid: attrs.setsid.as_ref().is_some_and(|at| at.value),
    })))
}

/// `listen_fds = true` names the fd after the service; a service without a `server` has
/// no server to hand it to.
fn listen_fds(
    mut program: Program,
    id: &str,
    kind: Option<Kind>,
    attrs: &Attrs,
    report: &mut Report,
) -> Program {
    let Some(at) = attrs.listen_fds.as_ref().filter(|at| at.value) else {
        return program;
    };
    match &mut program {
        Program::Exec(exec) => Rc::make_mut(exec).listen_fds = Some(id.to_string()),
        _ if kind.is_some() => report.error(
            "listen_fds",
            at,
            "listen_fds hands the socket to a `server`; this service has none",
        ),
        _ => {}
    }
    program
}

/// The server's working directory: `/` unless `cwd` names a directory.
fn cwd(attrs: &Attrs, host: &dyn Host, report: &mut Report) -> Option<PathBuf> {
    let Some(at) = &attrs.cwd else {
        return Some(PathBuf::from("/"));
    };
    match host.status(&at.value) {
        Ok(status) if status.kind == FileKind::Directory => Some(at.value.clone()),
        Ok(status) => {
            let what = status.kind.described();
            report.error(
                "cwd",
                at,
                format!("{} is {what}, not a directory", at.value.display()),
            );
            None
        }
        Err(error) => {
            report.error(
                "cwd",
                at,
                format!("cannot use {}: {error}", at.value.display()),
            );
            None
        }
    }
}

/// The server to exec, if set, absolute and executable.
fn server<'a>(
    attrs: &'a Attrs,
    table: &Origin,
    host: &dyn Host,
    report: &mut Report,
    required: bool,
) -> Option<&'a At<PathBuf>> {
    let Some(server) = &attrs.server else {
        if required {
            report.error_at(
                "server",
                Some(table),
                "`server` is required unless `type = \"INTERNAL\"`",
            );
        }
        return None;
    };
    if !server.value.is_absolute() {
        report.error(
            "server",
            server,
            format!("{} is not an absolute path", server.value.display()),
        );
        return None;
    }
    if !host.is_executable(&server.value) {
        report.error(
            "server",
            server,
            format!("{} is not an executable file", server.value.display()),
        );
        return None;
    }
    Some(server)
}

/// `server` is `None` when it is unset or wrong: argv[0] is then unknown, but NAMEINARGS
/// is still checked.
fn argv(
    attrs: &Attrs,
    flags: &[Flag],
    server: Option<&At<PathBuf>>,
    report: &mut Report,
) -> Option<Vec<String>> {
    let args = value_or(&attrs.server_args, Vec::new());
    if flags.contains(&Flag::NameInArgs) {
        if args.is_empty() && !report.failed("server_args") {
            report.error_at(
                "server_args",
                attrs.flags.as_ref().map(|at| &at.origin),
                "NAMEINARGS takes argv[0] from server_args, which is empty",
            );
            return None;
        }
        return (!args.is_empty()).then_some(args);
    }
    let server = server?;
    let program = server.value.file_name().map_or_else(
        || server.value.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    Some(std::iter::once(program).chain(args).collect())
}

/// `Ok(None)` means the server runs as oxinetd's own user.
/// `required`: a missing `user` is an error as root (when the service is known to be
/// exec'd).
fn identity(
    attrs: &Attrs,
    table: &Origin,
    host: &dyn Host,
    report: &mut Report,
    required: bool,
) -> Option<Option<Identity>> {
    let user_at = match &attrs.user {
        Some(at) => Some(at),
        None if host.euid() == 0 => {
            if required {
                report.error_at(
                    "user",
                    Some(table),
                    "`user` is required when oxinetd runs as root",
                );
            }
            None
        }
        None => {
            if let Some(at) = &attrs.group {
                report.warn("group", Some(&at.origin), "oxinetd is not root: group cannot be switched, the server runs with oxinetd's own groups");
            }
            return Some(None);
        }
    };
    // The user and the group are each looked up, whatever the other gives.
    let user = user_at.and_then(|at| {
        let user = host.user(&at.value);
        if user.is_none() {
            report.error("user", at, format!("no such user: {}", at.value));
        }
        user
    });
    let gid = match &attrs.group {
        Some(at) => match host.group(&at.value) {
            Some(gid) => Some(Some(gid)),
            None => {
                report.error("group", at, format!("no such group: {}", at.value));
                None
            }
        },
        None => Some(None),
    };
    let (user_at, user, gid) = (user_at?, user?, gid?);
    let gid = gid.unwrap_or(user.gid);
    if host.euid() != 0 {
        if user.uid != host.euid() {
            report.warn(
                "user",
                Some(&user_at.origin),
                format!(
                    "oxinetd is not root: the server runs as uid {} instead of {}",
                    host.euid(),
                    user_at.value
                ),
            );
        }
        return Some(None);
    }
    let groups = if attrs.groups.as_ref().is_some_and(|at| at.value) {
        host.group_list(&user.name, gid)
    } else {
        Vec::new()
    };
    Some(Some(Identity {
        user: user.name,
        uid: user.uid,
        gid,
        groups,
        home: user.home,
        shell: user.shell,
    }))
}

/// `environment`, made once per distinct inputs in a load.
fn shared_environment(
    attrs: &Attrs,
    identity: Option<&Identity>,
    host: &dyn Host,
    environments: &mut Environments,
) -> Rc<[Vec<u8>]> {
    let inputs = EnvironmentInputs {
        passenv: attrs.passenv.as_ref().map(|at| at.value.clone()),
        login: identity
            .filter(|identity| identity.uid != host.euid())
            .map(|identity| {
                (
                    identity.home.clone(),
                    identity.user.clone(),
                    identity.shell.clone(),
                )
            }),
        env: attrs
            .env
            .as_ref()
            .map_or_else(Vec::new, |at| at.value.clone()),
    };
    environments
        .made
        .entry(inputs)
        .or_insert_with(|| environment(attrs, identity, host).into())
        .clone()
}

/// oxinetd's environment (or only `passenv`), the target user's login variables when the
/// server's uid is not oxinetd's (a server running as `nobody` never sees `HOME=/root`;
/// one running as oxinetd's own user gets exactly what was inherited or passed), then
/// `env`; the per-connection variables are left to the spawner.
fn environment(attrs: &Attrs, identity: Option<&Identity>, host: &dyn Host) -> Vec<Vec<u8>> {
    let mut variables: Vec<(Vec<u8>, Vec<u8>)> = host
        .environment()
        .into_iter()
        .filter(|(name, _)| match &attrs.passenv {
            Some(at) => at
                .value
                .iter()
                .any(|pass| pass.as_bytes() == name.as_slice()),
            None => true,
        })
        .collect();
    let mut set = |name: &str, value: &str| {
        variables.retain(|(existing, _)| existing != name.as_bytes());
        variables.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
    };
    if let Some(identity) = identity.filter(|identity| identity.uid != host.euid()) {
        set("HOME", &identity.home);
        set("USER", &identity.user);
        set("LOGNAME", &identity.user);
        set("SHELL", &identity.shell);
    }
    for (name, value) in attrs.env.iter().flat_map(|at| &at.value) {
        set(name, value);
    }
    variables
        .into_iter()
        .filter(|(name, _)| {
            !CONNECTION_VARIABLES
                .iter()
                .any(|v| v.as_bytes() == name.as_slice())
        })
        .map(|(mut name, value)| {
            name.push(b'=');
            name.extend_from_slice(&value);
            name
        })
        .collect()
}

fn rlimits(attrs: &Attrs) -> Vec<(Resource, Limit)> {
    [
        (Resource::As, &attrs.rlimit_as),
        (Resource::Cpu, &attrs.rlimit_cpu),
        (Resource::Data, &attrs.rlimit_data),
        (Resource::Rss, &attrs.rlimit_rss),
        (Resource::Stack, &attrs.rlimit_stack),
        (Resource::Files, &attrs.rlimit_files),
    ]
    .into_iter()
    .filter_map(|(resource, at)| at.as_ref().map(|at| (resource, at.value)))
    .collect()
}

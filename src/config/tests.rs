//! The whole config layer against a table-driven host: files in memory, two users.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::spec::{
    Address, Identity, Instances, Internal, Limit, Program, Protocol, Resource, SocketType,
};
use super::*;

struct FakeHost {
    /// Bytes, so a file may be anything but UTF-8.
    files: BTreeMap<PathBuf, Vec<u8>>,
    /// Files whose kind, owner or mode is not the default: a regular root-owned 0644
    /// file (0755 under /bin), and for a folder of files a root-owned 0755 directory.
    statuses: BTreeMap<PathBuf, FileStatus>,
    euid: u32,
    /// Stamps of files, for the cache; a file without one is read at every load.
    stamps: BTreeMap<PathBuf, Stamp>,
    /// When files are read (nanoseconds since the epoch).
    read_at: i64,
    /// Programs that are no longer executable (under /bin every other one is).
    gone: Vec<PathBuf>,
    /// The files read so far.
    reads: std::cell::RefCell<Vec<PathBuf>>,
}

impl FakeHost {
    fn new(euid: u32, files: &[(&str, &str)]) -> FakeHost {
        FakeHost {
            files: files
                .iter()
                .map(|(path, text)| (PathBuf::from(path), text.as_bytes().to_vec()))
                .collect(),
            statuses: BTreeMap::new(),
            euid,
            stamps: BTreeMap::new(),
            read_at: 0,
            gone: Vec::new(),
            reads: Default::default(),
        }
    }
}

impl Host for FakeHost {
    fn user(&self, name: &str) -> Option<UserEntry> {
        let (uid, gid) = match name {
            "root" => (0, 0),
            "nobody" => (65534, 65534),
            "me" => (1000, 1000),
            _ => return None,
        };
        Some(UserEntry {
            name: name.to_string(),
            uid,
            gid,
            home: format!("/home/{name}"),
            shell: "/bin/sh".to_string(),
        })
    }
    fn group(&self, name: &str) -> Option<u32> {
        match name {
            "daemon" => Some(1),
            "nogroup" => Some(65534),
            _ => None,
        }
    }
    fn group_list(&self, _user: &str, gid: u32) -> Vec<u32> {
        vec![gid, 4, 24]
    }
    fn service_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        parse_services_port(
            "echo 7/tcp\necho 7/udp\nfinger 79/tcp # comment\nhttp 80/tcp www\n",
            name,
            protocol,
        )
    }
    fn is_executable(&self, path: &Path) -> bool {
        path.starts_with("/bin") && !self.gone.iter().any(|gone| gone == path)
    }
    fn euid(&self) -> u32 {
        self.euid
    }
    fn somaxconn(&self) -> u32 {
        4096
    }
    fn environment(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b"PATH".to_vec(), b"/bin".to_vec()),
            (b"SECRET".to_vec(), b"1".to_vec()),
            (b"REMOTE_ADDR".to_vec(), b"stale".to_vec()),
        ]
    }
    fn status(&self, path: &Path) -> io::Result<FileStatus> {
        if let Some(status) = self.statuses.get(path) {
            return Ok(*status);
        }
        let kind = if self.files.contains_key(path) || path.starts_with("/bin") {
            FileKind::Regular
        } else if self.files.keys().any(|file| file.starts_with(path)) || path == Path::new("/") {
            FileKind::Directory
        } else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        let mode = if path.starts_with("/bin") {
            0o755
        } else {
            0o644
        };
        Ok(FileStatus { kind, uid: 0, mode })
    }
    fn stamp(&self, path: &Path) -> io::Result<Stamp> {
        (self.stamps.get(path).copied()).ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn read_stamped(&self, path: &Path, limit: usize) -> io::Result<(Vec<u8>, Option<Stamped>)> {
        let bytes = self.read(path, limit)?;
        let stamped = (self.stamps.get(path)).map(|&stamp| Stamped {
            stamp,
            read_at: self.read_at,
        });
        Ok((bytes, stamped))
    }
    fn read(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        self.reads.borrow_mut().push(path.to_path_buf());
        if let Some(status) = self.statuses.get(path)
            && status.kind != FileKind::Regular
        {
            let message = format!("is {}, not a regular file", status.kind.described());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        let bytes = self
            .files
            .get(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(bytes[..bytes.len().min(limit + 1)].to_vec())
    }
    fn rpc_number(&self, name: &str) -> Option<u32> {
        (name == "rstatd").then_some(100001)
    }
    fn toml_files(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let files: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .cloned()
            .collect();
        if files.is_empty() {
            Err(io::Error::from(io::ErrorKind::NotFound))
        } else {
            Ok(files)
        }
    }
}

fn load_as(euid: u32, text: &str) -> Config {
    load(
        Path::new("/etc/oxinetd.toml"),
        &FakeHost::new(euid, &[("/etc/oxinetd.toml", text)]),
    )
}

fn one(text: &str) -> ServiceSpec {
    let config = load_as(0, text);
    assert!(config.errors.is_empty(), "{:?}", config.errors);
    assert_eq!(config.services.len(), 1);
    Rc::unwrap_or_clone(config.services.into_iter().next().unwrap())
}

fn exec(spec: &ServiceSpec) -> &spec::ExecSpec {
    match &spec.program {
        Program::Exec(exec) => exec,
        _ => panic!("not exec'd"),
    }
}

/// The one error a config produces, as printed.
fn error(text: &str) -> String {
    let config = load_as(0, text);
    assert_eq!(config.errors.len(), 1, "{:?}", config.errors);
    config.errors[0].to_string()
}

const HELLO: &str = "[service.hello]\nsocket_type = \"stream\"\nwait = false\nuser = \"nobody\"\nserver = \"/bin/hello\"\nport = 9000\n";

#[test]
fn a_complete_exec_service() {
    let spec = one(&format!(
        "{HELLO}server_args = \"-v  -x\"\ninstances = 4\numask = \"027\"\nrlimit_files = \"1K\"\ngroups = true\ngroup = \"daemon\"\n"
    ));
    assert_eq!(spec.socket.socket_type, SocketType::Stream);
    assert_eq!(spec.socket.protocol, Protocol::Tcp);
    assert_eq!(spec.socket.address.to_string(), "[::]:9000");
    assert_eq!(spec.socket.v6only, Some(false));
    assert_eq!(spec.instances, Instances::Limit(4));
    let exec = exec(&spec);
    assert_eq!(exec.argv, ["hello", "-v", "-x"]);
    assert_eq!(exec.umask, Some(0o27));
    assert_eq!(exec.rlimits, [(Resource::Files, Limit::Value(1024))]);
    assert_eq!(
        exec.identity,
        Some(Identity {
            user: "nobody".into(),
            uid: 65534,
            gid: 1,
            groups: vec![1, 4, 24],
            home: "/home/nobody".into(),
            shell: "/bin/sh".into()
        })
    );
}

#[test]
fn environment_is_inherited_or_passed() {
    let text = |env: &str| {
        String::from_utf8(exec(&one(&format!("{HELLO}{env}"))).environment.join(&b' ')[..].to_vec())
            .unwrap()
    };
    // Inherited, with the login variables of the target user; connection variables left to the spawner.
    assert_eq!(
        text(""),
        "PATH=/bin SECRET=1 HOME=/home/nobody USER=nobody LOGNAME=nobody SHELL=/bin/sh"
    );
    assert_eq!(
        text("passenv = [\"PATH\"]\nenv = [\"A=1\", \"PATH=/x\"]\n"),
        "HOME=/home/nobody USER=nobody LOGNAME=nobody SHELL=/bin/sh A=1 PATH=/x"
    );
    assert_eq!(
        text("passenv = []\n"),
        "HOME=/home/nobody USER=nobody LOGNAME=nobody SHELL=/bin/sh"
    );
}

#[test]
fn login_variables_only_when_the_user_changes() {
    let text = |euid: u32, keys: &str| {
        let config = load_as(
            euid,
            &format!("{}{keys}", HELLO.replace("user = \"nobody\"\n", "")),
        );
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        let environment = &exec(&config.services[0]).environment;
        String::from_utf8(environment.join(&b' ')).unwrap()
    };
    // Root running a server as root: nothing changes, so nothing is added.
    assert_eq!(text(0, "user = \"root\"\n"), "PATH=/bin SECRET=1");
    assert_eq!(text(0, "user = \"root\"\npassenv = []\n"), "");
    assert_eq!(
        text(
            0,
            "user = \"root\"\npassenv = [\"PATH\"]\nenv = [\"A=1\"]\n"
        ),
        "PATH=/bin A=1"
    );
    // Not root: the server runs as oxinetd's own user, with what oxinetd has.
    assert_eq!(text(1000, ""), "PATH=/bin SECRET=1");
    assert_eq!(text(1000, "user = \"me\"\npassenv = []\n"), "");
}

#[test]
fn nameinargs_takes_argv0_from_the_arguments() {
    let spec = one(&format!(
        "{HELLO}flags = [\"NAMEINARGS\"]\nserver_args = [\"in.hello\", \"a b\"]\n"
    ));
    assert_eq!(exec(&spec).argv, ["in.hello", "a b"]);
}

#[test]
fn addresses_and_flags() {
    let address = |extra: &str| one(&format!("{HELLO}{extra}")).socket;
    assert_eq!(
        address("flags = \"IPv4\"\n").address.to_string(),
        "0.0.0.0:9000"
    );
    assert_eq!(address("flags = \"IPv4\"\n").v6only, None);
    assert_eq!(
        address("bind = \"::1\"\nv6only = true\n").v6only,
        Some(true)
    );
    assert_eq!(
        address("bind = \"127.0.0.2\"\n").address.to_string(),
        "127.0.0.2:9000"
    );
    assert!(address("flags = [\"NODELAY\", \"KEEPALIVE\", \"REUSE\"]\n").nodelay);
}

#[test]
fn ports_come_from_etc_services() {
    let spec = one("[service.echo]\ntype = \"INTERNAL\"\nprotocol = \"udp\"\n");
    assert_eq!(
        (
            spec.socket.address.ip().unwrap().port(),
            spec.socket.socket_type,
            spec.wait
        ),
        (7, SocketType::Dgram, true)
    );
    assert_eq!(spec.program, Program::Internal(Internal::Echo));
    let config = load_as(
        0,
        &HELLO
            .to_string()
            .replace("[service.hello]", "[service.finger]")
            .replace("port = 9000\n", ""),
    );
    assert_eq!(config.services[0].socket.address.ip().unwrap().port(), 79);
}

#[test]
fn defaults_fill_unset_keys_and_lists_replace() {
    let config = load_as(
        0,
        &format!(
            "[defaults]\nuser = \"root\"\ninstances = 7\nflags = [\"IPv4\"]\n{}",
            HELLO.replace("user = \"nobody\"\n", "flags = [\"NODELAY\"]\n")
        ),
    );
    let spec = &config.services[0];
    assert_eq!(spec.instances, Instances::Limit(7));
    assert_eq!(exec(spec).identity.as_ref().unwrap().uid, 0);
    assert!(spec.socket.nodelay);
    assert!(
        spec.socket.address.ip().unwrap().is_ipv6(),
        "the service's flags replace the default list"
    );
}

#[test]
fn several_definitions_of_one_name_by_id() {
    let config = load_as(
        0,
        "[[service.echo]]\nid = \"echo-stream\"\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\n[[service.echo]]\nid = \"echo-dgram\"\ntype = \"INTERNAL\"\nsocket_type = \"dgram\"\n",
    );
    let ids: Vec<&str> = config.services.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["echo-stream", "echo-dgram"]);
}

#[test]
fn disabled_services_are_left_out_quietly() {
    let config = load_as(0, &format!("{HELLO}disable = \"yes\"\n"));
    assert!(config.services.is_empty() && config.errors.is_empty() && config.broken.is_empty());
}

#[test]
fn errors_name_file_line_service_and_key() {
    assert_eq!(
        error(&format!("{HELLO}sockettype = 1\n")),
        "/etc/oxinetd.toml:7: service hello: key sockettype: unknown key (did you mean `socket_type`?)"
    );
    assert_eq!(
        error(&HELLO.replace("port = 9000", "port = 0")),
        "/etc/oxinetd.toml:6: service hello: key port: port 0 is out of range 1-65535"
    );
    assert!(
        error(&HELLO.replace("\"stream\"", "\"dgram\"\nprotocol = \"tcp\""))
            .contains(":3: service hello: key protocol: a dgram socket cannot use tcp")
    );
    assert!(
        error(&HELLO.replace("\"stream\"", "\"dgram\""))
            .contains("key wait: a dgram server needs `wait = true`")
    );
    assert!(
        error(&HELLO.replace("server = \"/bin/hello\"\n", ""))
            .contains(":1: service hello: key server: `server` is required")
    );
    assert!(error(&HELLO.replace("/bin/hello", "bin/hello")).contains("not an absolute path"));
    assert!(error(&HELLO.replace("/bin/hello", "/usr/hello")).contains("not an executable file"));
    assert!(error(&HELLO.replace("nobody", "ghost")).contains("key user: no such user: ghost"));
    assert!(
        error(&HELLO.replace("user = \"nobody\"\n", ""))
            .contains("`user` is required when oxinetd runs as root")
    );
    assert!(error(&HELLO.replace("wait = false\n", "")).contains("`wait` is required"));
    assert!(
        error(&HELLO.replace("port = 9000\n", "")).contains("hello/tcp is not in /etc/services")
    );
    assert!(
        error("[service.echo]\ntype = \"INTERNAL UNLISTED\"\nsocket_type = \"stream\"\n")
            .contains("an UNLISTED service needs `port`")
    );
    assert!(
        error("[service.x]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = 1\n")
            .contains("there is no internal service `x`")
    );
    assert!(error("bogus = 1\n").contains("/etc/oxinetd.toml:1: key bogus: unknown top-level key"));
    assert!(error("port = 1\n").contains("a service key outside any table"));
    assert!(
        error(&format!(
            "{HELLO}{}",
            HELLO.replace("port = 9000", "port = 9001")
        ))
        .contains("duplicate key")
    );
}

#[test]
fn every_error_of_every_service_at_once() {
    let config = load_as(
        0,
        "[service.a]\nport = \"x\"\nwait = \"maybe\"\n[service.b]\nsocket_type = \"stream\"\nwait = false\nport = 1\n[service.c]\nsocket_type = \"stream\"\ntype = \"INTERNAL\"\nport = 2\n",
    );
    // Service a also lacks socket_type, which its bad keys no longer hide; a and b are
    // exec'd services without server and user, each missing key its own error.
    let errors: Vec<(Option<usize>, &str, Option<&str>)> = config
        .errors
        .iter()
        .map(|e| (e.line, e.service.as_deref().unwrap(), e.key.as_deref()))
        .collect();
    assert_eq!(
        errors,
        [
            (Some(1), "a", Some("socket_type")),
            (Some(1), "a", Some("server")),
            (Some(1), "a", Some("user")),
            (Some(2), "a", Some("port")),
            (Some(3), "a", Some("wait")),
            (Some(4), "b", Some("server")),
            (Some(4), "b", Some("user")),
            (Some(10), "c", Some("type")),
        ],
        "{:?}",
        config.errors
    );
    assert_eq!(config.broken, ["a", "b", "c"]);
    assert!(
        !config.fatal,
        "bad services do not make the main file invalid"
    );
}

#[test]
fn bad_keys_do_not_hide_other_errors_of_their_service() {
    let config = load_as(
        0,
        &HELLO
            .replace("port = 9000", "port = 70000")
            .replace("/bin/hello", "bin/hello"),
    );
    let errors: Vec<String> = config.errors.iter().map(ToString::to_string).collect();
    // In line order: server is on line 5, port on line 6.
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains(":5: service hello: key server: bin/hello is not an absolute path"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains(":6: service hello: key port: port 70000 is out of range"),
        "{errors:?}"
    );
}

/// Each key is checked on its own merits: a key that fails to read hides no other
/// key's error, and adds none about what it would have decided. One line per case: the
/// configuration, then each error expected as `LINE: service S: key K: MESSAGE...`, in
/// line order.
#[test]
fn each_key_is_checked_on_its_own() {
    let hello = |from: &str, to: &str| {
        assert!(HELLO.contains(from), "{from}");
        HELLO.replace(from, to)
    };
    let cases: &[(String, &[&str])] = &[
        // The issue: socket_type hid server, and line 3 came before line 2.
        (
            "[service.hello]\nserver = \"bin/cat\"\nsocket_type = \"strem\"\nwait = false\nuser = \"nobody\"\nport = 9000\n".to_string(),
            &[
                ":2: service hello: key server: bin/cat is not an absolute path",
                ":3: service hello: key socket_type: `strem` is not one of: stream, dgram, seqpacket",
            ],
        ),
        // An unreadable socket_type: no lookup in /etc/services, no wait follow-on.
        (
            hello("\"stream\"", "\"strem\"").replace("port = 9000\n", ""),
            &[":2: service hello: key socket_type: `strem` is not one of"],
        ),
        (
            hello("\"stream\"", "\"strem\"\nonly_from = \"10.0.0.0/33\"")
                .replace("nobody", "ghost"),
            &[
                ":2: service hello: key socket_type:",
                ":3: service hello: key only_from:",
                ":5: service hello: key user: no such user: ghost",
            ],
        ),
        // A bad protocol leaves the socket type unknown: no dgram `wait` error.
        (
            hello("\"stream\"", "\"dgram\"\nprotocol = \"tcpp\""),
            &[":3: service hello: key protocol: `tcpp` is not one of: tcp, udp"],
        ),
        // A bad server hides neither user nor group nor wait.
        (
            hello("/bin/hello", "bin/hello")
                .replace("nobody", "ghost")
                .replace("port = 9000\n", "port = 9000\ngroup = \"nogroup2\"\n"),
            &[
                ":4: service hello: key user: no such user: ghost",
                ":5: service hello: key server: bin/hello is not an absolute path",
                ":7: service hello: key group: no such group: nogroup2",
            ],
        ),
        (
            hello("\"stream\"", "\"dgram\"").replace("/bin/hello", "/usr/hello"),
            &[
                ":3: service hello: key wait: a dgram server needs `wait = true`",
                ":5: service hello: key server: /usr/hello is not an executable file",
            ],
        ),
        // An unreadable wait adds no `wait` error of its own.
        (
            hello("wait = false", "wait = \"maybe\"").replace("\"stream\"", "\"dgram\""),
            &[":3: service hello: key wait: expected true, false"],
        ),
        // An unreadable type: the kind of service is unknown, so neither `wait`, `user`
        // nor `port` is required, but `server` is still checked.
        (
            "[service.hello]\ntype = \"INTERNL\"\nserver = \"bin/x\"\nsocket_type = \"stream\"\n"
                .to_string(),
            &[
                ":2: service hello: key type: `INTERNL` is not one of",
                ":3: service hello: key server: bin/x is not an absolute path",
            ],
        ),
        (
            format!("{HELLO}type = \"RPC BOGUS\"\n"),
            &[":7: service hello: key type: `BOGUS` is not one of"],
        ),
        // NAMEINARGS with unreadable arguments: not also \"empty\".
        (
            format!("{HELLO}flags = \"NAMEINARGS\"\nserver_args = [1]\n"),
            &[":8: service hello: key server_args: expected a string"],
        ),
        // A bad key is not filled from [defaults]: no dgram `wait` error.
        (
            format!(
                "[defaults]\nsocket_type = \"dgram\"\n{}",
                hello("\"stream\"", "\"strem\"")
            ),
            &[":4: service hello: key socket_type: `strem` is not one of"],
        ),
        // A bad [defaults] key is reported once, not as missing from every service.
        (
            format!(
                "[defaults]\nsocket_type = \"strem\"\n{}{}",
                hello("socket_type = \"stream\"\n", ""),
                hello("socket_type = \"stream\"\n", "")
                    .replace("hello]", "other]")
                    .replace("9000", "9001")
            ),
            &[":2: service [defaults]: key socket_type: `strem` is not one of"],
        ),
        // Errors of several services come in line order too.
        (
            format!(
                "{}{}",
                hello("9000", "0"),
                hello("hello]", "other]").replace("wait = false", "wait = 3")
            ),
            &[
                ":6: service hello: key port: port 0 is out of range",
                ":9: service other: key wait: expected a boolean, found an integer",
            ],
        ),
    ];
    for (text, want) in cases {
        let errors: Vec<String> = load_as(0, text)
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), want.len(), "{text}\n{errors:#?}");
        for (error, want) in errors.iter().zip(*want) {
            assert!(
                error.starts_with("/etc/oxinetd.toml:") && error.contains(want),
                "{text}\nwant {want:?}, got {errors:#?}"
            );
        }
    }
}

/// Errors are sorted by file, then line (a file's unlined errors first), keeping the
/// order found among equals.
#[test]
fn errors_come_sorted_by_file_and_line() {
    let host = FakeHost::new(
        0,
        &[
            (
                "/etc/oxinetd.toml",
                &format!(
                    "includedir = \"oxinetd.d\"\n{}",
                    HELLO
                        .replace("9000", "0")
                        .replace("\"stream\"", "\"strem\"")
                ),
            ),
            (
                "/etc/oxinetd.d/b.toml",
                &HELLO
                    .replace("hello]", "b]")
                    .replace("wait = false", "wait = 3"),
            ),
            ("/etc/oxinetd.d/a.toml", "[service.a]\nport = \"x\"\n"),
        ],
    );
    let config = load(Path::new("/etc/oxinetd.toml"), &host);
    let places: Vec<(String, Option<usize>, Option<&str>)> = config
        .errors
        .iter()
        .map(|e| (e.file.display().to_string(), e.line, e.key.as_deref()))
        .collect();
    fn at(
        file: &str,
        line: usize,
        key: &'static str,
    ) -> (String, Option<usize>, Option<&'static str>) {
        (file.to_string(), Some(line), Some(key))
    }
    assert_eq!(
        places,
        [
            at("/etc/oxinetd.d/a.toml", 1, "socket_type"),
            at("/etc/oxinetd.d/a.toml", 1, "server"),
            at("/etc/oxinetd.d/a.toml", 1, "user"),
            at("/etc/oxinetd.d/a.toml", 1, "wait"),
            at("/etc/oxinetd.d/a.toml", 2, "port"),
            at("/etc/oxinetd.d/b.toml", 3, "wait"),
            at("/etc/oxinetd.toml", 3, "socket_type"),
            at("/etc/oxinetd.toml", 7, "port"),
        ],
        "{:#?}",
        config.errors
    );
}

#[test]
fn not_root_runs_services_as_oneself_with_a_warning() {
    let config = load_as(1000, HELLO);
    assert!(config.errors.is_empty(), "{:?}", config.errors);
    assert_eq!(exec(&config.services[0]).identity, None);
    assert!(
        config.warnings[0]
            .to_string()
            .contains("key user: oxinetd is not root")
    );
    assert!(
        load_as(1000, &HELLO.replace("user = \"nobody\"\n", ""))
            .errors
            .is_empty()
    );
}

#[test]
fn includedir_is_read_relative_to_the_main_file() {
    let host = FakeHost::new(
        0,
        &[
            (
                "/etc/oxinetd.toml",
                "includedir = \"oxinetd.d\"\n[defaults]\nuser = \"nobody\"\n",
            ),
            (
                "/etc/oxinetd.d/a.toml",
                &HELLO.replace("user = \"nobody\"\n", ""),
            ),
            ("/etc/oxinetd.d/b.toml", "[service.bad]\nport = \n"),
            ("/etc/oxinetd.d/c.toml", "[defaults]\nuser = \"root\"\n"),
        ],
    );
    let config = load(Path::new("/etc/oxinetd.toml"), &host);
    assert_eq!(config.services.len(), 1);
    assert_eq!(
        exec(&config.services[0]).identity.as_ref().unwrap().uid,
        65534
    );
    let errors: Vec<String> = config.errors.iter().map(ToString::to_string).collect();
    assert!(
        errors[0].starts_with("/etc/oxinetd.d/b.toml:2: TOML syntax error"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("/etc/oxinetd.d/c.toml:1: key defaults: an included file holds only"),
        "{errors:?}"
    );
    assert!(!config.fatal);
}

#[test]
fn a_broken_main_file_is_fatal() {
    assert!(load_as(0, "[service.x\n").fatal);
    assert!(load_as(0, "[defaults]\nport = \"x\"\n").fatal);
    assert!(load_as(0, "includedir = \"missing\"\n").fatal);
    assert!(load(Path::new("/nowhere.toml"), &FakeHost::new(0, &[])).fatal);
}

#[test]
fn services_file_lookup() {
    let text = "# c\nhttp 80/tcp www # web\nhttp 80/udp\n";
    assert_eq!(parse_services_port(text, "www", Protocol::Tcp), Some(80));
    assert_eq!(parse_services_port(text, "http", Protocol::Udp), Some(80));
    assert_eq!(parse_services_port(text, "ftp", Protocol::Tcp), None);
}

/// The issue-3 keys: each read into the spec, one line per case.
#[test]
fn access_limits_logging_and_banners() {
    let spec = |extra: &str| one(&format!("{HELLO}{extra}"));
    let rules = spec("only_from = \"127.0.0.1 10.0.{1,2}\"\nno_access = [\"10.0.1.5\"]\n")
        .access
        .rules
        .clone();
    assert_eq!(rules.only_from.as_ref().map(Vec::len), Some(3));
    assert_eq!(rules.no_access.len(), 1);
    assert!(spec("").access.rules.is_open());
    assert!(
        spec("access_times = \"08:00-12:00 22:00-02:00\"\n")
            .access
            .times
            .is_some()
    );
    assert_eq!(spec("max_load = 2.5\n").access.max_load, Some(2.5));
    assert!(spec("flags = [\"IDONLY\"]\n").access.ident_required);
    assert_eq!(spec("per_source = 3\n").limits.per_source, Some(3));
    assert_eq!(spec("per_source = \"UNLIMITED\"\n").limits.per_source, None);
    assert_eq!(
        spec("cps = [50, 10]\n").limits.cps,
        Some((50, std::time::Duration::from_secs(10)))
    );
    let logging = spec("").logging;
    assert!(logging.pid && logging.host && logging.exit && logging.duration && !logging.traffic);
    assert!(logging.failures && logging.failure_host);
    let logging = spec("log_on_success = []\nlog_on_failure = []\n").logging;
    assert!(!logging.pid && !logging.exit && !logging.failures);
    assert!(spec("log_on_success = \"USERID\"\n").logging.wants_ident());
    assert!(
        spec("log_type = \"FILE /var/log/hello.log 5M\"\n")
            .logging
            .log_type
            .is_some()
    );
    assert!(spec("flags = \"NORETRY NOLIBWRAP\"\n").no_retry);
    assert_eq!(
        spec("interface = \"127.0.0.3\"\n")
            .socket
            .address
            .to_string(),
        "127.0.0.3:9000"
    );
}

#[test]
fn services_that_run_no_server() {
    let sensor = one(
        "[service.trap]\ntype = \"UNLISTED\"\nsocket_type = \"stream\"\nport = 9\nflags = \"SENSOR\"\n",
    );
    assert_eq!(
        sensor.program,
        Program::Sensor(crate::limits::DenyTime::Minutes(60))
    );
    assert!(!sensor.wait);
    let redirect = one(
        "[service.web]\ntype = \"UNLISTED\"\nsocket_type = \"stream\"\nport = 80\nredirect = \"10.0.0.2 8080\"\nidle_timeout = 30\n",
    );
    let Program::Redirect(to) = &redirect.program else {
        panic!("not a redirect: {:?}", redirect.program);
    };
    assert_eq!((to.host.as_str(), to.port), ("10.0.0.2", 8080));
    assert_eq!(to.connect_timeout.as_secs(), 10);
    assert_eq!(to.idle_timeout.map(|d| d.as_secs()), Some(30));
    let mux = one(&HELLO.replace("port = 9000\n", "type = \"TCPMUXPLUS\"\n"));
    assert_eq!(mux.tcpmux, Some(spec::TcpMux::Plus));
    let tcpmux = one("[service.tcpmux]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\n");
    assert_eq!(tcpmux.socket.address.ip().unwrap().port(), 1);
    let rpc = one(&format!(
        "{HELLO}type = [\"RPC\", \"UNLISTED\"]\nrpc_number = 300999\nrpc_version = \"1-2\"\n"
    ));
    assert_eq!(
        rpc.rpc,
        Some(spec::RpcSpec {
            number: 300999,
            versions: (1, 2)
        })
    );
}

#[test]
fn issue_3_errors_name_the_key() {
    assert!(
        error(&format!("{HELLO}only_from = \"10.0.0.0/33\"\n"))
            .contains(":7: service hello: key only_from: \"10.0.0.0/33\"")
    );
    assert!(
        error(&format!("{HELLO}access_times = \"25:00-26:00\"\n")).contains("key access_times:")
    );
    assert!(error(&format!("{HELLO}cps = [0, 10]\n")).contains("key cps:"));
    assert!(error(&format!("{HELLO}log_type = \"FILE relative.log\"\n")).contains("key log_type:"));
    assert!(
        error(&format!("{HELLO}banner = \"/missing\"\n"))
            .contains("key banner: cannot read /missing")
    );
    assert!(
        error(&format!("{HELLO}max_servers = 3\n"))
            .contains("key max_servers: this key is about the whole daemon")
    );
    assert!(
        error(&format!("{HELLO}bind = \"::1\"\ninterface = \"::1\"\n")).contains("key interface:")
    );
    assert!(
        error(&format!("{HELLO}redirect = \"x 1\"\n"))
            .contains("key server: a redirect service runs no server")
    );
    assert!(
        error(&format!("{HELLO}type = \"RPC\"\n"))
            .contains("key rpc_version: an RPC service needs")
    );
    assert!(
        error(&format!(
            "{HELLO}type = \"RPC UNLISTED\"\nrpc_version = 2\n"
        ))
        .contains("not in /etc/rpc")
    );
    assert!(
        error(
            &HELLO
                .replace("wait = false", "wait = true")
                .replace("port = 9000\n", "type = \"TCPMUX\"\n")
        )
        .contains("`wait = false`")
    );
    let mux = HELLO.replace("port = 9000\n", "type = \"TCPMUX\"\n");
    assert!(
        error(&format!("{mux}{}", mux.replace("hello]", "Hello]")))
            .contains("tcpmux names ignore case")
    );
    let warned = |extra: &str| {
        load_as(0, &format!("{HELLO}{extra}"))
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(warned("only_from = []\n").contains("every peer is refused"));
    assert!(
        warned("log_on_success = \"TRAFFIC\"\n").contains("TRAFFIC is only counted for redirected")
    );
    assert!(warned("deny_time = 5\n").contains("deny_time only matters"));
}

#[test]
fn defaults_switch_services_on_and_off() {
    let two = format!(
        "{HELLO}{}",
        HELLO.replace("hello]", "other]").replace("9000", "9001")
    );
    let ids = |defaults: &str| {
        let config = load_as(0, &format!("[defaults]\n{defaults}\n{two}"));
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        config
            .services
            .iter()
            .map(|s| s.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(""), ["hello", "other"]);
    assert_eq!(ids("disabled = \"hello\""), ["other"]);
    assert_eq!(ids("enabled = [\"hello\"]"), ["hello"]);
    let config = load_as(0, &format!("[defaults]\nmax_servers = 7\n{two}"));
    assert_eq!(config.max_servers, Some(7));
}

/// Issue 12, hole 3: every error of a file that could be opened names it and a line,
/// whatever went wrong (one line per case: the file's text, the place and words).
#[test]
fn errors_without_a_place_get_one() {
    let deep_key = format!("x = 1\n{}d = 1\n", "c.".repeat(100));
    let deep_array = format!("x = 1\n\na = {}{}\n", "[".repeat(200), "]".repeat(200));
    let cases: &[(&[u8], &str)] = &[
        (
            b"a = 1\nb = \"caf\xe9\"\n",
            "/etc/oxinetd.toml:2: not UTF-8: byte 0xe9 at column 9",
        ),
        (
            b"\xff",
            "/etc/oxinetd.toml:1: not UTF-8: byte 0xff at column 1",
        ),
        (
            deep_key.as_bytes(),
            "/etc/oxinetd.toml:2: TOML syntax error: recursion limit",
        ),
        (
            deep_array.as_bytes(),
            "/etc/oxinetd.toml:3: TOML syntax error: cannot recurse",
        ),
        (
            b"\ndefaults = \"x\"\n",
            "/etc/oxinetd.toml:2: service [defaults]: expected a table, found a string",
        ),
        (
            b"[service]\necho = 1\n",
            "/etc/oxinetd.toml:2: service echo: expected a table, found an integer",
        ),
        (
            b"[service]\necho = [1]\n",
            "/etc/oxinetd.toml:2: service echo: expected a table, found an integer",
        ),
        (
            b"# x\nincludedir = \"missing\"\n",
            "/etc/oxinetd.toml:2: key includedir: cannot read the folder /etc/missing: ",
        ),
    ];
    for (text, want) in cases {
        let mut host = FakeHost::new(0, &[]);
        host.files
            .insert(PathBuf::from("/etc/oxinetd.toml"), text.to_vec());
        let config = load(Path::new("/etc/oxinetd.toml"), &host);
        let errors: Vec<String> = config.errors.iter().map(ToString::to_string).collect();
        assert!(
            errors.len() == 1 && errors[0].starts_with(want),
            "{:?}: want {want:?}, got {errors:?}",
            String::from_utf8_lossy(text)
        );
        assert!(config.fatal || text.starts_with(b"[service]"), "{errors:?}");
    }
    // In an included file: its own name and line.
    let host = FakeHost::new(
        0,
        &[
            ("/etc/oxinetd.toml", "includedir = \"d\"\n"),
            ("/etc/d/a.toml", "\n[service]\necho = 1\n"),
        ],
    );
    let errors: Vec<String> = load(Path::new("/etc/oxinetd.toml"), &host)
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        ["/etc/d/a.toml:3: service echo: expected a table, found an integer"]
    );
}

/// Issue 12, hole 4: `cwd` is the server's working directory, `/` by default;
/// `no_new_privs` is off unless set.
#[test]
fn cwd_and_no_new_privs() {
    let default = one(HELLO);
    assert_eq!(exec(&default).cwd, PathBuf::from("/"));
    assert!(!exec(&default).no_new_privs);
    let set = one(&format!("{HELLO}cwd = \"/etc\"\nno_new_privs = true\n"));
    assert_eq!(exec(&set).cwd, PathBuf::from("/etc"));
    assert!(exec(&set).no_new_privs);
    assert!(
        error(&format!("{HELLO}cwd = \"etc\"\n"))
            .contains(":7: service hello: key cwd: etc is not an absolute path")
    );
    assert!(
        error(&format!("{HELLO}cwd = \"/nowhere\"\n")).contains("key cwd: cannot use /nowhere: ")
    );
    assert!(
        error(&format!("{HELLO}cwd = \"/etc/oxinetd.toml\"\n"))
            .contains("key cwd: /etc/oxinetd.toml is a regular file, not a directory")
    );
    assert!(
        error(&format!("{HELLO}no_new_privs = 1\n"))
            .contains("key no_new_privs: expected a boolean")
    );
}

/// Issue 11: `listen_fds = true` names the fd after the service id; only a service with
/// a `server` has someone to hand the socket to.
#[test]
fn listen_fds_is_for_exec_services() {
    assert_eq!(exec(&one(HELLO)).listen_fds, None);
    let set = one(&format!("{HELLO}id = \"hello-v4\"\nlisten_fds = true\n"));
    assert_eq!(exec(&set).listen_fds.as_deref(), Some("hello-v4"));
    assert_eq!(
        exec(&one(&format!("{HELLO}listen_fds = false\n"))).listen_fds,
        None
    );
    let redirect = "[service.web]\ntype = \"UNLISTED\"\nsocket_type = \"stream\"\nport = 80\nredirect = \"10.0.0.2 8080\"\nlisten_fds = true\n";
    assert!(
        error(redirect).contains(":6: service web: key listen_fds: listen_fds hands the socket to a `server`; this service has none"),
        "{}",
        error(redirect)
    );
    assert!(
        error(&format!("{HELLO}listen_fds = 1\n")).contains("key listen_fds: expected a boolean")
    );
}

/// Issue 13: a server gets a process group of its own by default, a session only when
/// asked; `[defaults]` may ask for every service.
#[test]
fn setsid_is_off_unless_set() {
    assert!(!exec(&one(HELLO)).setsid);
    assert!(exec(&one(&format!("{HELLO}setsid = true\n"))).setsid);
    assert!(exec(&one(&format!("[defaults]\nsetsid = true\n\n{HELLO}"))).setsid);
    assert!(error(&format!("{HELLO}setsid = 1\n")).contains("key setsid: expected a boolean"));
}

/// Issue 12, hole 1: a banner that is not a regular file is refused, naming its kind;
/// one over 64 KiB is refused from its first 64 KiB + 1 bytes.
#[test]
fn banners_must_be_small_regular_files() {
    let mut host = FakeHost::new(
        0,
        &[(
            "/etc/oxinetd.toml",
            &format!("{HELLO}banner = \"/etc/fifo\"\nbanner_fail = \"/etc/big\"\n"),
        )],
    );
    host.statuses.insert(
        PathBuf::from("/etc/fifo"),
        FileStatus {
            kind: FileKind::Fifo,
            uid: 0,
            mode: 0o644,
        },
    );
    host.files
        .insert(PathBuf::from("/etc/big"), vec![b'x'; 1 << 20]);
    let errors: Vec<String> = load(Path::new("/etc/oxinetd.toml"), &host)
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        [
            "/etc/oxinetd.toml:7: service hello: key banner: cannot read /etc/fifo: is a FIFO, not a regular file",
            "/etc/oxinetd.toml:8: service hello: key banner_fail: /etc/big is larger than 64 KiB",
        ]
    );
}

/// Issue 12, hole 5: a server that runs as root is refused when a file that decides it
/// could have been written by someone else; as another user, or with the override, not.
#[test]
fn root_servers_need_trusted_files() {
    let status = |kind, uid, mode| FileStatus { kind, uid, mode };
    let regular = |uid, mode| status(FileKind::Regular, uid, mode);
    let root_hello = format!("includedir = \"d\"\n{}", HELLO.replace("nobody", "root"));
    let included = "\n[service.inc]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
                    server = \"/bin/inc\"\nport = 9001\n";
    let load_with = |main: &str, statuses: &[(&str, FileStatus)]| {
        let mut host = FakeHost::new(
            0,
            &[("/etc/oxinetd.toml", main), ("/etc/d/inc.toml", included)],
        );
        for (path, status) in statuses {
            host.statuses.insert(PathBuf::from(path), *status);
        }
        let config = load(Path::new("/etc/oxinetd.toml"), &host);
        let errors: Vec<String> = config.errors.iter().map(ToString::to_string).collect();
        (config.services.len(), errors)
    };
    let advice = ": fix that, or set `trust_insecure_files = true` at the top of the main file";
    let cases: Vec<(&str, FileStatus, Vec<String>)> = vec![
        (
            "/bin/hello",
            regular(0, 0o777),
            vec![format!(
                "/etc/oxinetd.toml:6: service hello: key server: runs as root, but its server /bin/hello is writable by group and others (mode 0777){advice}"
            )],
        ),
        (
            "/bin/inc",
            regular(1000, 0o755),
            vec![format!(
                "/etc/d/inc.toml:6: service inc: key server: runs as root, but its server /bin/inc is owned by uid 1000, neither root nor oxinetd's own user{advice}"
            )],
        ),
        (
            "/etc/d",
            status(FileKind::Directory, 0, 0o775),
            vec![format!(
                "/etc/d/inc.toml:2: service inc: runs as root, but the include directory /etc/d is writable by its group (mode 0775){advice}"
            )],
        ),
        (
            "/etc/d/inc.toml",
            regular(0, 0o646),
            vec![format!(
                "/etc/d/inc.toml:2: service inc: runs as root, but the configuration file /etc/d/inc.toml is writable by others (mode 0646){advice}"
            )],
        ),
        // The main file decides everything: each root service is refused.
        (
            "/etc/oxinetd.toml",
            regular(0, 0o664),
            vec![
                format!(
                    "/etc/d/inc.toml:2: service inc: runs as root, but the configuration file /etc/oxinetd.toml is writable by its group (mode 0664){advice}"
                ),
                format!(
                    "/etc/oxinetd.toml:2: service hello: runs as root, but the configuration file /etc/oxinetd.toml is writable by its group (mode 0664){advice}"
                ),
            ],
        ),
    ];
    for (path, bad, want) in cases {
        let (services, errors) = load_with(&root_hello, &[(path, bad)]);
        assert_eq!(errors, want, "{path}");
        assert_eq!(services, 2 - want.len(), "{path}");
        let trusting = format!("trust_insecure_files = true\n{root_hello}");
        assert_eq!(
            load_with(&trusting, &[(path, bad)]),
            (2, vec![]),
            "{path} trusted"
        );
    }
    // As nobody, the same files are no one's business here.
    let (services, errors) = load_with(
        &format!("includedir = \"d\"\n{HELLO}"),
        &[
            ("/bin/hello", regular(1000, 0o777)),
            ("/etc/oxinetd.toml", regular(1000, 0o666)),
        ],
    );
    assert_eq!((services, errors.len()), (1, 1), "{errors:?}");
    assert!(
        errors[0]
            .contains("service inc: runs as root, but the configuration file /etc/oxinetd.toml")
    );
    // A non-root oxinetd runs no server as root: its own files are trusted.
    let mut host = FakeHost::new(1000, &[("/etc/oxinetd.toml", HELLO)]);
    host.statuses
        .insert(PathBuf::from("/etc/oxinetd.toml"), regular(1000, 0o666));
    assert!(
        load(Path::new("/etc/oxinetd.toml"), &host)
            .errors
            .is_empty()
    );
    assert!(
        load_as(0, "trust_insecure_files = \"yes\"\n").errors[0]
            .to_string()
            .contains(":1: key trust_insecure_files: expected true or false, found a string")
    );
}

#[test]
fn max_duration_is_a_limit_of_every_kind_of_service() {
    let spec = one(&format!("{HELLO}max_duration = 90\n"));
    assert_eq!(spec.limits.max_duration, Some(Duration::from_secs(90)));
    assert_eq!(one(HELLO).limits.max_duration, None);
    let waiting = one(&format!(
        "{}max_duration = 5\n",
        HELLO.replace("wait = false", "wait = true")
    ));
    assert_eq!(waiting.limits.max_duration, Some(Duration::from_secs(5)));
    let echo = load_as(
        0,
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nmax_duration = 1\n",
    );
    assert_eq!(echo.warnings, []);
    assert_eq!(
        echo.services[0].limits.max_duration,
        Some(Duration::from_secs(1))
    );
}

#[test]
fn max_duration_where_nothing_lasts_is_warned_unless_a_default() {
    let sensor = "[service.trap]\ntype = \"UNLISTED\"\nsocket_type = \"stream\"\nport = 9\nflags = \"SENSOR\"\n";
    let dgram_echo = "[service.echo]\ntype = \"INTERNAL\"\nprotocol = \"udp\"\n";
    for service in [sensor, dgram_echo] {
        let config = load_as(0, &format!("{service}max_duration = 60\n"));
        assert_eq!(config.errors, [], "{service}");
        assert_eq!(config.warnings.len(), 1, "{service}");
        let warning = config.warnings[0].to_string();
        assert!(
            warning.contains("max_duration") && warning.contains("does nothing"),
            "{warning}"
        );
        let config = load_as(0, &format!("[defaults]\nmax_duration = 60\n{service}"));
        assert_eq!(
            (config.errors.len(), config.warnings.len()),
            (0, 0),
            "{service}"
        );
    }
}

#[test]
fn keepalive_timeouts_go_on_the_socket_and_imply_keepalive() {
    let spec = one(&format!(
        "{HELLO}keepalive_idle = 60\nkeepalive_interval = 5\nkeepalive_count = 3\ntcp_user_timeout = 75\n"
    ));
    assert!(spec.socket.keepalive);
    assert_eq!(
        spec.socket.timeouts,
        spec::TcpTimeouts {
            idle: Some(60),
            interval: Some(5),
            count: Some(3),
            user_timeout: Some(75),
        }
    );
    for key in [
        "keepalive_idle",
        "keepalive_interval",
        "keepalive_count",
        "tcp_user_timeout",
    ] {
        let spec = one(&format!("{HELLO}{key} = 9\n"));
        assert!(spec.socket.keepalive, "{key} implies KEEPALIVE");
    }
    let plain = one(HELLO);
    assert!(!plain.socket.keepalive);
    assert!(!plain.socket.timeouts.any());
    assert!(
        one(&format!("{HELLO}flags = \"KEEPALIVE\"\n"))
            .socket
            .keepalive
    );
}

#[test]
fn keepalive_timeouts_need_a_connection_of_the_services_own() {
    let udp = "[service.echo]\ntype = \"INTERNAL\"\nprotocol = \"udp\"\n";
    let mux = HELLO.replace("port = 9000\n", "type = \"TCPMUX\"\n");
    for key in [
        "keepalive_idle",
        "keepalive_interval",
        "keepalive_count",
        "tcp_user_timeout",
    ] {
        let message = error(&format!("{udp}{key} = 5\n"));
        assert!(
            message.contains(&format!("key {key}")) && message.contains("only stream (tcp)"),
            "{message}"
        );
        let message = error(&format!("{mux}{key} = 5\n"));
        assert!(
            message.contains(&format!("key {key}")) && message.contains("tcpmux service"),
            "{message}"
        );
        // From [defaults], they apply to the services that have connections.
        let config = load_as(0, &format!("[defaults]\n{key} = 5\n{udp}{HELLO}"));
        assert_eq!(config.errors, [], "{key}");
        let udp = config.services.iter().find(|s| s.id == "echo").unwrap();
        let hello = config.services.iter().find(|s| s.id == "hello").unwrap();
        assert!(!udp.socket.timeouts.any() && !udp.socket.keepalive);
        assert!(hello.socket.timeouts.any() && hello.socket.keepalive);
    }
}

const UNIX: &str = "[service.u]\nsocket_type = \"stream\"\nwait = false\nuser = \"nobody\"\nserver = \"/bin/hello\"\nsocket_path = \"/run/u.sock\"\n";

#[test]
fn a_unix_socket_service() {
    let spec = one(&format!(
        "{UNIX}socket_mode = \"0660\"\nsocket_owner = \"nobody\"\nsocket_group = \"daemon\"\nper_source = 2\n"
    ));
    let Address::Unix(unix) = &spec.socket.address else {
        panic!("{:?}", spec.socket.address)
    };
    assert_eq!(unix.path, std::path::Path::new("/run/u.sock"));
    assert_eq!(unix.permissions.mode, 0o660);
    assert_eq!(unix.permissions.owner, Some(65534));
    assert_eq!(unix.permissions.group, Some(1));
    assert_eq!(spec.limits.per_source, Some(2));
    assert_eq!(spec.socket.v6only, None);
    assert_eq!(
        spec.describe(),
        "/run/u.sock stream/unix wait=no /bin/hello"
    );
    let default = one(UNIX);
    let Address::Unix(unix) = &default.socket.address else {
        panic!()
    };
    assert_eq!(unix.permissions.mode, 0o666);
    assert_eq!(unix.permissions.owner, None);
}

#[test]
fn unix_sockets_refuse_what_only_ip_has() {
    for (line, key) in [
        ("port = 7", "port"),
        ("v6only = true", "v6only"),
        ("interface = \"::1\"", "interface"),
        ("cps = [10, 5]", "cps"),
        ("flags = [\"KEEPALIVE\"]", "flags"),
        ("type = \"INTERNAL\"", "type"),
        ("log_on_success = [\"USERID\"]", "log_on_success"),
        ("socket_owner = \"nosuchuser\"", "socket_owner"),
    ] {
        let config = load_as(0, &format!("{UNIX}{line}\n"));
        let want = format!(":7: service u: key {key}: ");
        assert!(
            config.errors.iter().any(|e| e.to_string().contains(&want)),
            "{line}: {:?}",
            config.errors
        );
    }
    let text = error(
        &format!("{HELLO}socket_type = \"seqpacket\"\n").replace("socket_type = \"stream\"\n", ""),
    );
    assert!(
        text.contains("key socket_type: seqpacket is for Unix sockets"),
        "{text}"
    );
    let text = error(&format!(
        "[defaults]\nsocket_path = \"/run/x.sock\"\n{HELLO}"
    ));
    assert!(
        text.contains("key socket_path: this key belongs to one service"),
        "{text}"
    );
}

#[test]
fn unix_services_inherit_no_ip_keys_from_defaults() {
    let spec = one(&format!(
        "[defaults]\nport = 7\nbind = \"127.0.0.1\"\nonly_from = [\"10.0.0.0/8\"]\ncps = [5, 5]\nflags = [\"IPv4\", \"NORETRY\"]\ninstances = 3\n\n{UNIX}"
    ));
    assert!(matches!(spec.socket.address, Address::Unix(_)));
    assert!(spec.access.rules.is_open());
    assert_eq!(spec.limits.cps, None);
    assert!(spec.no_retry);
    assert_eq!(spec.instances, Instances::Limit(3));
}

#[test]
fn control_socket_is_taken_from_the_main_files_folder_when_relative() {
    let socket = |text: &str| load_as(0, text).control_socket;
    assert_eq!(socket(""), None);
    assert_eq!(
        socket("control_socket = \"/run/oxinetd/control\"\n"),
        Some(PathBuf::from("/run/oxinetd/control"))
    );
    assert_eq!(
        socket("control_socket = \"oxinetd.control\"\n"),
        Some(PathBuf::from("/etc/oxinetd.control"))
    );
    assert!(error("control_socket = 7\n").contains(":1: key control_socket: expected"));
    assert!(error("control_socket = \"\"\n").contains("key control_socket"));
}

#[test]
fn the_control_socket_is_found_even_in_a_file_the_daemon_refuses() {
    let main = Path::new("/etc/oxinetd.toml");
    let found = |text: &str| control_socket_of(main, text);
    assert_eq!(found("shutdown_grace = 1\n"), None);
    assert_eq!(
        found("control_socket = \"c\"\n[service.x]\nport = 7\n"),
        Some(PathBuf::from("/etc/c"))
    );
    // Not TOML at all past the first line: the line alone still says where.
    assert_eq!(
        found("  control_socket = \"/run/c\" # here\n[service.x\nport = = 7\n"),
        Some(PathBuf::from("/run/c"))
    );
    // Inside a table it is some service's (wrong) key, not the daemon's.
    assert_eq!(found("[service.x\ncontrol_socket = \"/run/c\"\n"), None);
}

#[test]
fn switched_off_services_are_listed() {
    let config = load_as(
        0,
        &format!("[defaults]\ndisabled = [\"hello\"]\n{HELLO}[service.off]\ndisable = true\n"),
    );
    assert!(config.services.is_empty(), "{:?}", config.services);
    assert_eq!(
        config.disabled,
        vec!["hello".to_string(), "off".to_string()]
    );
}

/// Services that run the same program the same way share one `ExecSpec` (and the daemon
/// one prepared program), and equal access rules, limits, logging and banners are one
/// value; anything that differs, however little, is a value of its own.
#[test]
fn equal_parts_of_services_are_shared_and_different_ones_are_not() {
    let service = |name: &str, port: u16, extra: &str| {
        format!(
            "[service.{name}]\nsocket_type = \"stream\"\nwait = false\nuser = \"nobody\"\n\
             server = \"/bin/hello\"\nport = {port}\n{extra}"
        )
    };
    let config = load_as(
        0,
        &[
            service("a", 9000, ""),
            service("b", 9001, ""),
            service("c", 9002, "env = [\"A=1\"]\n"),
            service("d", 9003, "server_args = \"-v\"\n"),
            service("e", 9004, "only_from = \"127.0.0.1\"\ninstances = 3\n"),
            service("f", 9005, "env = [\"A=1\"]\n"),
        ]
        .concat(),
    );
    assert!(config.errors.is_empty(), "{:?}", config.errors);
    let [a, b, c, d, e, f] = &config.services[..] else {
        panic!("six services: {:?}", config.services);
    };
    let (Program::Exec(pa), Program::Exec(pb), Program::Exec(pc), Program::Exec(pd)) =
        (&a.program, &b.program, &c.program, &d.program)
    else {
        panic!("exec'd");
    };
    assert!(Rc::ptr_eq(pa, pb));
    assert!(!Rc::ptr_eq(pa, pc) && !Rc::ptr_eq(pa, pd));
    assert!(Rc::ptr_eq(&pa.environment, &pd.environment));
    assert!(!Rc::ptr_eq(&pa.environment, &pc.environment));
    assert!(Rc::ptr_eq(&pc.environment, &exec(f).environment));
    assert_eq!(pd.argv, ["hello", "-v"]);
    assert!(pc.environment.iter().any(|entry| entry == b"A=1"));
    assert!(!pa.environment.iter().any(|entry| entry == b"A=1"));
    assert!(Rc::ptr_eq(&a.access, &d.access) && Rc::ptr_eq(&a.logging, &f.logging));
    assert!(Rc::ptr_eq(&a.limits, &f.limits) && Rc::ptr_eq(&a.banners, &e.banners));
    assert!(!Rc::ptr_eq(&a.access, &e.access));
    assert_ne!(a.access, e.access);
    assert_eq!(e.instances, Instances::Limit(3));
}

// ---------------------------------------------------------------------------------------
// The cache of included files (`cache`).

const SECOND: i64 = 1_000_000_000;

/// A stamp written at `second` (plus a few ns, as file systems with nanosecond times
/// give), and read long after.
fn stamp(inode: u64, second: i64) -> Stamp {
    Stamp {
        device: 1,
        inode,
        size: 100,
        modified: second * SECOND + 7,
        changed: second * SECOND + 7,
        kind: FileKind::Regular,
        uid: 0,
        gid: 0,
        mode: 0o644,
    }
}

const MAIN_WITH_DIR: &str = "includedir = \"conf.d\"\n[defaults]\ninstances = 5\n";

fn svc(name: &str, port: u16, server: &str) -> String {
    format!(
        "[service.{name}]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         server = \"{server}\"\nport = {port}\n"
    )
}

/// A host with the main file, `conf.d/a.toml` and `conf.d/b.toml` (with stamps), read
/// at second 1000.
fn included(main: &str, a: &str, b: &str) -> FakeHost {
    let mut host = FakeHost::new(
        0,
        &[
            ("/etc/oxinetd.toml", main),
            ("/etc/conf.d/a.toml", a),
            ("/etc/conf.d/b.toml", b),
        ],
    );
    host.stamps
        .insert("/etc/conf.d/a.toml".into(), stamp(1, 10));
    host.stamps
        .insert("/etc/conf.d/b.toml".into(), stamp(2, 10));
    host.read_at = 1000 * SECOND;
    host
}

fn load_with(host: &FakeHost, previous: Option<&mut Cache>) -> (Config, Cache) {
    host.reads.borrow_mut().clear();
    load_cached(Path::new("/etc/oxinetd.toml"), host, previous)
}

fn reads(host: &FakeHost) -> Vec<String> {
    (host.reads.borrow().iter())
        .filter(|path| path.starts_with("/etc/conf.d"))
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn ids(config: &Config) -> Vec<&str> {
    config
        .services
        .iter()
        .map(|spec| spec.id.as_str())
        .collect()
}

#[test]
fn unchanged_included_files_are_neither_read_nor_validated_again() {
    let (a, b) = (svc("a", 1, "/bin/a"), svc("b", 2, "/bin/b"));
    let host = included(MAIN_WITH_DIR, &a, &b);
    let (first, mut cache) = load_with(&host, None);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(
        (reads(&host), cache.len()),
        (vec!["a.toml".into(), "b.toml".into()], 2)
    );

    let (second, _) = load_with(&host, Some(&mut cache));
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert_eq!(reads(&host), Vec::<String>::new());
    assert_eq!(ids(&second), ["a", "b"]);
    assert_eq!((second.files_read, second.files_unchanged), (0, 2));
    // The very definitions that run: the reload plan knows them by their address.
    assert!(Rc::ptr_eq(&first.services[1], &second.services[1]));
}

#[test]
fn any_change_of_the_stamp_reads_the_file_again() {
    let (a, b) = (svc("a", 1, "/bin/a"), svc("b", 2, "/bin/b"));
    let changes: [fn(&mut Stamp); 7] = [
        |stamp| stamp.size += 1,
        |stamp| stamp.modified += 1,
        |stamp| stamp.changed += 1,
        |stamp| stamp.inode += 1,
        |stamp| stamp.device += 1,
        |stamp| stamp.mode = 0o600,
        |stamp| stamp.uid = 1000,
    ];
    for change in changes {
        let host = included(MAIN_WITH_DIR, &a, &b);
        let (_, mut cache) = load_with(&host, None);
        let mut host = included(MAIN_WITH_DIR, &a, &svc("b", 3, "/bin/b"));
        change(
            host.stamps
                .get_mut(Path::new("/etc/conf.d/b.toml"))
                .unwrap(),
        );
        let (config, _) = load_with(&host, Some(&mut cache));
        assert_eq!(reads(&host), ["b.toml"]);
        let port = |spec: &ServiceSpec| spec.socket.address.to_string();
        assert_eq!(port(&config.services[1]), "[::]:3");
    }
}

/// git's racy rule: a file read within the margin after it was written may be written
/// again with the same stamp (a coarse clock's tick, a file system's whole second).
#[test]
fn a_file_read_too_soon_after_it_changed_is_read_again() {
    let (a, b) = (svc("a", 1, "/bin/a"), svc("b", 2, "/bin/b"));
    for (written_ns, read_at, cached) in [
        (10 * SECOND + 7, 10 * SECOND + 7, false),
        (10 * SECOND + 7, 10 * SECOND + 50_000_000, false),
        (10 * SECOND + 7, 10 * SECOND + 200_000_000, true),
        // Whole seconds: a file system that keeps no nanoseconds.
        (10 * SECOND, 12 * SECOND, false),
        (10 * SECOND, 14 * SECOND, true),
        // The clock went back: the file seems written in the future.
        (10 * SECOND + 7, 5 * SECOND, false),
    ] {
        let mut host = included(MAIN_WITH_DIR, &a, &b);
        host.stamps.insert("/etc/conf.d/a.toml".into(), stamp(1, 1));
        let at = host
            .stamps
            .get_mut(Path::new("/etc/conf.d/b.toml"))
            .unwrap();
        (at.modified, at.changed) = (written_ns, written_ns);
        host.read_at = read_at;
        let (_, mut cache) = load_with(&host, None);
        let (_, _) = load_with(&host, Some(&mut cache));
        let expected: Vec<String> = if cached {
            vec![]
        } else {
            vec!["b.toml".into()]
        };
        assert_eq!(
            reads(&host),
            expected,
            "written {written_ns} read {read_at}"
        );
    }
}

#[test]
fn a_change_of_the_main_file_drops_every_entry() {
    let (a, b) = (svc("a", 1, "/bin/a"), svc("b", 2, "/bin/b"));
    let host = included(MAIN_WITH_DIR, &a, &b);
    let (_, mut cache) = load_with(&host, None);
    let host = included(&MAIN_WITH_DIR.replace('5', "6"), &a, &b);
    let (config, _) = load_with(&host, Some(&mut cache));
    assert_eq!(reads(&host), ["a.toml", "b.toml"]);
    assert_eq!(config.services[0].instances, Instances::Limit(6));
}

/// What validation asked of the host is asked again: a server gone is an error again.
#[test]
fn a_changed_answer_of_the_host_reads_the_file_again() {
    let (a, b) = (svc("a", 1, "/bin/a"), svc("b", 2, "/bin/b"));
    let host = included(MAIN_WITH_DIR, &a, &b);
    let (_, mut cache) = load_with(&host, None);
    let mut host = included(MAIN_WITH_DIR, &a, &b);
    host.gone.push("/bin/b".into());
    let (config, cache) = load_with(&host, Some(&mut cache));
    assert_eq!(reads(&host), ["b.toml"]);
    assert_eq!(config.broken, ["b"]);
    assert!(config.errors[0].message.contains("not an executable"));
    assert_eq!(cache.len(), 1, "a file with an error has no entry");
}

#[test]
fn a_file_with_an_error_is_read_and_reported_at_every_load() {
    let (a, b) = (svc("a", 1, "/bin/a"), svc("b", 2, "/opt/missing"));
    let host = included(MAIN_WITH_DIR, &a, &b);
    let (first, mut cache) = load_with(&host, None);
    let (second, _) = load_with(&host, Some(&mut cache));
    assert_eq!(reads(&host), ["b.toml"]);
    assert_eq!(first.errors, second.errors);
    assert_eq!(second.broken, ["b"]);
}

/// An id is unique across the files: a cached definition that an edited file now
/// defines first is an error, and its file is read again next time.
#[test]
fn a_cached_definition_defined_first_elsewhere_is_an_error() {
    let (a, b) = (svc("a", 1, "/bin/a"), svc("b", 2, "/bin/b"));
    let host = included(MAIN_WITH_DIR, &a, &b);
    let (_, mut cache) = load_with(&host, None);
    let mut host = included(MAIN_WITH_DIR, &format!("{a}{}", svc("b", 3, "/bin/b")), &b);
    host.stamps
        .get_mut(Path::new("/etc/conf.d/a.toml"))
        .unwrap()
        .size += 1;
    let (config, cache) = load_with(&host, Some(&mut cache));
    assert_eq!(reads(&host), ["a.toml"]);
    assert_eq!(ids(&config), ["a", "b"]);
    assert_eq!(config.errors.len(), 1, "{:?}", config.errors);
    assert_eq!(config.errors[0].file, Path::new("/etc/conf.d/b.toml"));
    assert!(config.errors[0].message.contains("defined again"));
    assert_eq!(cache.len(), 1);
}

/// Warnings of a cached file are given again, as a load without the cache gives them.
#[test]
fn warnings_of_a_cached_file_are_given_at_every_load() {
    let muxed = "[service.m]\ntype = \"TCPMUX\"\nsocket_type = \"stream\"\nwait = false\n\
                 user = \"root\"\nserver = \"/bin/m\"\n";
    let host = included(MAIN_WITH_DIR, &svc("a", 1, "/bin/a"), muxed);
    let (first, mut cache) = load_with(&host, None);
    let (second, _) = load_with(&host, Some(&mut cache));
    assert_eq!(reads(&host), Vec::<String>::new());
    assert!(!first.warnings.is_empty());
    assert_eq!(first.warnings, second.warnings);
}

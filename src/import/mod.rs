//! `oxinetd import`: an xinetd configuration (or an inetd.conf) to oxinetd TOML, every
//! value that changes meaning or has no equivalent said in a note. Pure: files are read
//! through `Files`, and the result is text for the caller to write.
//!
//! The steps: `xinetd` reads the syntax into blocks; `convert` resolves `defaults`,
//! `+=` and `-=` and maps each attribute; `inetd` does the same for inetd.conf lines;
//! ids are made unique across the whole import; `check` runs oxinetd's own validation
//! on each service with a host that says yes to users, programs and ports (those belong
//! to the machine, not to the translation), and a service it refuses is written
//! `disable = true` with the reason; `write` prints the documents.

mod check;
pub mod convert;
pub mod inetd;
pub mod model;
pub mod write;
pub mod xinetd;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use model::{Document, Note, Service, Value};
use xinetd::Item;

/// What the importer reads: a trait so tests can serve files from a table.
pub trait Files {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The names of the entries of a folder, in any order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
}

/// The real file system.
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                continue;
            }
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }
}

/// The folder the service files go to, relative to the top-level file.
pub const INCLUDEDIR: &str = "oxinetd.d";

#[derive(Debug)]
pub struct Import {
    /// The top-level document first, then one per xinetd service file (or per inetd
    /// service name).
    pub documents: Vec<Document>,
    /// Notes about files rather than services (syntax xinetd would refuse, a folder
    /// that cannot be read).
    pub problems: Vec<Note>,
}

impl Import {
    /// Every note, for stderr: file problems first, then in document order.
    pub fn notes(&self) -> Vec<&Note> {
        let mut notes: Vec<&Note> = self.problems.iter().collect();
        for doc in &self.documents {
            notes.extend(doc.notes());
        }
        notes
    }

    /// How many services could not be converted.
    pub fn failed(&self) -> usize {
        self.documents
            .iter()
            .flat_map(|doc| &doc.services)
            .filter(|service| service.failed.is_some())
            .count()
    }

    /// The whole import as one document (for stdout).
    pub fn single(&self) -> String {
        let mut all = Document {
            header: self
                .documents
                .first()
                .map(|doc| doc.header.clone())
                .unwrap_or_default(),
            ..Document::default()
        };
        for doc in &self.documents {
            if doc.defaults.is_some() {
                all.defaults = doc.defaults.clone();
                all.defaults_notes = doc.defaults_notes.clone();
            }
            all.services.extend(doc.services.iter().cloned());
        }
        write::document(&all)
    }

    /// Each file to write under `--to DIR`: its path relative to DIR and its text.
    pub fn files(&self) -> Vec<(PathBuf, String)> {
        self.documents
            .iter()
            .map(|doc| {
                let path = match &doc.name {
                    Some(name) => Path::new(INCLUDEDIR).join(name),
                    None => PathBuf::from("oxinetd.toml"),
                };
                (path, write::document(doc))
            })
            .collect()
    }
}

/// Imports an xinetd main file (following `include` and `includedir`) or a single
/// service file. Err: `path` itself cannot be read.
pub fn xinetd(path: &Path, files: &dyn Files) -> Result<Import, String> {
    let text = files
        .read(path)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    let mut walk = Walk {
        files,
        problems: Vec::new(),
        defaults: None,
        groups: Vec::new(),
        visited: BTreeSet::from([path.to_path_buf()]),
    };
    let (items, problems) = xinetd::parse(&text);
    walk.problems(path, problems);
    // A file with no `defaults` and no includes is a service file: its services go to
    // oxinetd.d/NAME.toml like any other; a main file's own services stay at the top.
    let main = items
        .iter()
        .any(|item| !matches!(item, Item::Service { .. }));
    let top = if main {
        walk.items(path, items, None)
    } else {
        walk.items(path, items, Some(base_name(path)));
        Vec::new()
    };
    let mut documents = vec![Document {
        header: vec![format!(
            "Imported by `oxinetd import` from {}.",
            path.display()
        )],
        includedir: Some(INCLUDEDIR.to_string()),
        services: top,
        ..Document::default()
    }];
    if let Some(attrs) = &walk.defaults {
        let (mut entries, notes) = convert::defaults(attrs, path);
        let lines: Vec<(String, usize)> = attrs.iter().map(|a| (a.key.clone(), a.line)).collect();
        check::defaults(&mut entries, &lines, path);
        // An empty `defaults { }` (Debian's xinetd.conf) needs no empty table.
        if !entries.is_empty() || !notes.is_empty() {
            documents[0].defaults = Some(entries);
            documents[0].defaults_notes = notes;
        }
    }
    for (name, source, services) in walk.groups {
        // Two included files of one base name (from two folders) get two files.
        let mut file_name = format!("{name}.toml");
        let mut n = 2;
        while documents
            .iter()
            .any(|doc| doc.name.as_deref() == Some(&file_name))
        {
            file_name = format!("{name}-{n}.toml");
            n += 1;
        }
        documents.push(Document {
            name: Some(file_name),
            header: vec![format!(
                "Imported by `oxinetd import` from {}.",
                source.display()
            )],
            services,
            ..Document::default()
        });
    }
    Ok(finish(documents, walk.problems))
}

/// Imports an inetd.conf: one document per service name.
pub fn inetd(path: &Path, text: &str) -> Import {
    let services = inetd::parse(text, path);
    let mut documents = vec![Document {
        header: vec![format!(
            "Imported by `oxinetd import --inetd` from {}.",
            path.display()
        )],
        includedir: Some(INCLUDEDIR.to_string()),
        ..Document::default()
    }];
    for mut service in services {
        let file_name = service.name.replace(['/', '.'], "_");
        match documents
            .iter_mut()
            .find(|doc| doc.name.as_deref() == Some(&format!("{file_name}.toml")))
        {
            Some(doc) => doc.services.push(service),
            None => {
                service.file = path.to_path_buf();
                documents.push(Document {
                    name: Some(format!("{file_name}.toml")),
                    header: vec![format!(
                        "Imported by `oxinetd import --inetd` from {}.",
                        path.display()
                    )],
                    services: vec![service],
                    ..Document::default()
                });
            }
        }
    }
    finish(documents, Vec::new())
}

/// Gives every definition an id of its own, validates each service, and drops the
/// `includedir` line when there is nothing to include.
fn finish(mut documents: Vec<Document>, problems: Vec<Note>) -> Import {
    let mut taken: Vec<(String, PathBuf, usize)> = Vec::new();
    for doc in &mut documents {
        let names: Vec<String> = doc.services.iter().map(|s| s.name.clone()).collect();
        for service in &mut doc.services {
            let several = names.iter().filter(|n| **n == service.name).count() > 1;
            unique_id(service, several, &mut taken);
        }
    }
    let defaults = documents[0].defaults.clone().unwrap_or_default();
    for doc in &mut documents {
        for service in &mut doc.services {
            check::service(service, &defaults);
        }
    }
    if documents.len() == 1 {
        documents[0].includedir = None;
    }
    Import {
        documents,
        problems,
    }
}

/// oxinetd needs each id once across all files (xinetd lets a disabled duplicate pass,
/// and Debian's xinetd package ships `echo-dgram` in both `echo` and `echo-udp`).
fn unique_id(service: &mut Service, several: bool, taken: &mut Vec<(String, PathBuf, usize)>) {
    let id = service.id().to_string();
    let explicit = service.get("id").is_some();
    if let Some((_, file, line)) = taken.iter().find(|(other, _, _)| *other == id) {
        let mut n = 2;
        while taken
            .iter()
            .any(|(other, _, _)| *other == format!("{id}-{n}"))
        {
            n += 1;
        }
        let new = format!("{id}-{n}");
        let text = format!(
            "id `{id}` is already defined at {}:{line}; oxinetd needs each id once: this one is `{new}`",
            file.display()
        );
        service.set("id", Value::Str(new.clone()));
        let line = service.line;
        service.note("id", line, text);
        write::sort(&mut service.entries);
        taken.push((new, service.file.clone(), service.line));
    } else {
        if several && !explicit {
            // [[service.NAME]] definitions are told apart by id: write the default.
            service.set("id", Value::Str(id.clone()));
            write::sort(&mut service.entries);
        }
        taken.push((id, service.file.clone(), service.line));
    }
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "services".to_string())
}

struct Walk<'a> {
    files: &'a dyn Files,
    problems: Vec<Note>,
    defaults: Option<Vec<convert::Resolved>>,
    /// (file name under oxinetd.d without `.toml`, source file, services)
    groups: Vec<(String, PathBuf, Vec<Service>)>,
    visited: BTreeSet<PathBuf>,
}

impl Walk<'_> {
    fn problems(&mut self, file: &Path, problems: Vec<xinetd::Problem>) {
        for problem in problems {
            self.problems.push(Note {
                file: file.to_path_buf(),
                line: problem.line,
                about: None,
                text: problem.text,
            });
        }
    }

    fn problem(&mut self, file: &Path, line: usize, text: String) {
        self.problems.push(Note {
            file: file.to_path_buf(),
            line,
            about: None,
            text,
        });
    }

    /// Converts one file's items; services go to `group` (a file under oxinetd.d) or,
    /// for `None`, are returned for the top-level file.
    fn items(&mut self, file: &Path, items: Vec<Item>, group: Option<String>) -> Vec<Service> {
        let mut own = Vec::new();
        for item in items {
            match item {
                Item::Defaults { attrs, line } => {
                    if self.defaults.is_some() {
                        self.problem(
                            file,
                            line,
                            "a second `defaults` section: xinetd allows one; its attributes are added to the first".to_string(),
                        );
                    }
                    let mut all = self.defaults.take().unwrap_or_default();
                    for resolved in convert::resolve_defaults(&attrs) {
                        match all.iter_mut().find(|r| r.key == resolved.key) {
                            Some(known) => *known = resolved,
                            None => all.push(resolved),
                        }
                    }
                    self.defaults = Some(all);
                }
                Item::Service { name, attrs, line } => {
                    let defaults = self.defaults.clone().unwrap_or_default();
                    let resolved = convert::resolve_service(&attrs, &defaults);
                    let mut service = Service::new(&name, file.to_path_buf(), line);
                    convert::service(&mut service, &resolved);
                    own.push(service);
                }
                Item::Include { path, line } => {
                    let path = self.resolve(file, &path);
                    if let Some(text) = self.read(file, line, &path) {
                        let (items, problems) = xinetd::parse(&text);
                        self.problems(&path, problems);
                        self.items(&path, items, Some(base_name(&path)));
                    }
                }
                Item::IncludeDir { path, line } => {
                    let dir = self.resolve(file, &path);
                    match self.files.list(&dir) {
                        Ok(names) => {
                            for name in xinetd::included(names) {
                                let path = dir.join(&name);
                                if let Some(text) = self.read(file, line, &path) {
                                    let (items, problems) = xinetd::parse(&text);
                                    self.problems(&path, problems);
                                    self.items(&path, items, Some(name));
                                }
                            }
                        }
                        Err(error) => self.problem(
                            file,
                            line,
                            format!(
                                "includedir {}: {error}: nothing imported from it",
                                dir.display()
                            ),
                        ),
                    }
                }
            }
        }
        match group {
            Some(name) => {
                if !own.is_empty() {
                    self.groups.push((name, file.to_path_buf(), own));
                }
                Vec::new()
            }
            None => own,
        }
    }

    /// xinetd takes paths as written; a relative one is read from the including file's
    /// folder, so an imported copy of a configuration finds its own files.
    fn resolve(&self, from: &Path, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            from.parent().unwrap_or(Path::new(".")).join(path)
        }
    }

    fn read(&mut self, from: &Path, line: usize, path: &Path) -> Option<String> {
        if !self.visited.insert(path.to_path_buf()) {
            self.problem(
                from,
                line,
                format!("{} is included twice: read once", path.display()),
            );
            return None;
        }
        match self.files.read(path) {
            Ok(text) => Some(text),
            Err(error) => {
                self.problem(
                    from,
                    line,
                    format!("{}: {error}: nothing imported from it", path.display()),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Files from a table; a folder lists the names under it.
    struct Table(BTreeMap<&'static str, &'static str>);

    impl Files for Table {
        fn read(&self, path: &Path) -> io::Result<String> {
            self.0
                .get(path.to_str().unwrap())
                .map(|text| text.to_string())
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            let names: Vec<String> = self
                .0
                .keys()
                .filter_map(|path| Path::new(path).strip_prefix(dir).ok())
                .map(|rest| rest.to_string_lossy().into_owned())
                .collect();
            if names.is_empty() {
                Err(io::Error::from(io::ErrorKind::NotFound))
            } else {
                Ok(names)
            }
        }
    }

    fn import(files: &[(&'static str, &'static str)]) -> Import {
        let table = Table(files.iter().copied().collect());
        xinetd(Path::new(files[0].0), &table).unwrap()
    }

    /// One service block (after an optional defaults block) to its TOML lines, comments
    /// and blank lines dropped, and its notes.
    fn service(defaults: &str, body: &str) -> (Vec<String>, Vec<String>) {
        let text = format!("defaults\n{{\n{defaults}\n}}\nservice svc\n{{\n{body}\n}}\n");
        let text: &'static str = Box::leak(text.into_boxed_str());
        let imported = import(&[("/x/xinetd.conf", text)]);
        let doc = &imported.documents[0];
        let service = &doc.services[0];
        let mut lines = Vec::new();
        let mut notes: Vec<String> = service.notes.iter().map(|n| n.text.clone()).collect();
        for entry in &service.entries {
            notes.extend(entry.notes.iter().map(|n| n.text.clone()));
            if let Some(value) = &entry.value {
                lines.push(format!("{} = {}", entry.key, write::value(value)));
            }
        }
        (lines, notes)
    }

    const EXEC: &str = "socket_type = stream\nwait = no\nuser = nobody\nserver = /bin/cat\n";

    /// Each construct: (defaults, service attributes beyond EXEC, a line the output
    /// must hold, a word some note must hold or "" for no note at all).
    #[test]
    fn constructs() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("", "server_args = -l  -w", r#"server_args = "-l -w""#, ""),
            ("", "disable = yes", "disable = true", ""),
            ("", "port = 2401", "port = 2401", ""),
            (
                "",
                "flags = IPv4 KEEPALIVE",
                r#"flags = ["IPv4", "KEEPALIVE"]"#,
                "",
            ),
            (
                "",
                "only_from = 10.0.0.0 ::1",
                r#"only_from = ["10.0.0.0", "::1"]"#,
                "",
            ),
            ("", "cps = 25 30", "cps = [25, 30]", "sheds each source"),
            (
                "",
                "env = LANG=C TZ=UTC",
                r#"env = ["LANG=C", "TZ=UTC"]"#,
                "",
            ),
            (
                "",
                "instances = UNLIMITED",
                r#"instances = "UNLIMITED""#,
                "",
            ),
            ("", "rlimit_as = 64M", r#"rlimit_as = "64M""#, ""),
            ("", "umask = 022", r#"umask = "022""#, ""),
            ("", "max_load = 2", "max_load = 2.0", ""),
            (
                "",
                "rpc_version = 2-4\ntype = RPC",
                r#"rpc_version = "2-4""#,
                "",
            ),
            // += and -= start from the defaults' list, as xinetd does.
            (
                "log_on_success = PID HOST",
                "log_on_success += DURATION",
                r#"log_on_success = ["PID", "HOST", "DURATION"]"#,
                "resolved against defaults (`PID HOST`)",
            ),
            (
                "only_from = 10.0.0.0 10.1.0.0",
                "only_from -= 10.1.0.0",
                r#"only_from = ["10.0.0.0"]"#,
                "resolved against defaults",
            ),
            (
                "",
                "log_on_failure += USERID",
                r#"log_on_failure = ["USERID"]"#,
                "resolved against defaults (none)",
            ),
            // `=` in the service replaces the default, in xinetd and in oxinetd.
            (
                "log_on_success = PID",
                "log_on_success = HOST",
                r#"log_on_success = ["HOST"]"#,
                "",
            ),
            (
                "",
                "log_on_success = PID\nlog_on_success += EXIT",
                r#"log_on_success = ["PID", "EXIT"]"#,
                "applied to the value above",
            ),
            (
                "",
                "flags = IPv4 IPv6",
                r#"flags = ["IPv6"]"#,
                "IPv4 with IPv6",
            ),
            (
                "",
                "flags = LABELED NODELAY",
                r#"flags = ["NODELAY"]"#,
                "SELinux",
            ),
            ("", "flags = DISABLE", "disable = true", "flag DISABLE"),
            (
                "",
                "log_on_failure = HOST RECORD",
                r#"log_on_failure = ["HOST"]"#,
                "RECORD left out",
            ),
            (
                "",
                "libwrap = svc",
                "server = \"/bin/cat\"",
                "no TCP wrappers",
            ),
            ("", "mdns = yes", "server = \"/bin/cat\"", "mDNS"),
            (
                "",
                "frobnicate = 1",
                "server = \"/bin/cat\"",
                "not an attribute oxinetd knows",
            ),
            ("", "nice = 5\nnice = 6", "nice = 6", "given twice"),
            ("", "wait += no", "wait = false", "takes only `=`"),
            ("", "banner =", "server = \"/bin/cat\"", "has no value"),
            // What cannot run is written disabled, with the reason.
            (
                "",
                "bind = localhost",
                "disable = true",
                "not converted: bind `localhost` is a name",
            ),
            (
                "",
                "port = @PORT@",
                "disable = true",
                "not converted: port `@PORT@`",
            ),
            (
                "",
                "socket_type = raw",
                "disable = true",
                "not converted: socket_type `raw`",
            ),
            (
                "",
                "protocol = icmp",
                "disable = true",
                "not converted: protocol `icmp`",
            ),
            (
                "",
                "access_times = 25:00-26:00",
                "disable = true",
                "oxinetd would refuse it",
            ),
            (
                "",
                "redirect = 10.0.0.1 23\nwait = yes",
                "disable = true",
                "oxinetd would refuse it",
            ),
        ];
        for (defaults, body, line, note) in cases {
            let (lines, notes) = service(defaults, &format!("{EXEC}{body}"));
            assert!(
                lines.iter().any(|l| l == line),
                "{body}: {line} not in {lines:#?}"
            );
            if note.is_empty() {
                assert!(notes.is_empty(), "{body}: {notes:?}");
            } else {
                assert!(
                    notes.iter().any(|n| n.contains(note)),
                    "{body}: {note} not in {notes:?}"
                );
            }
        }
    }

    #[test]
    fn services_that_depend_on_several_keys() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "socket_type = dgram\nwait = no\nuser = nobody\nserver = /bin/cat",
                "wait = true",
                "`wait = no` for a dgram server",
            ),
            (
                "socket_type = stream\nwait = no\nuser = root\nflags = SENSOR\nserver = /bin/cat",
                "flags = [\"SENSOR\"]",
                "a SENSOR runs nothing",
            ),
            (
                "socket_type = stream\nwait = no\ntype = INTERNAL\nflags = SENSOR",
                "flags = [\"SENSOR\"]",
                "INTERNAL left out",
            ),
            (
                "socket_type = stream\nwait = no\ntype = INTERNAL UNLISTED\nport = 9099",
                "disable = true",
                "internal `svc` service has no oxinetd equivalent",
            ),
        ];
        for (body, line, note) in cases {
            let (lines, notes) = service("", body);
            assert!(lines.iter().any(|l| l == line), "{body}: {lines:#?}");
            assert!(notes.iter().any(|n| n.contains(note)), "{body}: {notes:?}");
        }
    }

    #[test]
    fn defaults_accumulate_and_keep_their_lists() {
        let imported = import(&[(
            "/x/xinetd.conf",
            "defaults\n{\n only_from = 10.0.0.0\n only_from = ::1\n disabled = a b\n enabled = c\n instances = 5\n instances = 6\n}\n",
        )]);
        let text = imported.single();
        for line in [
            r#"only_from = ["10.0.0.0", "::1"]"#,
            r#"disabled = ["a", "b"]"#,
            r#"enabled = ["c"]"#,
            "instances = 6",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        let notes: Vec<String> = imported.notes().iter().map(|n| n.to_string()).collect();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("/x/xinetd.conf:4: defaults: `only_from = ::1`"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("/x/xinetd.conf:8: defaults: `instances` given again"),
            "{notes:?}"
        );
    }

    #[test]
    fn a_default_oxinetd_refuses_is_left_out() {
        let imported = import(&[(
            "/x/xinetd.conf",
            "defaults\n{\n instances = 5\n umask = 999\n}\n",
        )]);
        let text = imported.single();
        assert!(
            text.contains("instances = 5") && !text.contains("umask = "),
            "{text}"
        );
        let notes: Vec<String> = imported.notes().iter().map(|n| n.to_string()).collect();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("/x/xinetd.conf:4: defaults: `umask` left out"),
            "{notes:?}"
        );
    }

    #[test]
    fn include_and_includedir_follow_xinetd() {
        let imported = import(&[
            ("/x/xinetd.conf", "includedir /x/d\ninclude /x/extra.conf\n"),
            (
                "/x/d/echo",
                "service echo\n{\n id = echo-stream\n type = INTERNAL\n socket_type = stream\n}\nservice echo\n{\n id = echo-dgram\n type = INTERNAL\n socket_type = dgram\n}\n",
            ),
            ("/x/d/ftp.rpmsave", "service skipped\n{\n}\n"),
            ("/x/d/ftp~", "service skipped\n{\n}\n"),
            (
                "/x/extra.conf",
                "service daytime\n{\n type = INTERNAL\n socket_type = stream\n}\n",
            ),
        ]);
        let files = imported.files();
        let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "oxinetd.toml",
                "oxinetd.d/echo.toml",
                "oxinetd.d/extra.conf.toml"
            ]
        );
        assert!(
            files[0].1.contains("includedir = \"oxinetd.d\""),
            "{}",
            files[0].1
        );
        assert_eq!(
            files[1].1.matches("[[service.echo]]").count(),
            2,
            "{}",
            files[1].1
        );
        assert!(files[2].1.contains("[service.daytime]"), "{}", files[2].1);
        assert!(!imported.single().contains("skipped"));
        assert!(imported.notes().is_empty(), "{:?}", imported.notes());
    }

    #[test]
    fn one_service_file_goes_to_its_own_file() {
        let imported = import(&[(
            "/x/finger",
            "service finger\n{\n socket_type = stream\n wait = no\n user = nobody\n server = /usr/sbin/in.fingerd\n}\n",
        )]);
        let names: Vec<String> = imported
            .files()
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(names, ["oxinetd.toml", "oxinetd.d/finger.toml"]);
        assert!(!imported.single().contains("includedir"));
    }

    #[test]
    fn ids_are_unique_across_files() {
        let imported = import(&[
            ("/x/xinetd.conf", "includedir /x/d\n"),
            (
                "/x/d/echo",
                "service echo\n{\n id = echo-dgram\n type = INTERNAL\n socket_type = dgram\n}\n",
            ),
            (
                "/x/d/echo-udp",
                "service echo\n{\n id = echo-dgram\n type = INTERNAL\n socket_type = dgram\n}\n",
            ),
        ]);
        let text = imported.single();
        assert!(text.contains(r#"id = "echo-dgram-2""#), "{text}");
        let notes: Vec<String> = imported.notes().iter().map(|n| n.to_string()).collect();
        assert_eq!(
            notes,
            [
                "/x/d/echo-udp:1: service echo: id `echo-dgram` is already defined at /x/d/echo:1; oxinetd needs each id once: this one is `echo-dgram-2`"
            ]
        );
    }

    #[test]
    fn files_that_cannot_be_read_are_said() {
        let table = Table(BTreeMap::new());
        assert!(
            xinetd(Path::new("/nope"), &table)
                .unwrap_err()
                .starts_with("/nope: ")
        );
        let imported = import(&[("/x/xinetd.conf", "includedir /x/none\ninclude /x/gone\n")]);
        let notes: Vec<String> = imported.notes().iter().map(|n| n.to_string()).collect();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("/x/xinetd.conf:1: includedir /x/none: "),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("/x/xinetd.conf:2: /x/gone: "),
            "{notes:?}"
        );
    }

    /// Every note is a `# import:` comment in the output and a line for stderr.
    #[test]
    fn every_note_is_written_once_in_place() {
        let imported = import(&[(
            "/x/xinetd.conf",
            "defaults\n{\n only_from = 10.0.0.0\n only_from = ::1\n}\nservice svc\n{\n socket_type = dgram\n wait = no\n user = nobody\n server = /bin/cat\n libwrap = svc\n log_on_success += PID\n}\n",
        )]);
        let text = imported.single();
        assert_eq!(
            text.matches("# import: ").count(),
            imported.notes().len(),
            "{text}"
        );
        assert_eq!(imported.notes().len(), 4);
    }
}

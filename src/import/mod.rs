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
    let defaults_attrs = walk.defaults.clone().unwrap_or_default();
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
        let (entries, notes) = convert::defaults(attrs, path);
        // An empty `defaults { }` (Debian's xinetd.conf) needs no empty table.
        if !entries.is_empty() || !notes.is_empty() {
            documents[0].defaults = Some(entries);
            documents[0].defaults_notes = notes;
        }
    }
    for (name, source, services) in walk.groups {
        documents.push(Document {
            name: Some(format!("{name}.toml")),
            header: vec![format!(
                "Imported by `oxinetd import` from {}.",
                source.display()
            )],
            services,
            ..Document::default()
        });
    }
    let _ = defaults_attrs;
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

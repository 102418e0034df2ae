//! What the last load made of each included file, so a reload neither reads, parses
//! nor validates a file that did not change. Pure: the stamps and answers come from
//! the `Host`.
//!
//! A file's entry is trusted when four things hold (see docs/configuration.md, Reload):
//! - its `Stamp` (one `stat`: device, inode, size, mtime and ctime to the nanosecond,
//!   owner, group, mode) is the one it had when it was read;
//! - it was not "racy" when it was read (git's rule): its mtime and ctime were at least
//!   `RACY_MARGIN` older than the moment of reading, so a later write, even one within
//!   the same clock tick of a coarse file system clock, cannot leave the stamp as it was;
//! - the main file's settings (`[defaults]`, `includedir`, `trust_insecure_files`...)
//!   are those of that load: any change there drops every entry;
//! - every answer the host gave while its services were validated (users, groups,
//!   executables, banner files, the status of the files `trust` looks at...) is still
//!   the same: each distinct question is asked again once per reload (`Verifier`), as
//!   the load without a cache did.
//!
//! Only files whose services all loaded without an error (or are switched off) have an
//! entry: a file with an error is read again, and its errors reported again, at every
//! reload, and so is one whose definition turned out to clash with another's id.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::raw::Entry;
use super::spec::Protocol;
use super::{ConfigError, FileKind, FileStatus, Host, ServiceSpec, UserEntry};

/// How much older than the moment of reading a file's mtime and ctime must be for the
/// file to be trusted from the cache next time. Linux stamps files with its coarse
/// clock, at most a tick (1-10 ms) behind the clock read here, on file systems with
/// nanosecond times (ext4, xfs, btrfs, tmpfs): 100 ms is ten ticks.
pub const RACY_MARGIN_NS: i64 = 100_000_000;
/// The same for a file system that keeps whole seconds (both times of the file without
/// nanoseconds: ext3, FAT's 2 s, some NFS servers).
pub const RACY_MARGIN_COARSE_NS: i64 = 3_000_000_000;

/// What one `stat` says of a file: enough to tell that it was not written, replaced,
/// moved or given another owner or mode since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    /// mtime and ctime, in nanoseconds since the epoch.
    pub modified: i64,
    pub changed: i64,
    pub kind: FileKind,
    pub uid: u32,
    pub gid: u32,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

impl Stamp {
    pub fn status(&self) -> FileStatus {
        FileStatus {
            kind: self.kind,
            uid: self.uid,
            mode: self.mode,
        }
    }
}

/// A file's stamp, taken from the open file before reading it, and when the reading
/// began (realtime, nanoseconds since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamped {
    pub stamp: Stamp,
    pub read_at: i64,
}

impl Stamped {
    /// Whether a later write could leave the stamp unchanged: the file was written (or
    /// its inode changed) too shortly before it was read. Such a file is read again
    /// next time, until it is old enough.
    pub fn racy(&self) -> bool {
        let whole_seconds = |ns: i64| ns % 1_000_000_000 == 0;
        let margin = if whole_seconds(self.stamp.modified) && whole_seconds(self.stamp.changed) {
            RACY_MARGIN_COARSE_NS
        } else {
            RACY_MARGIN_NS
        };
        let safe_before = self.read_at.saturating_sub(margin);
        self.stamp.modified >= safe_before || self.stamp.changed >= safe_before
    }
}

/// The outcome of one definition of a cached file.
#[derive(Clone, Debug)]
pub enum Outcome {
    Service(Rc<ServiceSpec>),
    /// `disable = true`, or switched off by `[defaults]`: listed as disabled.
    Off(String),
}

impl Outcome {
    pub fn id(&self) -> &str {
        match self {
            Outcome::Service(spec) => &spec.id,
            Outcome::Off(id) => id,
        }
    }
}

/// Each definition's line and outcome: most files define one service, kept without a
/// list of its own (10,000 lists were half a MiB).
#[derive(Debug)]
pub enum Outcomes {
    One((usize, Outcome)),
    Many(Box<[(usize, Outcome)]>),
}

impl Outcomes {
    pub fn iter(&self) -> std::slice::Iter<'_, (usize, Outcome)> {
        match self {
            Outcomes::One(one) => std::slice::from_ref(one).iter(),
            Outcomes::Many(many) => many.iter(),
        }
    }
}

impl From<Vec<(usize, Outcome)>> for Outcomes {
    fn from(mut outcomes: Vec<(usize, Outcome)>) -> Outcomes {
        match (outcomes.len(), outcomes.pop()) {
            (1, Some(one)) => Outcomes::One(one),
            (_, last) => {
                outcomes.extend(last);
                Outcomes::Many(outcomes.into())
            }
        }
    }
}

/// What one included file gave.
#[derive(Debug)]
pub struct FileEntry {
    pub stamp: Stamp,
    /// Each definition's line and outcome, in order.
    pub outcomes: Outcomes,
    pub warnings: Box<[ConfigError]>,
    /// The answers its validation depended on, by their number in `Cache::facts`:
    /// shared by the files that depended on the same ones (most do: one user, one
    /// program, the same folder), so a reload checks each set once.
    pub facts: Rc<[u32]>,
}

/// The cache of the configuration that runs.
#[derive(Debug, Default)]
pub struct Cache {
    /// The main file's top-level settings, its `[service]` tables left out.
    pub(super) main: Option<(PathBuf, Vec<Entry>)>,
    /// The include folder when it was listed, if the next load may trust that listing
    /// while the folder's stamp stays the same (adding, removing or renaming a file
    /// changes its mtime and ctime).
    pub(super) folder: Option<Stamped>,
    /// Every file it listed, by name, in name order (that of `Host::toml_names`), with
    /// its entry if it has one.
    pub(super) files: Vec<(Box<OsStr>, Option<FileEntry>)>,
    pub(super) facts: Facts,
}

impl Cache {
    /// How many included files have an entry.
    pub fn len(&self) -> usize {
        self.files
            .iter()
            .filter(|(_, entry)| entry.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries usable with `main`'s settings: none if they changed.
    pub(super) fn for_main(&mut self, main: &Path, settings: &[Entry]) -> Option<&mut Cache> {
        let (path, kept) = self.main.as_ref()?;
        (path == main && kept == settings).then_some(self)
    }
}

/// A question validation asks the host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Question {
    User(String),
    Group(String),
    GroupList(String, u32),
    ServicePort(String, Protocol),
    Executable(PathBuf),
    Status(PathBuf),
    Euid,
    Somaxconn,
    Environment,
    Read(PathBuf, usize),
    RpcNumber(String),
}

/// An answer, in a form that compares (an I/O error as its kind and message).
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    User(Option<UserEntry>),
    Number(Option<u32>),
    Groups(Vec<u32>),
    Port(Option<u16>),
    Flag(bool),
    Status(Result<FileStatus, (io::ErrorKind, String)>),
    Environment(Vec<(Vec<u8>, Vec<u8>)>),
    Bytes(Result<Vec<u8>, (io::ErrorKind, String)>),
}

fn outcome<T>(result: &io::Result<T>) -> Result<T, (io::ErrorKind, String)>
where
    T: Clone,
{
    match result {
        Ok(value) => Ok(value.clone()),
        Err(error) => Err((error.kind(), error.to_string())),
    }
}

/// Asks `host` `question` again.
pub fn ask(host: &dyn Host, question: &Question) -> Answer {
    match question {
        Question::User(name) => Answer::User(host.user(name)),
        Question::Group(name) => Answer::Number(host.group(name)),
        Question::GroupList(user, gid) => Answer::Groups(host.group_list(user, *gid)),
        Question::ServicePort(name, protocol) => Answer::Port(host.service_port(name, *protocol)),
        Question::Executable(path) => Answer::Flag(host.is_executable(path)),
        Question::Status(path) => Answer::Status(outcome(&host.status(path))),
        Question::Euid => Answer::Number(Some(host.euid())),
        Question::Somaxconn => Answer::Number(Some(host.somaxconn())),
        Question::Environment => Answer::Environment(host.environment()),
        Question::Read(path, limit) => Answer::Bytes(outcome(&host.read(path, *limit))),
        Question::RpcNumber(name) => Answer::Number(host.rpc_number(name)),
    }
}

/// The distinct questions of a load and their answers, numbered.
#[derive(Debug, Default)]
pub struct Facts {
    list: Vec<(Question, Answer)>,
    index: HashMap<Question, u32>,
    /// The distinct sets of numbers the files depend on.
    sets: HashMap<Rc<[u32]>, ()>,
}

impl Facts {
    /// The number of `question` answered `answer`, added if new. A question answered
    /// differently within one load (a file that changed meanwhile) is kept twice, so
    /// that one of the two fails next time.
    pub fn intern(&mut self, question: Question, answer: Answer) -> u32 {
        if let Some(&at) = self.index.get(&question)
            && self.list[at as usize].1 == answer
        {
            return at;
        }
        let at = self.list.len() as u32;
        self.index.insert(question.clone(), at);
        self.list.push((question, answer));
        at
    }

    /// `ids` (sorted, distinct) as the one shared copy of that set.
    pub fn set(&mut self, ids: &[u32]) -> Rc<[u32]> {
        if let Some((set, ())) = self.sets.get_key_value(ids) {
            return Rc::clone(set);
        }
        let set: Rc<[u32]> = Rc::from(ids);
        self.sets.insert(Rc::clone(&set), ());
        set
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Checks the facts of the last load against the host of this one, each distinct
/// question once, carrying the ones still true over into this load's facts.
pub struct Verifier<'a> {
    old: &'a Facts,
    /// By old number: not asked yet, changed, or still true under its new number.
    checked: Vec<Option<Option<u32>>>,
    /// By the address of an old set: the new set if all of it still holds.
    sets: HashMap<*const u32, Option<Rc<[u32]>>>,
}

impl<'a> Verifier<'a> {
    pub fn new(old: &'a Facts) -> Verifier<'a> {
        Verifier {
            old,
            checked: vec![None; old.list.len()],
            sets: HashMap::new(),
        }
    }

    /// The set of new numbers of `ids` if every one still holds.
    pub fn carry(
        &mut self,
        ids: &Rc<[u32]>,
        host: &dyn Host,
        new: &mut Facts,
    ) -> Option<Rc<[u32]>> {
        if let Some(known) = self.sets.get(&ids.as_ptr()) {
            return known.clone();
        }
        let carried = self
            .carry_each(ids, host, new)
            .map(|carried| new.set(&carried));
        self.sets.insert(ids.as_ptr(), carried.clone());
        carried
    }

    fn carry_each(&mut self, ids: &[u32], host: &dyn Host, new: &mut Facts) -> Option<Vec<u32>> {
        let mut carried = Vec::with_capacity(ids.len());
        for &id in ids {
            let at = id as usize;
            let known = match self.checked[at] {
                Some(known) => known,
                None => {
                    let (question, answer) = &self.old.list[at];
                    let now = ask(host, question);
                    let known = (now == *answer).then(|| new.intern(question.clone(), now));
                    self.checked[at] = Some(known);
                    known
                }
            };
            carried.push(known?);
        }
        Some(carried)
    }
}

/// A `Host` that notes every question and answer, for the entry of the file whose
/// services it validates. The status of that file itself is left out: its stamp holds
/// it.
pub struct Recorder<'a> {
    pub host: &'a dyn Host,
    pub facts: &'a RefCell<Facts>,
    pub used: RefCell<Vec<u32>>,
    pub own: Option<&'a Path>,
}

impl Recorder<'_> {
    fn note(&self, question: Question, answer: Answer) {
        let id = self.facts.borrow_mut().intern(question, answer);
        self.used.borrow_mut().push(id);
    }

    /// The distinct numbers noted, as the load's shared set.
    pub fn take_used(&self) -> Rc<[u32]> {
        let mut used = std::mem::take(&mut *self.used.borrow_mut());
        used.sort_unstable();
        used.dedup();
        self.facts.borrow_mut().set(&used)
    }
}

impl Host for Recorder<'_> {
    fn user(&self, name: &str) -> Option<UserEntry> {
        let answer = self.host.user(name);
        self.note(
            Question::User(name.to_string()),
            Answer::User(answer.clone()),
        );
        answer
    }

    fn group(&self, name: &str) -> Option<u32> {
        let answer = self.host.group(name);
        self.note(Question::Group(name.to_string()), Answer::Number(answer));
        answer
    }

    fn group_list(&self, user: &str, gid: u32) -> Vec<u32> {
        let answer = self.host.group_list(user, gid);
        let question = Question::GroupList(user.to_string(), gid);
        self.note(question, Answer::Groups(answer.clone()));
        answer
    }

    fn service_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        let answer = self.host.service_port(name, protocol);
        let question = Question::ServicePort(name.to_string(), protocol);
        self.note(question, Answer::Port(answer));
        answer
    }

    fn is_executable(&self, path: &Path) -> bool {
        let answer = self.host.is_executable(path);
        self.note(
            Question::Executable(path.to_path_buf()),
            Answer::Flag(answer),
        );
        answer
    }

    fn status(&self, path: &Path) -> io::Result<FileStatus> {
        let answer = self.host.status(path);
        if self.own != Some(path) {
            let question = Question::Status(path.to_path_buf());
            self.note(question, Answer::Status(outcome(&answer)));
        }
        answer
    }

    fn euid(&self) -> u32 {
        let answer = self.host.euid();
        self.note(Question::Euid, Answer::Number(Some(answer)));
        answer
    }

    fn somaxconn(&self) -> u32 {
        let answer = self.host.somaxconn();
        self.note(Question::Somaxconn, Answer::Number(Some(answer)));
        answer
    }

    fn environment(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let answer = self.host.environment();
        self.note(Question::Environment, Answer::Environment(answer.clone()));
        answer
    }

    fn read(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        let answer = self.host.read(path, limit);
        let question = Question::Read(path.to_path_buf(), limit);
        self.note(question, Answer::Bytes(outcome(&answer)));
        answer
    }

    fn rpc_number(&self, name: &str) -> Option<u32> {
        let answer = self.host.rpc_number(name);
        self.note(
            Question::RpcNumber(name.to_string()),
            Answer::Number(answer),
        );
        answer
    }

    fn toml_files(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.host.toml_files(dir)
    }
}

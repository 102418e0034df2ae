//! The real `Host`: users, groups, /etc/services and files of this machine.
//!
//! One `System` serves one load, and remembers for that load what it was told of users,
//! file status and executability: 10,000 services running one program as one user
//! asked the same questions 10,000 times (issue 13: 9 system calls a service).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, User};

use crate::config::spec::Protocol;
use crate::config::{FileKind, FileStatus, Host, Stamp, Stamped, UserEntry, parse_services_port};

pub struct System {
    services: String,
    euid: u32,
    somaxconn: u32,
    known: RefCell<Known>,
    /// When this load began, by the kernel's clock: the moment every file it reads is
    /// taken to be read at, for the racy rule (earlier than the true one: safe).
    started: i64,
}

/// Answers already given during this load.
#[derive(Default)]
struct Known {
    users: HashMap<String, Option<UserEntry>>,
    executable: HashMap<PathBuf, bool>,
    status: HashMap<PathBuf, FileStatus>,
    /// The include folder, open for `stamp_in` and `read_stamped`.
    folder: Option<(PathBuf, std::os::fd::OwnedFd)>,
    /// The names its listing found to be regular files (not links), in order.
    regular: Vec<Box<OsStr>>,
    environment: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl System {
    pub fn new() -> System {
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(4096);
        System {
            services: std::fs::read_to_string("/etc/services").unwrap_or_default(),
            euid: nix::unistd::geteuid().as_raw(),
            somaxconn,
            known: RefCell::default(),
            started: crate::sys::time::kernel_realtime_ns(),
        }
    }

    fn look_up_user(name: &str) -> Option<UserEntry> {
        let user = match User::from_name(name).ok().flatten() {
            Some(user) => user,
            None => User::from_uid(name.parse::<u32>().ok()?.into())
                .ok()
                .flatten()?,
        };
        Some(UserEntry {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir.to_string_lossy().into_owned(),
            shell: user.shell.to_string_lossy().into_owned(),
        })
    }
}

impl Default for System {
    fn default() -> Self {
        System::new()
    }
}

impl Host for System {
    fn user(&self, name: &str) -> Option<UserEntry> {
        if let Some(known) = self.known.borrow().users.get(name) {
            return known.clone();
        }
        let entry = System::look_up_user(name);
        (self.known.borrow_mut().users).insert(name.to_string(), entry.clone());
        entry
    }

    fn group(&self, name: &str) -> Option<u32> {
        match Group::from_name(name).ok().flatten() {
            Some(group) => Some(group.gid.as_raw()),
            None => {
                let gid = name.parse::<u32>().ok()?;
                Group::from_gid(Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|_| gid)
            }
        }
    }

    fn group_list(&self, user: &str, gid: u32) -> Vec<u32> {
        let Ok(name) = CString::new(user) else {
            return vec![gid];
        };
        nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
            .map(|groups| groups.into_iter().map(Gid::as_raw).collect())
            .unwrap_or_else(|_| vec![gid])
    }

    fn service_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        parse_services_port(&self.services, name, protocol)
    }

    fn is_executable(&self, path: &Path) -> bool {
        if let Some(&known) = self.known.borrow().executable.get(path) {
            return known;
        }
        let executable =
            path.is_file() && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok();
        (self.known.borrow_mut().executable).insert(path.to_path_buf(), executable);
        executable
    }

    fn euid(&self) -> u32 {
        self.euid
    }

    fn somaxconn(&self) -> u32 {
        self.somaxconn
    }

    /// oxinetd's environment less what systemd meant for oxinetd alone.
    fn environment(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut known = self.known.borrow_mut();
        known
            .environment
            .get_or_insert_with(|| {
                std::env::vars_os()
                    .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
                    .filter(|(name, _)| !crate::notify::is_systemd_variable(name))
                    .collect()
            })
            .clone()
    }

    /// Errors are not remembered: they are rare, and carry their own message.
    fn status(&self, path: &Path) -> io::Result<FileStatus> {
        if let Some(&known) = self.known.borrow().status.get(path) {
            return Ok(known);
        }
        let status = std::fs::metadata(path).map(|meta| status_of(&meta))?;
        (self.known.borrow_mut().status).insert(path.to_path_buf(), status);
        Ok(status)
    }

    fn read(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        self.read_stamped(path, limit).map(|(bytes, _)| bytes)
    }

    fn stamp(&self, path: &Path) -> io::Result<Stamp> {
        Ok(stamp_of(&std::fs::metadata(path)?))
    }

    /// Looked up from the folder's descriptor (`fstatat`), not walked to from `/`: a
    /// reload stamps every included file, and the walk was a quarter of each `stat`.
    fn stamp_in(&self, dir: &Path, name: &OsStr) -> io::Result<Stamp> {
        self.open_folder(dir)?;
        let known = self.known.borrow();
        let (_, fd) = known.folder.as_ref().expect("opened");
        let status = nix::sys::stat::fstatat(fd, name, nix::fcntl::AtFlags::empty())?;
        Ok(stamp_of_stat(&status))
    }

    fn read_stamped(&self, path: &Path, limit: usize) -> io::Result<(Vec<u8>, Option<Stamped>)> {
        // Looked at before the open, so a device is not even opened (opening some has
        // effects), and again after it, in case the path changed in between. A file the
        // folder's listing found regular a moment ago is opened from the folder.
        let file = match self.listed_regular(path) {
            Some(file) => file?,
            None => {
                let known = self.known.borrow().status.get(path).copied();
                match known {
                    Some(status) => regular_kind(status.kind)?,
                    None => regular(&std::fs::metadata(path)?)?,
                }
                open_nonblocking(path)?
            }
        };
        let stamp = stamp_of(&file.metadata()?);
        regular_kind(stamp.kind)?;
        (self.known.borrow_mut().status).insert(path.to_path_buf(), stamp.status());
        let bytes = read_up_to(file, stamp.size, limit)?;
        let read_at = self.started;
        Ok((bytes, Some(Stamped { stamp, read_at })))
    }

    fn rpc_number(&self, name: &str) -> Option<u32> {
        let text = std::fs::read_to_string("/etc/rpc").ok()?;
        crate::config::parse_rpc_number(&text, name)
    }

    fn toml_files(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let (names, _) = self.toml_names(dir)?;
        Ok(names.iter().map(|name| dir.join(&**name)).collect())
    }

    /// The folder's entry says most files are regular without a `stat` each; a link (or
    /// a file system that does not say) is followed, and makes the listing one not to
    /// trust later: its target may change kind while the folder stays the same.
    fn toml_names(&self, dir: &Path) -> io::Result<(Vec<Box<OsStr>>, Option<Stamped>)> {
        let read_at = self.started;
        self.open_folder(dir)?;
        let stamp = {
            let known = self.known.borrow();
            let (_, fd) = known.folder.as_ref().expect("opened");
            stamp_of_stat(&nix::sys::stat::fstat(fd)?)
        };
        let mut trusted = true;
        let mut regular_names: Vec<Box<OsStr>> = Vec::new();
        let mut names: Vec<Box<OsStr>> = std::fs::read_dir(dir)?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let name = entry.file_name();
                let bytes = name.as_bytes();
                if bytes.starts_with(b".") || !bytes.ends_with(b".toml") {
                    return None;
                }
                let regular = match entry.file_type() {
                    Ok(kind) if kind.is_file() => {
                        regular_names.push(Box::from(name.as_os_str()));
                        true
                    }
                    // A folder, FIFO, socket or device: only a new entry can change that.
                    Ok(kind) if !kind.is_symlink() => false,
                    _ => {
                        trusted = false;
                        entry.path().is_file()
                    }
                };
                regular.then(|| name.into_boxed_os_str())
            })
            .collect();
        // By bytes, the order `Path` gives names of one folder.
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        regular_names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        self.known.borrow_mut().regular = regular_names;
        Ok((names, trusted.then_some(Stamped { stamp, read_at })))
    }
}

impl System {
    /// Opens `path` from the open folder if its listing found it a regular file.
    fn listed_regular(&self, path: &Path) -> Option<io::Result<File>> {
        let known = self.known.borrow();
        let (folder, fd) = known.folder.as_ref()?;
        let name = path.file_name()?;
        if path.parent() != Some(folder.as_path())
            || (known.regular)
                .binary_search_by(|listed| listed.as_bytes().cmp(name.as_bytes()))
                .is_err()
        {
            return None;
        }
        let flags = nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_NOCTTY
            | nix::fcntl::OFlag::O_CLOEXEC;
        let opened = nix::fcntl::openat(fd, name, flags, nix::sys::stat::Mode::empty());
        Some(opened.map(File::from).map_err(io::Error::from))
    }

    /// Opens `dir` for `stamp_in`, unless it is the folder open already.
    fn open_folder(&self, dir: &Path) -> io::Result<()> {
        if (self.known.borrow().folder.as_ref()).is_some_and(|(open, _)| open == dir) {
            return Ok(());
        }
        let flags = nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty())?;
        self.known.borrow_mut().folder = Some((dir.to_path_buf(), fd));
        Ok(())
    }
}

/// At most `limit + 1` bytes of `file`, whose `stat` said `size`: read until that size
/// (one `read` for a small file, not a second one to find the end), or to the end if
/// `size` says nothing (a file in /proc says 0).
fn read_up_to(mut file: File, size: u64, limit: usize) -> io::Result<Vec<u8>> {
    let wanted = (size as usize).min(limit + 1);
    let mut bytes = vec![0; wanted];
    let mut filled = 0;
    while filled < wanted {
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    bytes.truncate(filled);
    if size == 0 {
        file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// Opens `path` for reading without ever waiting: a FIFO with no writer opens at once
/// (O_NONBLOCK), and a terminal does not become our controlling one (O_NOCTTY).
fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

fn regular(meta: &Metadata) -> io::Result<()> {
    regular_kind(status_of(meta).kind)
}

fn regular_kind(kind: FileKind) -> io::Result<()> {
    match kind {
        FileKind::Regular => Ok(()),
        kind => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", kind.described()),
        )),
    }
}

fn stamp_of_stat(stat: &libc::stat) -> Stamp {
    let ns = |seconds: i64, nanoseconds: i64| seconds.saturating_mul(1_000_000_000) + nanoseconds;
    let kind = match stat.st_mode & libc::S_IFMT {
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFBLK => FileKind::BlockDevice,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFSOCK => FileKind::Socket,
        _ => FileKind::Regular,
    };
    Stamp {
        device: stat.st_dev,
        inode: stat.st_ino,
        size: stat.st_size as u64,
        modified: ns(stat.st_mtime, stat.st_mtime_nsec),
        changed: ns(stat.st_ctime, stat.st_ctime_nsec),
        kind,
        uid: stat.st_uid,
        gid: stat.st_gid,
        mode: stat.st_mode & 0o7777,
    }
}

fn stamp_of(meta: &Metadata) -> Stamp {
    let status = status_of(meta);
    let ns = |seconds: i64, nanoseconds: i64| seconds.saturating_mul(1_000_000_000) + nanoseconds;
    Stamp {
        device: meta.dev(),
        inode: meta.ino(),
        size: meta.size(),
        modified: ns(meta.mtime(), meta.mtime_nsec()),
        changed: ns(meta.ctime(), meta.ctime_nsec()),
        kind: status.kind,
        uid: status.uid,
        gid: meta.gid(),
        mode: status.mode,
    }
}

pub fn status_of(meta: &Metadata) -> FileStatus {
    let kind = meta.file_type();
    let kind = if kind.is_dir() {
        FileKind::Directory
    } else if kind.is_char_device() {
        FileKind::CharDevice
    } else if kind.is_block_device() {
        FileKind::BlockDevice
    } else if kind.is_fifo() {
        FileKind::Fifo
    } else if kind.is_socket() {
        FileKind::Socket
    } else {
        FileKind::Regular
    };
    FileStatus {
        kind,
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
    }
}

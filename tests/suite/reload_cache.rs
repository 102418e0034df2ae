//! The reload's cache of included files: a file that changed is read again however it
//! changed, one that did not keeps its services untouched, and what a cached file's
//! services depend on besides the file (the main file's `[defaults]`, the server
//! program, file modes) is still checked at every reload.

use crate::common;

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Oxinetd, free_port, tcp_request, v4, wait_until, write_script};

/// Answers with its first argument, then `$GREETING` if set.
const ANSWER: &str = "#!/bin/sh\necho \"$1${GREETING:+ $GREETING}\"\n";

/// A main file including `conf.d`, and one file per service there, each running
/// `script` with its own argument.
struct Layout {
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl Layout {
    fn new(defaults: &str) -> Layout {
        common::trusted_umask();
        let dir = common::tempdir();
        fs::create_dir(dir.path().join("conf.d")).expect("mkdir conf.d");
        let script = write_script(dir.path(), "answer", ANSWER);
        let layout = Layout { dir, script };
        layout.write_main(defaults);
        layout
    }

    fn write_main(&self, defaults: &str) {
        let main = format!("includedir = \"conf.d\"\n\n[defaults]\n{defaults}\n");
        fs::write(self.dir.path().join("oxinetd.toml"), main).expect("write main");
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join("conf.d").join(name)
    }

    fn service(&self, name: &str, port: u16, arg: &str) -> String {
        format!(
            "[service.{name}]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
             bind = \"127.0.0.1\"\nserver = \"{}\"\nserver_args = [\"{arg}\"]\nport = {port}\n",
            self.script.display()
        )
    }

    /// Starts the daemon once every file is older than the cache's racy margin: a file
    /// read within it is read again at the next reload whatever its stamp, which would
    /// hide what these tests look at.
    fn start(self) -> Oxinetd {
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.path().join("conf.d"))
            .expect("list conf.d")
            .map(|entry| entry.expect("entry").path())
            .collect();
        files.push(self.dir.path().join("conf.d"));
        wait_until_older(self.dir.path(), &files);
        Oxinetd::start_in(self.dir, &["-f", "oxinetd.toml"])
    }
}

/// Waits until every one of `files` changed at least 300 ms before a file made now in
/// `dir`: the kernel's file clock, not this process's (which CI shifts with faketime).
fn wait_until_older(dir: &Path, files: &[PathBuf]) {
    let marker = dir.join("clock.marker");
    let changed = |path: &Path| {
        let meta = fs::metadata(path).expect("stat");
        meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128
    };
    let newest = files.iter().map(|path| changed(path)).max().unwrap_or(0);
    wait_until(
        "files older than the racy margin",
        Duration::from_secs(10),
        || {
            fs::write(&marker, b"now").expect("touch marker");
            changed(&marker) - newest > 300_000_000
        },
    );
    fs::remove_file(&marker).expect("remove marker");
}

fn answer(port: u16) -> String {
    String::from_utf8_lossy(&tcp_request(v4(port), b"")).into_owned()
}

/// Sends SIGHUP and returns the log written since.
fn reload(daemon: &Oxinetd) -> String {
    let before = daemon.log().len();
    daemon.reload();
    daemon.log()[before..].to_string()
}

/// `N included files read, M unchanged` of the newest reload.
fn read_and_unchanged(log: &str) -> (usize, usize) {
    let line = log
        .lines()
        .rfind(|line| line.contains("included files read"))
        .unwrap_or_else(|| panic!("no count of included files in:\n{log}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|word| word.parse().ok())
        .collect();
    let n = numbers.len();
    (numbers[n - 2], numbers[n - 1])
}

fn set_modified(path: &Path, to: std::time::SystemTime) {
    let file = File::options().write(true).open(path).expect("open");
    file.set_times(FileTimes::new().set_modified(to))
        .expect("set mtime");
}

/// The listening socket's inode on `port`, as /proc/net/tcp shows it.
fn listener_inode(port: u16) -> String {
    let text = fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    text.lines()
        .skip(1)
        .map(|row| row.split_whitespace().collect::<Vec<_>>())
        .find(|fields| {
            let local = fields[1].rsplit(':').next().expect("port");
            fields[3] == "0A" && u16::from_str_radix(local, 16) == Ok(port)
        })
        .map(|fields| fields[9].to_string())
        .unwrap_or_else(|| panic!("no listener on {port}"))
}

#[test]
fn unchanged_included_files_are_taken_from_the_cache_and_keep_their_sockets() {
    let layout = Layout::new("");
    let (kept, edited) = (free_port(), free_port());
    fs::write(layout.file("kept.toml"), layout.service("kept", kept, "k1")).expect("write");
    fs::write(
        layout.file("edited.toml"),
        layout.service("edited", edited, "e1"),
    )
    .expect("write");
    let edited_file = layout.file("edited.toml");
    let daemon = layout.start();
    let before = listener_inode(kept);

    fs::write(
        &edited_file,
        format!("{}\n", daemon_service(&daemon, "edited", edited, "e2")),
    )
    .expect("rewrite");
    let log = reload(&daemon);
    assert!(log.contains("reload: done"), "{log}");
    assert_eq!(read_and_unchanged(&log), (1, 1), "{log}");
    assert_eq!(answer(edited), "e2\n");
    assert_eq!(answer(kept), "k1\n");
    assert_eq!(
        listener_inode(kept),
        before,
        "the unchanged service was listened anew"
    );
    assert!(
        !log.contains("service kept:"),
        "the unchanged service was touched:\n{log}"
    );
}

/// The service text of `Layout::service` for a daemon already started from it.
fn daemon_service(daemon: &Oxinetd, name: &str, port: u16, arg: &str) -> String {
    format!(
        "[service.{name}]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         bind = \"127.0.0.1\"\nserver = \"{}\"\nserver_args = [\"{arg}\"]\nport = {port}\n",
        daemon.dir().join("answer").display()
    )
}

/// Same size, same inode, and the mtime put back to the nanosecond: only the ctime
/// (which no one can set) tells the file was written.
#[test]
fn an_edit_keeping_size_inode_and_mtime_is_picked_up() {
    let layout = Layout::new("");
    let port = free_port();
    let path = layout.file("svc.toml");
    fs::write(&path, layout.service("svc", port, "old")).expect("write");
    let daemon = layout.start();
    assert_eq!(answer(port), "old\n");
    let meta = fs::metadata(&path).expect("stat");

    fs::write(&path, daemon_service(&daemon, "svc", port, "new")).expect("rewrite");
    set_modified(&path, meta.modified().expect("mtime"));
    let after = fs::metadata(&path).expect("stat");
    assert_eq!(
        (after.len(), after.ino(), after.modified().ok()),
        (meta.len(), meta.ino(), meta.modified().ok()),
        "precondition: only the content and ctime differ"
    );
    let log = reload(&daemon);
    assert!(log.contains("reload: done"), "{log}");
    assert_eq!(answer(port), "new\n");
}

/// A new file renamed over the old one, with the old one's size and mtime.
#[test]
fn a_file_replaced_by_rename_is_picked_up() {
    let layout = Layout::new("");
    let (port, other) = (free_port(), free_port());
    let path = layout.file("svc.toml");
    fs::write(&path, layout.service("svc", port, "old")).expect("write");
    fs::write(
        layout.file("other.toml"),
        layout.service("other", other, "o"),
    )
    .expect("write");
    let daemon = layout.start();
    assert_eq!(answer(port), "old\n");
    let meta = fs::metadata(&path).expect("stat");

    let new = path.with_extension("new");
    fs::write(&new, daemon_service(&daemon, "svc", port, "new")).expect("write new");
    set_modified(&new, meta.modified().expect("mtime"));
    fs::rename(&new, &path).expect("rename");
    let log = reload(&daemon);
    assert!(log.contains("reload: done"), "{log}");
    assert_eq!(read_and_unchanged(&log), (1, 1), "{log}");
    assert_eq!(answer(port), "new\n");
    assert_eq!(answer(other), "o\n");
}

#[test]
fn a_change_of_defaults_reaches_the_services_of_cached_files() {
    let layout = Layout::new("env = [\"GREETING=hello\"]");
    let port = free_port();
    fs::write(layout.file("svc.toml"), layout.service("svc", port, "a")).expect("write");
    let main = layout.dir.path().join("oxinetd.toml");
    let daemon = layout.start();
    assert_eq!(answer(port), "a hello\n");

    let main_text = fs::read_to_string(&main).expect("read main");
    fs::write(&main, main_text.replace("hello", "goodbye")).expect("rewrite main");
    let log = reload(&daemon);
    assert!(log.contains("reload: done"), "{log}");
    assert_eq!(read_and_unchanged(&log), (1, 0), "{log}");
    assert_eq!(answer(port), "a goodbye\n");
}

/// The server program is not in the included file: its deletion is found all the same,
/// and reported as a reload without the cache reported it (the old definition goes on).
#[test]
fn a_deleted_server_of_a_cached_file_is_reported() {
    let layout = Layout::new("");
    let (port, other) = (free_port(), free_port());
    let second = write_script(layout.dir.path(), "second", ANSWER);
    fs::write(layout.file("svc.toml"), layout.service("svc", port, "a")).expect("write");
    let text = layout.service("other", other, "b").replace(
        &layout.script.display().to_string(),
        &second.display().to_string(),
    );
    fs::write(layout.file("other.toml"), text).expect("write");
    let daemon = layout.start();
    assert_eq!(answer(other), "b\n");

    fs::remove_file(&second).expect("delete server");
    let log = reload(&daemon);
    assert!(log.contains("reload: done"), "{log}");
    assert!(
        log.contains("other.toml") && log.contains("key server") && log.contains("second"),
        "the deleted server is not reported:\n{log}"
    );
    assert!(
        log.contains("service other: the new definition has errors; keeping the previous one"),
        "{log}"
    );
    assert_eq!(read_and_unchanged(&log), (1, 1), "{log}");
    assert_eq!(answer(port), "a\n");
}

/// The file's own mode is in its stamp (and changing it changes its ctime).
#[test]
fn a_cached_file_made_group_writable_is_distrusted() {
    let layout = Layout::new("");
    let port = free_port();
    let path = layout.file("svc.toml");
    fs::write(&path, layout.service("svc", port, "a")).expect("write");
    let daemon = layout.start();

    fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).expect("chmod file");
    let log = reload(&daemon);
    assert!(
        log.contains("runs as root, but the configuration file") && log.contains("its group"),
        "a group-writable included file is trusted:\n{log}"
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod back");
    let log = reload(&daemon);
    assert!(!log.contains("runs as root"), "{log}");
}

/// The server's mode is not in the file: it is a fact checked again at every reload.
#[test]
fn the_server_of_a_cached_file_made_group_writable_is_distrusted() {
    let layout = Layout::new("");
    let port = free_port();
    fs::write(layout.file("svc.toml"), layout.service("svc", port, "a")).expect("write");
    let script = layout.script.clone();
    let daemon = layout.start();

    fs::set_permissions(&script, fs::Permissions::from_mode(0o775)).expect("chmod server");
    let log = reload(&daemon);
    assert!(
        log.contains("runs as root, but its server") && log.contains("its group"),
        "a group-writable server of a cached file is trusted:\n{log}"
    );
    assert_eq!(answer(port), "a\n", "the old definition goes on");
}

/// A reload that fails keeps the running configuration and its cache: the next one
/// still takes the unchanged files from it.
#[test]
fn a_failed_reload_keeps_the_cache_of_the_running_configuration() {
    let layout = Layout::new("");
    let (port, other) = (free_port(), free_port());
    fs::write(layout.file("svc.toml"), layout.service("svc", port, "a")).expect("write");
    fs::write(
        layout.file("other.toml"),
        layout.service("other", other, "b"),
    )
    .expect("write");
    let main = layout.dir.path().join("oxinetd.toml");
    let daemon = layout.start();
    let good = fs::read_to_string(&main).expect("read main");

    fs::write(&main, format!("{good}\nbroken = [\n")).expect("break main");
    let log = reload(&daemon);
    assert!(log.contains("reload: failed"), "{log}");
    fs::write(&main, &good).expect("mend main");
    let log = reload(&daemon);
    assert!(log.contains("reload: done"), "{log}");
    assert_eq!(read_and_unchanged(&log), (0, 2), "{log}");
    assert_eq!((answer(port), answer(other)), ("a\n".into(), "b\n".into()));
}

//! Which files a server that runs as root may be defined by: refuses a configuration
//! file, include directory or `server` binary that someone other than root could have
//! written.
//!
//! A root server is as trustworthy as the least protected file that decides what it
//! runs. A file (or directory) is trusted when it is owned by root or by oxinetd's own
//! user, and neither its group nor others may write it. Only the files themselves are
//! looked at, not the directories above them (as sshd's StrictModes does for the user's
//! own files). `trust_insecure_files = true` at the top of the main file turns the rule
//! off, for the rare setup that needs it.

use std::path::Path;

use super::attrs::Attrs;
use super::spec::{Program, ServiceSpec};
use super::{ConfigError, FileStatus, Host};

/// Why `status` is not to be trusted, if it is not.
pub fn distrust(status: &FileStatus, own_uid: u32) -> Option<String> {
    if status.uid != 0 && status.uid != own_uid {
        return Some(format!(
            "is owned by uid {}, neither root nor oxinetd's own user",
            status.uid
        ));
    }
    let writers = match (status.mode & 0o020 != 0, status.mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "its group",
        (false, true) => "others",
        (false, false) => return None,
    };
    Some(format!(
        "is writable by {writers} (mode {:04o})",
        status.mode
    ))
}

/// Every reason not to run `spec` as root: nothing when it runs as another user or
/// runs nothing. `main` is the main file; `line` where the service's table starts.
pub fn check(
    spec: &ServiceSpec,
    attrs: &Attrs,
    main: &Path,
    line: usize,
    host: &dyn Host,
) -> Vec<ConfigError> {
    let Program::Exec(exec) = &spec.program else {
        return Vec::new();
    };
    let root = exec
        .identity
        .as_ref()
        .map_or(host.euid() == 0, |identity| identity.uid == 0);
    if !root {
        return Vec::new();
    }
    let mut errors = Vec::new();
    let mut examine = |what: &str, path: &Path, file: &Path, line: usize, key: Option<&str>| {
        let why = match host.status(path) {
            Ok(status) => distrust(&status, host.euid()),
            Err(error) => Some(format!("cannot be checked: {error}")),
        };
        if let Some(why) = why {
            errors.push(ConfigError {
                file: file.to_path_buf(),
                line: Some(line),
                service: Some(spec.id.clone()),
                key: key.map(str::to_string),
                message: format!(
                    "runs as root, but {what}{} {why}: fix that, or set \
                     `trust_insecure_files = true` at the top of the main file",
                    path.display()
                ),
            });
        }
    };
    examine("the configuration file ", main, &spec.file, line, None);
    if spec.file != main {
        examine(
            "the configuration file ",
            &spec.file,
            &spec.file,
            line,
            None,
        );
        if let Some(dir) = spec.file.parent() {
            examine("the include directory ", dir, &spec.file, line, None);
        }
    }
    if let Some(server) = &attrs.server {
        let origin = &server.origin;
        examine(
            "its server ",
            &exec.server,
            &origin.file,
            origin.line,
            Some("server"),
        );
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileKind;

    #[test]
    fn who_may_have_written_a_file() {
        let status = |uid, mode| FileStatus {
            kind: FileKind::Regular,
            uid,
            mode,
        };
        for (uid, mode, own, want) in [
            (0, 0o644, 0, None),
            (0, 0o755, 0, None),
            (0, 0o4755, 0, None),
            (0, 0o1755, 0, None),
            (1000, 0o644, 1000, None),
            (0, 0o664, 0, Some("is writable by its group (mode 0664)")),
            (0, 0o646, 0, Some("is writable by others (mode 0646)")),
            (
                0,
                0o1777,
                0,
                Some("is writable by group and others (mode 1777)"),
            ),
            (
                1000,
                0o644,
                0,
                Some("is owned by uid 1000, neither root nor oxinetd's own user"),
            ),
            (
                1000,
                0o644,
                1001,
                Some("is owned by uid 1000, neither root nor oxinetd's own user"),
            ),
        ] {
            assert_eq!(
                distrust(&status(uid, mode), own).as_deref(),
                want,
                "uid {uid} mode {mode:o} own {own}"
            );
        }
    }
}

//! Runs oxinetd's own validation on each converted service, so what the importer writes
//! passes `oxinetd --check` whatever combination of attributes it came from. Facts of
//! the machine (users, groups, programs, /etc/services, banner files) are taken as
//! true: they are the same for xinetd and oxinetd, and `--check` reports them there.

use std::io;
use std::path::{Path, PathBuf};

use super::model::{Document, Entry, Service, Value};
use super::write;
use crate::config::{self, Host, UserEntry};

const MAIN: &str = "/import/check.toml";

/// Marks `service` not converted (`disable = true`, the reason noted) when oxinetd
/// would refuse it. A disabled service is checked as if enabled: turning it on later
/// must not reveal an error the import hid.
pub fn service(service: &mut Service, defaults: &[Entry]) {
    if service.failed.is_some() {
        return;
    }
    let mut copy = service.clone();
    copy.remove("disable");
    let defaults: Vec<Entry> = defaults
        .iter()
        .filter(|e| e.key != "disabled" && e.key != "enabled")
        .cloned()
        .collect();
    let doc = Document {
        defaults: Some(defaults),
        services: vec![copy],
        ..Document::default()
    };
    let host = Yes {
        text: write::document(&doc),
    };
    let loaded = config::load(Path::new(MAIN), &host);
    let errors: Vec<String> = loaded
        .errors
        .iter()
        .filter(|error| error.service.is_some())
        .map(|error| match &error.key {
            Some(key) => format!("key {key}: {}", error.message),
            None => error.message.clone(),
        })
        .collect();
    if !errors.is_empty() {
        let line = service.line;
        service.fail(
            line,
            format!("oxinetd would refuse it: {}", errors.join("; ")),
        );
        service.set("disable", Value::Bool(true));
        write::sort(&mut service.entries);
    }
}

/// Leaves out each `[defaults]` key oxinetd would refuse (an error there would stop
/// the whole configuration), with a note at its place.
/// `lines` says where each key was written.
pub fn defaults(entries: &mut [Entry], lines: &[(String, usize)], file: &Path) {
    let doc = Document {
        defaults: Some(entries.to_vec()),
        ..Document::default()
    };
    let host = Yes {
        text: write::document(&doc),
    };
    for error in config::load(Path::new(MAIN), &host).errors {
        let Some(key) = error.key else { continue };
        if let Some(entry) = entries
            .iter_mut()
            .find(|e| e.key == key && e.value.is_some())
        {
            entry.value = None;
            entry.notes.push(super::model::Note {
                file: file.to_path_buf(),
                line: lines
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(1, |(_, line)| *line),
                about: Some("defaults".to_string()),
                text: format!(
                    "`{key}` left out: oxinetd would refuse it: {}",
                    error.message
                ),
            });
        }
    }
}

/// A host where every user, group, program, port and file exists.
struct Yes {
    text: String,
}

impl Host for Yes {
    fn user(&self, name: &str) -> Option<UserEntry> {
        Some(UserEntry {
            name: name.to_string(),
            uid: 1000,
            gid: 1000,
            home: "/".to_string(),
            shell: "/bin/sh".to_string(),
        })
    }
    fn group(&self, _: &str) -> Option<u32> {
        Some(1000)
    }
    fn group_list(&self, _: &str, gid: u32) -> Vec<u32> {
        vec![gid]
    }
    fn service_port(&self, _: &str, _: config::spec::Protocol) -> Option<u16> {
        Some(1)
    }
    fn is_executable(&self, _: &Path) -> bool {
        true
    }
    fn euid(&self) -> u32 {
        0
    }
    fn somaxconn(&self) -> u32 {
        4096
    }
    fn environment(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        Vec::new()
    }
    /// The converted text as the main file; every other file (a banner) exists, empty.
    fn read(&self, path: &Path, _: usize) -> io::Result<Vec<u8>> {
        if path == Path::new(MAIN) {
            Ok(self.text.clone().into_bytes())
        } else {
            Ok(Vec::new())
        }
    }
    /// Only what xinetd cannot name asks for a file's status (`cwd`, and log files that
    /// exist but are no regular file): nothing to check here.
    fn status(&self, _: &Path) -> io::Result<config::FileStatus> {
        Err(io::Error::from(io::ErrorKind::NotFound))
    }
    fn rpc_number(&self, _: &str) -> Option<u32> {
        Some(100_000)
    }
    fn toml_files(&self, _: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
}

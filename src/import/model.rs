//! What an import produces before it is written: TOML documents of services, each key
//! with the notes that go above it.

use std::path::PathBuf;

/// Where a note comes from in the imported file, for `FILE:LINE: ...` on stderr.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub file: PathBuf,
    pub line: usize,
    /// `service NAME` or `defaults`; none for a note about the file itself.
    pub about: Option<String>,
    pub text: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(about) = &self.about {
            write!(f, "{about}: ")?;
        }
        f.write_str(&self.text)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// xinetd's lists (`flags`, `only_from`, ...): a TOML array of strings.
    Strs(Vec<String>),
    /// `cps = [25, 30]`.
    Ints(Vec<i64>),
}

/// One `key = value`, or (with no value) a place for notes alone, such as a dropped
/// xinetd attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Option<Value>,
    pub notes: Vec<Note>,
}

/// One `[service.NAME]` (or `[[service.NAME]]`) table.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: String,
    pub entries: Vec<Entry>,
    /// Notes written under the table header (about the service as a whole).
    pub notes: Vec<Note>,
    /// Why the service could not be converted; it is then written `disable = true`.
    pub failed: Option<String>,
    /// Where its xinetd block (or inetd.conf line) starts.
    pub file: PathBuf,
    pub line: usize,
}

impl Service {
    pub fn new(name: &str, file: PathBuf, line: usize) -> Service {
        Service {
            name: name.to_string(),
            entries: Vec::new(),
            notes: Vec::new(),
            failed: None,
            file,
            line,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|entry| entry.key == key)
            .and_then(|entry| entry.value.as_ref())
    }

    /// Sets `key`, replacing an earlier value (its notes are kept).
    pub fn set(&mut self, key: &str, value: Value) {
        match self.entries.iter_mut().find(|entry| entry.key == key) {
            Some(entry) => entry.value = Some(value),
            None => self.entries.push(Entry {
                key: key.to_string(),
                value: Some(value),
                notes: Vec::new(),
            }),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let entry = self.entries.iter_mut().find(|entry| entry.key == key)?;
        entry.value.take()
    }

    /// A note placed above `key` (which need not hold a value).
    pub fn note(&mut self, key: &str, line: usize, text: impl Into<String>) {
        let note = Note {
            file: self.file.clone(),
            line,
            about: Some(format!("service {}", self.name)),
            text: text.into(),
        };
        match self.entries.iter_mut().find(|entry| entry.key == key) {
            Some(entry) => entry.notes.push(note),
            None => self.entries.push(Entry {
                key: key.to_string(),
                value: None,
                notes: vec![note],
            }),
        }
    }

    /// A note about the whole service, under its header.
    pub fn note_service(&mut self, line: usize, text: impl Into<String>) {
        self.notes.push(Note {
            file: self.file.clone(),
            line,
            about: Some(format!("service {}", self.name)),
            text: text.into(),
        });
    }

    /// Marks the service as not converted; the first reason is the one written.
    pub fn fail(&mut self, line: usize, reason: impl Into<String>) {
        let reason = reason.into();
        if self.failed.is_none() {
            self.failed = Some(reason.clone());
        }
        self.note_service(line, format!("not converted: {reason}"));
    }

    pub fn id(&self) -> &str {
        match self.get("id") {
            Some(Value::Str(id)) => id,
            _ => &self.name,
        }
    }
}

/// One TOML file (or, without `--to`, the one document on stdout).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    /// Its name under `oxinetd.d/`; none for the top-level file.
    pub name: Option<String>,
    pub header: Vec<String>,
    /// `includedir = "oxinetd.d"` at the top (the top-level file with `--to`).
    pub includedir: Option<String>,
    pub defaults: Option<Vec<Entry>>,
    pub defaults_notes: Vec<Note>,
    pub services: Vec<Service>,
}

impl Document {
    /// Every note, in the order the document shows them.
    pub fn notes(&self) -> Vec<&Note> {
        let mut notes: Vec<&Note> = self.defaults_notes.iter().collect();
        for entry in self.defaults.iter().flatten() {
            notes.extend(&entry.notes);
        }
        for service in &self.services {
            notes.extend(&service.notes);
            for entry in &service.entries {
                notes.extend(&entry.notes);
            }
        }
        notes
    }
}

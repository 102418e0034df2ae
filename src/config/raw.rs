//! The shape of a TOML file, owned and with a line number on every key: nothing is
//! interpreted here, so that validation can report every error of a file at once.

use toml::de::{DeTable, DeValue};

/// A TOML value with only the distinctions validation needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    /// An integer as written: its digits and radix, so `0o022` stays octal.
    Integer {
        digits: String,
        radix: u32,
    },
    Boolean(bool),
    /// Only `max_load` takes one.
    Float(f64),
    Array(Vec<Value>),
    Table(Table),
    /// Datetimes: no key takes them, so only their kind is kept for the error.
    Other(&'static str),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer { .. } => "an integer",
            Value::Boolean(_) => "a boolean",
            Value::Float(_) => "a float",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
            Value::Other(kind) => kind,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer { digits, radix } => i64::from_str_radix(digits, *radix).ok(),
            _ => None,
        }
    }
}

/// One `key = value` with the line it was written on.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    pub value: Value,
}

/// A table's entries in key order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub entries: Vec<Entry>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.key == key)
    }
}

/// A TOML syntax error, with the line where the parser stopped.
#[derive(Debug, PartialEq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

pub fn parse(text: &str) -> Result<Table, SyntaxError> {
    let lines = LineIndex::new(text);
    match DeTable::parse(text) {
        Ok(document) => Ok(convert_table(document.get_ref(), &lines)),
        Err(error) => Err(SyntaxError {
            // The parser gives every error a place but one: a dotted key of more than
            // its recursion limit (80) parts, which can only be the line with the most
            // dots.
            line: error
                .span()
                .map_or_else(|| most_dotted_line(text), |span| lines.line_of(span.start)),
            message: error.message().trim().to_string(),
        }),
    }
}

/// The first of the lines with the most `.` on them.
fn most_dotted_line(text: &str) -> usize {
    let dots = |line: &str| line.bytes().filter(|&b| b == b'.').count();
    let mut best = (0, 1);
    for (at, line) in text.lines().enumerate() {
        if dots(line) > best.0 {
            best = (dots(line), at + 1);
        }
    }
    best.1
}

fn convert_table(table: &DeTable<'_>, lines: &LineIndex) -> Table {
    let entries = table
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            line: lines.line_of(key.span().start),
            value: convert_value(value.get_ref(), lines),
        })
        .collect();
    Table { entries }
}

fn convert_value(value: &DeValue<'_>, lines: &LineIndex) -> Value {
    match value {
        DeValue::String(text) => Value::String(text.to_string()),
        DeValue::Integer(integer) => Value::Integer {
            digits: integer.as_str().replace('_', ""),
            radix: integer.radix(),
        },
        DeValue::Boolean(flag) => Value::Boolean(*flag),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| convert_value(item.get_ref(), lines))
                .collect(),
        ),
        DeValue::Table(table) => Value::Table(convert_table(table, lines)),
        DeValue::Float(float) => float
            .as_str()
            .replace('_', "")
            .parse()
            .map_or(Value::Other("a float"), Value::Float),
        DeValue::Datetime(_) => Value::Other("a datetime"),
    }
}

/// Byte offset to 1-based line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        LineIndex { starts }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_lines() {
        let table = parse("a = 1\n\n[service.echo]\nport = 7\nflags = [\"IPv4\"]\n").unwrap();
        assert_eq!(table.get("a").unwrap().line, 1);
        let Value::Table(services) = &table.get("service").unwrap().value else {
            panic!("service is a table")
        };
        let Value::Table(echo) = &services.get("echo").unwrap().value else {
            panic!("echo is a table")
        };
        assert_eq!(echo.get("port").unwrap().line, 4);
        assert_eq!(echo.get("flags").unwrap().line, 5);
    }

    #[test]
    fn integers_keep_their_radix() {
        let table = parse("umask = 0o022\nn = 1_000\n").unwrap();
        assert_eq!(table.get("umask").unwrap().value.as_i64(), Some(0o22));
        assert_eq!(table.get("n").unwrap().value.as_i64(), Some(1000));
    }

    /// Past the parser's recursion limit: nested arrays and tables carry their place, a
    /// long dotted key does not and is found by its dots.
    #[test]
    fn nesting_past_the_recursion_limit_names_the_line() {
        let deep = |open: &str, close: &str| {
            format!("a = 1\n\nb = {}1{}\n", open.repeat(200), close.repeat(200))
        };
        assert_eq!(parse(&deep("[", "]")).unwrap_err().line, 3);
        assert_eq!(parse(&deep("{x=", "}")).unwrap_err().line, 3);
        let dotted = format!("a = 1 # a.b\n[t]\n{}d = 1\nz = \"...\"\n", "c.".repeat(100));
        assert_eq!(parse(&dotted).unwrap_err().line, 3);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = parse("a = 1\nb = \n").unwrap_err();
        assert_eq!(error.line, 2);
    }
}

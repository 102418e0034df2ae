//! Reads xinetd's configuration syntax (xinetd.conf(5)) into blocks of attributes,
//! as xinetd reads it: one directive or attribute per line, `#` starting a comment line.

/// `=`, `+=` or `-=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Set,
    Add,
    Remove,
}

impl Op {
    pub fn text(self) -> &'static str {
        match self {
            Op::Set => "=",
            Op::Add => "+=",
            Op::Remove => "-=",
        }
    }
}

/// `key op value value ...` inside a block.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Defaults {
        attrs: Vec<Attr>,
        line: usize,
    },
    Service {
        name: String,
        attrs: Vec<Attr>,
        line: usize,
    },
    Include {
        path: String,
        line: usize,
    },
    IncludeDir {
        path: String,
        line: usize,
    },
}

/// A line xinetd would refuse, said so and skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub text: String,
}

pub fn parse(text: &str) -> (Vec<Item>, Vec<Problem>) {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(at, line)| (at + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .peekable();
    while let Some((line, text)) = lines.next() {
        let (word, rest) = split_word(text);
        let header = match word {
            "defaults" | "service" => Some(word),
            "include" | "includedir" => {
                let path = rest.trim().to_string();
                if path.is_empty() {
                    problems.push(Problem {
                        line,
                        text: format!("`{word}` without a path: skipped"),
                    });
                } else if word == "include" {
                    items.push(Item::Include { path, line });
                } else {
                    items.push(Item::IncludeDir { path, line });
                }
                None
            }
            _ => {
                problems.push(Problem {
                    line,
                    text: format!("`{text}` is not a directive xinetd knows: skipped"),
                });
                None
            }
        };
        let Some(header) = header else { continue };
        // The brace may end the header line or stand on the next line.
        let mut rest = rest.trim();
        let opened = match rest.strip_suffix('{') {
            Some(before) => {
                rest = before.trim();
                true
            }
            None => false,
        };
        if !opened {
            match lines.peek() {
                Some((_, "{")) => {
                    lines.next();
                }
                _ => {
                    problems.push(Problem {
                        line,
                        text: format!("`{text}` is not followed by `{{`: skipped"),
                    });
                    continue;
                }
            }
        }
        let mut attrs = Vec::new();
        let mut closed = false;
        for (at, body) in lines.by_ref() {
            if body == "}" {
                closed = true;
                break;
            }
            match attribute(body, at) {
                Ok(attr) => attrs.push(attr),
                Err(text) => problems.push(Problem { line: at, text }),
            }
        }
        if !closed {
            problems.push(Problem {
                line,
                text: "block not closed by `}` before the end of the file".to_string(),
            });
        }
        if header == "defaults" {
            items.push(Item::Defaults { attrs, line });
        } else if rest.is_empty() {
            problems.push(Problem {
                line,
                text: "`service` without a name: skipped".to_string(),
            });
        } else {
            items.push(Item::Service {
                name: rest.to_string(),
                attrs,
                line,
            });
        }
    }
    (items, problems)
}

fn split_word(text: &str) -> (&str, &str) {
    match text.find(|c: char| c.is_whitespace() || c == '{') {
        Some(at) => (&text[..at], &text[at..]),
        None => (text, ""),
    }
}

fn attribute(body: &str, line: usize) -> Result<Attr, String> {
    let end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (key, rest) = body.split_at(end);
    let rest = rest.trim_start();
    let (op, values) = if let Some(values) = rest.strip_prefix("+=") {
        (Op::Add, values)
    } else if let Some(values) = rest.strip_prefix("-=") {
        (Op::Remove, values)
    } else if let Some(values) = rest.strip_prefix('=') {
        (Op::Set, values)
    } else {
        return Err(format!("`{body}` is not `attribute = value`: skipped"));
    };
    if key.is_empty() {
        return Err(format!("`{body}` has no attribute name: skipped"));
    }
    Ok(Attr {
        key: key.to_string(),
        op,
        values: values.split_whitespace().map(str::to_string).collect(),
        line,
    })
}

/// xinetd's `includedir` rule: it reads every file whose name has no dot and does not
/// end in `~`, in C-locale (byte) order.
pub fn included(mut names: Vec<String>) -> Vec<String> {
    names.retain(|name| !name.contains('.') && !name.ends_with('~'));
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(key: &str, op: Op, values: &[&str], line: usize) -> Attr {
        Attr {
            key: key.to_string(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
            line,
        }
    }

    #[test]
    fn attributes() {
        let cases: &[(&str, Result<Attr, &str>)] = &[
            ("wait = no", Ok(attr("wait", Op::Set, &["no"], 1))),
            ("wait=no", Ok(attr("wait", Op::Set, &["no"], 1))),
            (
                "log_on_success\t+= PID HOST",
                Ok(attr("log_on_success", Op::Add, &["PID", "HOST"], 1)),
            ),
            (
                "only_from -= 10.0.0.1",
                Ok(attr("only_from", Op::Remove, &["10.0.0.1"], 1)),
            ),
            ("id =", Ok(attr("id", Op::Set, &[], 1))),
            ("wait no", Err("not `attribute = value`")),
            ("= no", Err("no attribute name")),
        ];
        for (body, want) in cases {
            match (attribute(body, 1), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{body}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{body}: {got}"),
                (got, _) => panic!("{body}: {got:?}"),
            }
        }
    }

    #[test]
    fn blocks_directives_and_comments() {
        let text = "# a comment\n\
                    defaults\n{\n  instances = 25\n}\n\
                    \n\
                    service echo {\n  # inside\n  type = INTERNAL\n}   \n\
                    includedir /etc/xinetd.d\n\
                    include /etc/xinetd.local\n";
        let (items, problems) = parse(text);
        assert_eq!(problems, vec![]);
        assert_eq!(
            items,
            vec![
                Item::Defaults {
                    attrs: vec![attr("instances", Op::Set, &["25"], 4)],
                    line: 2
                },
                Item::Service {
                    name: "echo".into(),
                    attrs: vec![attr("type", Op::Set, &["INTERNAL"], 9)],
                    line: 7
                },
                Item::IncludeDir {
                    path: "/etc/xinetd.d".into(),
                    line: 11
                },
                Item::Include {
                    path: "/etc/xinetd.local".into(),
                    line: 12
                },
            ]
        );
    }

    #[test]
    fn problems_are_located() {
        let cases: &[(&str, usize, &str)] = &[
            ("frobnicate\n", 1, "not a directive"),
            ("service x\nwait = no\n", 1, "not followed by `{`"),
            ("service x\n{\nwait = no\n", 1, "not closed"),
            ("service\n{\n}\n", 1, "without a name"),
            (
                "service x\n{\nbogus line\n}\n",
                3,
                "not `attribute = value`",
            ),
            ("includedir\n", 1, "without a path"),
        ];
        for (text, line, needle) in cases {
            let (_, problems) = parse(text);
            assert!(!problems.is_empty(), "{text:?}");
            assert_eq!(problems[0].line, *line, "{text:?}");
            assert!(problems[0].text.contains(needle), "{text:?}: {problems:?}");
        }
    }

    #[test]
    fn includedir_skips_names_with_a_dot_or_a_tilde() {
        let names = [
            "echo",
            "b.rpmsave",
            "a~",
            ".hidden",
            "Zeta",
            "alpha",
            "x.conf",
        ];
        assert_eq!(
            included(names.iter().map(|n| n.to_string()).collect()),
            ["Zeta", "alpha", "echo"]
        );
    }
}

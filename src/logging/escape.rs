//! Makes any text one safe log line: the single place where control characters are
//! escaped, for stderr, log files, syslog and `--check` output alike.
//!
//! Service names, keys and values come from configuration files, and ident replies,
//! host names and tcpmux lines from peers: a newline in any of them would forge a log
//! line (`[service."e\nFAKE: forged"]`), and an escape sequence would rewrite a
//! terminal. They are escaped where the line is written, not where the text enters,
//! so no path can forget. C-style: `\n`, `\r`, `\t`; any other C0 control and DEL as
//! `\xNN`; C1 controls, the Unicode line and paragraph separators and the bidirectional
//! overrides (which can make a line read backwards) as `\u{NNNN}`. Text is UTF-8 by
//! then: a path or a peer's bytes that were not are already shown with U+FFFD.
//! A backslash is left alone: it forges nothing, and paths keep their look.

use std::borrow::Cow;

/// Whether `c` must not reach a log raw.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Appends `text` to `out`, escaped.
pub fn escape_into(out: &mut Vec<u8>, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(unsafe_char) {
        out.extend_from_slice(&rest.as_bytes()[..at]);
        let c = rest[at..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x80 => {
                let _ = std::io::Write::write_fmt(out, format_args!("\\x{:02x}", c as u32));
            }
            c => {
                let _ = std::io::Write::write_fmt(out, format_args!("\\u{{{:x}}}", c as u32));
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.extend_from_slice(rest.as_bytes());
}

/// `text`, escaped; borrowed when there is nothing to escape (nearly always).
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + 8);
    escape_into(&mut out, text);
    // Only ASCII was added to UTF-8 text.
    Cow::Owned(String::from_utf8(out).unwrap_or_default())
}

/// Escapes, in place, the bytes of `line` from `start` on (text just formatted into it).
pub fn escape_tail(line: &mut Vec<u8>, start: usize) {
    let tail = &line[start..];
    // The fast path: no byte that can begin an unsafe character (C0, DEL, C1's lead
    // byte 0xc2, 0xe2 for U+2028..U+2069).
    if !tail
        .iter()
        .any(|&b| b < 0x20 || b == 0x7f || b == 0xc2 || b == 0xe2)
    {
        return;
    }
    let tail = line.split_off(start);
    escape_into(line, &String::from_utf8_lossy(&tail));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_one_line_per_case() {
        for (text, want) in [
            ("plain text, / and \\ kept", "plain text, / and \\ kept"),
            ("e\nFAKE: forged", "e\\nFAKE: forged"),
            ("cr\r tab\t", "cr\\r tab\\t"),
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
            ("nul\0 del\x7f bell\x07", "nul\\x00 del\\x7f bell\\x07"),
            ("csi\u{9b}", "csi\\u{9b}"),
            ("line\u{2028}para\u{2029}", "line\\u{2028}para\\u{2029}"),
            ("rlo\u{202e}olleh", "rlo\\u{202e}olleh"),
            ("café ü €", "café ü €"),
            ("", ""),
        ] {
            assert_eq!(escaped(text), want, "{text:?}");
            let mut line = b"prefix ".to_vec();
            line.extend_from_slice(text.as_bytes());
            escape_tail(&mut line, 7);
            assert_eq!(line, format!("prefix {want}").as_bytes(), "{text:?}");
        }
        assert!(matches!(escaped("safe"), Cow::Borrowed(_)));
    }
}

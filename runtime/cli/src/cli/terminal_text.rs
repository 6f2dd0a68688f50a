//! Making guest-written text safe to print on the operator's terminal.
//!
//! A guest's error messages, answers, model ids and feature names reach
//! `tamma run` / `tamma inspect` output. Printed raw, a newline lets a guest forge
//! output lines and an escape sequence (`ESC[2J`) clears or rewrites the screen.
//! Control characters (C0, DEL, C1) and the Unicode bidirectional overrides
//! (which reorder what the operator reads) are written as `\u{..}` escapes.
//! JSON output needs none of this: serde escapes control characters in strings.
//! Hand-written rather than `str::escape_debug`: that also escapes quotes,
//! backslashes and every non-printable Unicode character, mangling ordinary answers.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as is.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| unsafe_char(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) && !keep(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One line of guest text (an error message, a model id): every control
/// character escaped, newlines included.
pub fn line(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// Guest prose (a completion's content, a stream delta): newlines and tabs kept,
/// every other control character escaped.
pub fn prose(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(line("plain text, ünïcode"), "plain text, ünïcode");
        assert!(matches!(line("plain"), Cow::Borrowed(_)));
        assert_eq!(line("a\nb\x1b[2Jc"), "a\\u{a}b\\u{1b}[2Jc");
        assert_eq!(
            line("\r\x7f\u{9b}\u{202e}"),
            "\\u{d}\\u{7f}\\u{9b}\\u{202e}"
        );
        assert_eq!(
            prose("two\nlines\tand \x1b[2J"),
            "two\nlines\tand \\u{1b}[2J"
        );
        assert_eq!(prose("back\rspace\x08"), "back\\u{d}space\\u{8}");
    }
}

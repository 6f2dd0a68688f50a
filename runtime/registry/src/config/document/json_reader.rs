//! JSON into the document tree.

use super::{Entry, Kind, Node, SyntaxError};

/// Parse a JSON text, or its first syntax error.
pub(super) fn parse(text: &str) -> Result<Node, SyntaxError> {
    // serde_json first, for its precise messages; then a small walker that
    // only records lines (the text is known to be valid JSON by then).
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map(|(m, _)| m.to_string())
            .unwrap_or(msg);
        return Err((Some(e.line()), msg));
    }
    let mut w = Walker {
        s: text.as_bytes(),
        text,
        i: 0,
        line: 1,
    };
    w.value()
        .ok_or((None, "unexpected JSON structure".to_string()))
}

struct Walker<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    line: usize,
}

impl Walker<'_> {
    fn ws(&mut self) {
        while let Some(&b) = self.s.get(self.i) {
            match b {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => break,
            }
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn string(&mut self) -> Option<String> {
        let start = self.i;
        self.i += 1;
        while let Some(&b) = self.s.get(self.i) {
            match b {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return serde_json::from_str(&self.text[start..self.i]).ok();
                }
                _ => self.i += 1,
            }
        }
        None
    }

    fn value(&mut self) -> Option<Node> {
        self.ws();
        let line = self.line;
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut entries = Vec::new();
                loop {
                    self.ws();
                    match self.peek()? {
                        b'}' => {
                            self.i += 1;
                            break;
                        }
                        b',' => {
                            self.i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let key_line = self.line;
                    let key = self.string()?;
                    self.ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.i += 1;
                    let node = self.value()?;
                    entries.push(Entry {
                        key,
                        line: key_line,
                        node,
                    });
                }
                Some(Node {
                    line,
                    kind: Kind::Table(entries),
                })
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    match self.peek()? {
                        b']' => {
                            self.i += 1;
                            break;
                        }
                        b',' => {
                            self.i += 1;
                            continue;
                        }
                        _ => items.push(self.value()?),
                    }
                }
                Some(Node {
                    line,
                    kind: Kind::Array(items),
                })
            }
            b'"' => Some(Node {
                line,
                kind: Kind::Scalar(serde_json::Value::String(self.string()?)),
            }),
            _ => {
                let start = self.i;
                while let Some(&b) = self.s.get(self.i) {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                let v: serde_json::Value = serde_json::from_str(&self.text[start..self.i]).ok()?;
                Some(Node {
                    line,
                    kind: Kind::Scalar(v),
                })
            }
        }
    }
}

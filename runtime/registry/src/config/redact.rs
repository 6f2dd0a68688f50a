//! serde's messages, made fit for a problem: "field" spoken as "key", and the
//! offending values it quotes hidden, since a value in the wrong place may be a
//! secret (an admin token written inline, say).
//!
//! Hand-written: serde has no option to leave values out of its messages, and
//! no crate does this one rewrite.

/// serde_json messages, with "field" spoken as "key" and values hidden.
pub(crate) fn clean_serde(msg: &str) -> String {
    redact_values(
        &msg.replace("unknown field", "unknown key")
            .replace("missing field", "missing key"),
    )
}

/// Drop the offending *values* serde quotes in its messages (`unknown variant
/// `sk-…``, `invalid type: string "…"`). Key names are kept.
pub(crate) fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(pos) = [
        "variant ",
        "string ",
        "integer ",
        "floating point ",
        "char ",
    ]
    .iter()
    .filter_map(|m| rest.find(m).map(|i| i + m.len()))
    .min()
    {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let close = match rest.chars().next() {
            Some('`') => '`',
            Some('"') => '"',
            _ => continue,
        };
        match rest[1..].find(close) {
            Some(end) => {
                out.push_str("(value hidden)");
                rest = &rest[end + 2..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_serde_messages_are_hidden_keys_are_kept() {
        assert_eq!(
            redact_values("unknown variant `sk-secret-123`, expected one of `env`, `file`"),
            "unknown variant (value hidden), expected one of `env`, `file`"
        );
        assert_eq!(
            redact_values("invalid type: string \"hunter2\", expected a table"),
            "invalid type: string (value hidden), expected a table"
        );
        assert_eq!(redact_values("unknown key `listn`"), "unknown key `listn`");
        assert_eq!(
            redact_values("invalid type: integer `42`"),
            "invalid type: integer (value hidden)"
        );
    }

    #[test]
    fn fields_are_called_keys() {
        assert_eq!(
            clean_serde("unknown field `colour`, expected `listen`"),
            "unknown key `colour`, expected `listen`"
        );
        assert_eq!(clean_serde("missing field `name`"), "missing key `name`");
    }
}

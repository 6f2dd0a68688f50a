//! Which models a key may use: route names and `<provider>/<model>` globs.
//!
//! `*` is the only wildcard (any run of characters, `/` included). Hand-written:
//! one wildcard over short strings is a dozen lines, and a glob crate would bring
//! character classes and path semantics that model names must not have.

use crate::routing::Plan;

/// Whether `text` matches `pattern`, `*` matching any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        // No `*`: the whole text had to be the prefix.
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether `patterns` allow the model `id` (a route name or `<provider>/<model>`).
pub fn allows_id(patterns: &[String], id: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, id))
}

/// Whether `patterns` allow a planned request: a route by its name (the route
/// is the grant, whatever its targets), anything else by every target's
/// `<provider>/<model>` (a bare model id is checked as the target it resolved to).
pub fn allows_plan(patterns: &[String], plan: &Plan) -> bool {
    match &plan.route {
        Some(route) => allows_id(patterns, &route.name),
        None => {
            allows_id(patterns, &plan.requested)
                || (!plan.targets.is_empty()
                    && plan
                        .targets
                        .iter()
                        .all(|t| allows_id(patterns, &format!("{}/{}", t.provider, t.model))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        for (p, t, want) in [
            ("openai/*", "openai/gpt-4o", true),
            ("openai/*", "openai/", true),
            ("openai/*", "anthropic/x", false),
            ("openai/*", "openai", false),
            ("default", "default", true),
            ("default", "default2", false),
            ("*", "anything/at/all", true),
            ("*/gpt-*-mini", "openai/gpt-4o-mini", true),
            ("*/gpt-*-mini", "openai/gpt-4o", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }
}

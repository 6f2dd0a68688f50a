//! Bounds on what a guest may declare about itself (`capabilities()`, and the
//! models of `list-models`).
//!
//! A provider's capabilities live in the host for as long as it is registered and
//! are read by every `/v1/models`, every admin answer and the model index, so an
//! untrusted guest must not be able to make them huge (an attack registered
//! 100 000 model ids aliasing one 1 KiB buffer: ≈ 100 MB once lifted).
//!
//! Two layers:
//! - while lifting: wasmtime charges "hostcall fuel" for every byte it copies out
//!   of the guest (strings by length, lists by element size), so the call runs
//!   with [`LIFT_BUDGET`] bytes of it ([`lift_budget_exhausted`] recognises the
//!   failure). That stops aliasing and gigantic lists before the host allocates.
//! - right after: [`check_capabilities`] / [`check_models`] count models,
//!   features, string lengths and total bytes against the named limits below, and
//!   say which one was passed.
//!
//! The figures are far above any real provider's (aggregators list a few hundred
//! models; ids are tens of bytes) and far below what hurts the host.

use crate::types::{Capabilities, ModelInfo};

/// Most models one provider may declare.
pub const MAX_MODELS: usize = 4096;
/// Most features one provider may declare.
pub const MAX_FEATURES: usize = 256;
/// Longest model id, bytes.
pub const MAX_MODEL_ID_BYTES: usize = 256;
/// Longest model display name, bytes.
pub const MAX_MODEL_NAME_BYTES: usize = 512;
/// Longest feature name, bytes.
pub const MAX_FEATURE_BYTES: usize = 128;
/// Most bytes all declared strings may take together (plus [`ITEM_OVERHEAD`] per
/// model and feature).
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;
/// What one model or feature counts for besides its strings (the host-side record).
pub const ITEM_OVERHEAD: usize = 64;
/// Hostcall fuel for the call that lifts capabilities or models: wasmtime counts
/// host-sized list elements (about 80 bytes per model) plus string bytes, so the
/// largest declaration within the limits above (≈ 1.4 MiB) fits with room.
pub const LIFT_BUDGET: usize = 4 * 1024 * 1024;

/// Whether a failed guest call's message says the lift ran out of [`LIFT_BUDGET`].
/// wasmtime's error type for it is private, so its (stable since 2023) text is
/// matched; a test (`capabilities_bomb_is_refused`) fails if it ever changes.
pub(crate) fn lift_budget_exhausted(message: &str) -> bool {
    message.contains("fuel allocated for hostcalls has been exhausted")
}

/// The message for a lift stopped by [`LIFT_BUDGET`].
pub(crate) fn lift_budget_message(what: &str) -> String {
    format!(
        "{what} declare more than {LIFT_BUDGET} bytes; the limit is {MAX_TOTAL_BYTES} bytes \
         (max_total_bytes)"
    )
}

/// Check a provider's declared capabilities; `Err` names the limit passed.
pub fn check_capabilities(c: &Capabilities) -> Result<(), String> {
    check_models(&c.models, "capabilities")?;
    // Embedding models (tamma:provider@0.2.0) count against the same limits.
    let embedding: Vec<ModelInfo> = c
        .embedding_models
        .iter()
        .map(|m| ModelInfo {
            id: m.id.clone(),
            name: m.name.clone(),
            context_window: 0,
            max_output_tokens: 0,
            supports_streaming: false,
            supports_images: false,
            supports_tools: false,
        })
        .collect();
    check_models(&embedding, "embedding models")?;
    if c.features.len() > MAX_FEATURES {
        return Err(over(
            "capabilities",
            "features",
            c.features.len(),
            MAX_FEATURES,
        ));
    }
    if let Some(f) = c.features.iter().find(|f| f.len() > MAX_FEATURE_BYTES) {
        return Err(too_long(
            "capabilities",
            "a feature",
            f.len(),
            MAX_FEATURE_BYTES,
        ));
    }
    let total = models_bytes(&c.models)
        + models_bytes(&embedding)
        + c.features
            .iter()
            .map(|f| f.len() + ITEM_OVERHEAD)
            .sum::<usize>();
    check_total("capabilities", total)
}

/// Check a list of models (`capabilities().models` or `list-models`); `Err` names
/// the limit passed.
pub fn check_models(models: &[ModelInfo], what: &str) -> Result<(), String> {
    if models.len() > MAX_MODELS {
        return Err(over(what, "models", models.len(), MAX_MODELS));
    }
    for m in models {
        if m.id.len() > MAX_MODEL_ID_BYTES {
            return Err(too_long(what, "a model id", m.id.len(), MAX_MODEL_ID_BYTES));
        }
        if m.name.len() > MAX_MODEL_NAME_BYTES {
            return Err(too_long(
                what,
                "a model name",
                m.name.len(),
                MAX_MODEL_NAME_BYTES,
            ));
        }
    }
    check_total(what, models_bytes(models))
}

fn models_bytes(models: &[ModelInfo]) -> usize {
    models
        .iter()
        .map(|m| m.id.len() + m.name.len() + ITEM_OVERHEAD)
        .sum()
}

fn check_total(what: &str, total: usize) -> Result<(), String> {
    if total > MAX_TOTAL_BYTES {
        return Err(format!(
            "{what} declare {total} bytes; the limit is {MAX_TOTAL_BYTES} bytes (max_total_bytes)"
        ));
    }
    Ok(())
}

fn over(what: &str, items: &str, n: usize, max: usize) -> String {
    format!("{what} declare {n} {items}; the limit is {max} (max_{items})")
}

fn too_long(what: &str, item: &str, len: usize, max: usize) -> String {
    let limit = match item {
        "a model id" => "max_model_id_bytes",
        "a model name" => "max_model_name_bytes",
        _ => "max_feature_bytes",
    };
    format!("{what} declare {item} of {len} bytes; the limit is {max} bytes ({limit})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str) -> ModelInfo {
        ModelInfo {
            id: id.into(),
            name: id.into(),
            context_window: 1,
            max_output_tokens: 1,
            supports_streaming: false,
            supports_images: false,
            supports_tools: false,
        }
    }

    fn caps(models: Vec<ModelInfo>, features: Vec<String>) -> Capabilities {
        Capabilities {
            models,
            features,
            ..Capabilities::default()
        }
    }

    #[test]
    fn ordinary_capabilities_pass() {
        let c = caps(
            (0..500).map(|i| model(&format!("model-{i}"))).collect(),
            vec!["json-mode".into()],
        );
        assert_eq!(check_capabilities(&c), Ok(()));
    }

    #[test]
    fn each_limit_is_named() {
        let many = caps((0..=MAX_MODELS).map(|_| model("m")).collect(), vec![]);
        assert!(check_capabilities(&many)
            .unwrap_err()
            .contains("(max_models)"));
        let long_id = caps(vec![model(&"x".repeat(MAX_MODEL_ID_BYTES + 1))], vec![]);
        assert!(check_capabilities(&long_id)
            .unwrap_err()
            .contains("(max_model_id_bytes)"));
        let features = caps(vec![], (0..=MAX_FEATURES).map(|_| "f".into()).collect());
        assert!(check_capabilities(&features)
            .unwrap_err()
            .contains("(max_features)"));
        let long_feature = caps(vec![], vec!["f".repeat(MAX_FEATURE_BYTES + 1)]);
        assert!(check_capabilities(&long_feature)
            .unwrap_err()
            .contains("(max_feature_bytes)"));
        let big = caps(
            (0..MAX_MODELS)
                .map(|i| model(&format!("{i:0>200}")))
                .collect(),
            vec![],
        );
        assert!(check_capabilities(&big)
            .unwrap_err()
            .contains("(max_total_bytes)"));
    }

    #[test]
    fn the_lift_budget_covers_the_largest_allowed_declaration() {
        // Host-side size of a lifted model (wasmtime charges it per element) plus
        // the most string bytes the total allows.
        let per_model = std::mem::size_of::<ModelInfo>();
        assert!(MAX_MODELS * per_model + MAX_TOTAL_BYTES < LIFT_BUDGET);
    }
}

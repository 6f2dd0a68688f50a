//! Everything that shapes one provider's sandbox: the configuration given to its
//! `initialize`, its limits, and its egress policy.

use crate::egress::EgressPolicy;
use crate::limits::Limits;

/// Settings of one provider. Cheap to share (`Arc`) between its instances.
#[derive(Clone, Default)]
pub struct ProviderSettings {
    /// Key/values passed to the guest's `initialize`. Never holds secrets: those live
    /// in the [`EgressPolicy`] and never enter the guest.
    pub config: Vec<(String, String)>,
    /// Sandbox limits.
    pub limits: Limits,
    /// Where the provider may connect, and the secrets the host adds to its requests.
    pub egress: EgressPolicy,
}

impl ProviderSettings {
    /// Settings with a configuration and limits, and no network.
    pub fn new(config: Vec<(String, String)>, limits: Limits) -> Self {
        ProviderSettings {
            config,
            limits,
            egress: EgressPolicy::default(),
        }
    }
}

impl std::fmt::Debug for ProviderSettings {
    // Configuration keys only: a value might be sensitive even though secrets are
    // meant to go through the egress policy.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field(
                "config_keys",
                &self.config.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("limits", &self.limits)
            .field("egress", &self.egress)
            .finish()
    }
}

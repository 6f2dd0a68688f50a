//! Scaffolding shared by the adversarial test guests. Each of them is an ordinary
//! provider that performs one attack in `complete`; this crate supplies the rest
//! (initialize, capabilities, export) so that each guest's file is only its attack.

pub use tamma_guest_sdk as sdk;

/// What every adversary advertises: one model, nothing special.
pub fn capabilities() -> sdk::Capabilities {
    sdk::Capabilities::from_models(vec![sdk::ModelInfo::new("adversary-1", 8192, 4096)])
}

/// Define and export a provider whose `complete` is `attack(&config, request)`.
///
/// ```ignore
/// fn attack(_: &Config, _: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
///     panic!("boom")
/// }
/// adversary::adversary!(attack);
/// ```
#[macro_export]
macro_rules! adversary {
    ($attack:path) => {
        struct Adversary {
            config: $crate::sdk::Config,
        }

        impl $crate::sdk::Provider for Adversary {
            fn initialize(config: $crate::sdk::Config) -> Result<Self, $crate::sdk::ProviderError> {
                Ok(Adversary { config })
            }

            fn capabilities(&self) -> $crate::sdk::Capabilities {
                $crate::capabilities()
            }

            fn complete(
                &mut self,
                request: $crate::sdk::CompletionRequest,
            ) -> Result<$crate::sdk::CompletionResponse, $crate::sdk::ProviderError> {
                $attack(&self.config, request)
            }
        }

        $crate::sdk::export_provider!(Adversary);
    };
}

//! Which version of the contract a component implements and which optional
//! interfaces it exports, decided once when it is loaded; and the export functions
//! of one instance, for either version.
//!
//! The world-level `ProviderPre` that `bindgen!` generates would demand every export
//! of one world at one exact version. Providers differ on both: a 0.1.0 component
//! exports `provider-api@0.1.0` only, a 0.2.0 one `provider-api@0.2.0` and maybe
//! `embeddings@0.2.0`. So the per-interface look-ups (`GuestIndices`) are used
//! directly, each only when the component has that export.

use wasmtime::component::{Component, InstancePre};
use wasmtime::Store;

use crate::bindings::{v0_1, v0_2, wit_embeddings};
use crate::host::HostState;

type ApiV01 = v0_1::exports::tamma::provider::provider_api::Guest;
type ApiV02 = v0_2::exports::tamma::provider::provider_api::Guest;
type ApiIndicesV01 = v0_1::exports::tamma::provider::provider_api::GuestIndices;
type ApiIndicesV02 = v0_2::exports::tamma::provider::provider_api::GuestIndices;

const PROVIDER_API_V01: &str = "tamma:provider/provider-api@0.1.0";
const PROVIDER_API_V02: &str = "tamma:provider/provider-api@0.2.0";
const EMBEDDINGS_V02: &str = "tamma:provider/embeddings@0.2.0";

/// The contract version a component was built against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ContractVersion {
    /// `tamma:provider@0.1.0`: chat only.
    #[serde(rename = "0.1.0")]
    V0_1,
    /// `tamma:provider@0.2.0`: chat, and embeddings when exported.
    #[serde(rename = "0.2.0")]
    V0_2,
}

impl ContractVersion {
    /// `"0.1.0"` or `"0.2.0"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1 => "0.1.0",
            ContractVersion::V0_2 => "0.2.0",
        }
    }
}

#[derive(Clone)]
enum ApiIndices {
    V0_1(ApiIndicesV01),
    V0_2(ApiIndicesV02),
}

/// `provider-api` of one instance, at the component's version.
pub(crate) enum Api {
    V0_1(ApiV01),
    V0_2(ApiV02),
}

/// The export functions of one instance.
pub(crate) struct Provider {
    pub(crate) api: Api,
    pub(crate) embeddings: Option<wit_embeddings::Guest>,
}

/// A linked component and the look-ups of its exports, ready to instantiate.
#[derive(Clone)]
pub(crate) struct ProviderPre {
    pre: InstancePre<HostState>,
    api: ApiIndices,
    embeddings: Option<wit_embeddings::GuestIndices>,
}

/// Whether `component` exports the instance `name` (semver-compatible patch
/// versions match, as wasmtime's own look-up does).
fn exports(component: &Component, name: &str) -> bool {
    component.get_export_index(None, name).is_some()
}

impl ProviderPre {
    /// Find the exports; fails when neither version of `provider-api` is exported
    /// or one lacks a function.
    pub(crate) fn new(pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        let component = pre.component();
        let api = if exports(component, PROVIDER_API_V02) {
            ApiIndices::V0_2(ApiIndicesV02::new(&pre)?)
        } else if exports(component, PROVIDER_API_V01) {
            ApiIndices::V0_1(ApiIndicesV01::new(&pre)?)
        } else {
            wasmtime::bail!(
                "the component exports neither `{PROVIDER_API_V02}` nor `{PROVIDER_API_V01}`"
            );
        };
        let embeddings = if exports(component, EMBEDDINGS_V02) {
            Some(wit_embeddings::GuestIndices::new(&pre)?)
        } else {
            None
        };
        Ok(ProviderPre {
            pre,
            api,
            embeddings,
        })
    }

    pub(crate) fn version(&self) -> ContractVersion {
        match self.api {
            ApiIndices::V0_1(_) => ContractVersion::V0_1,
            ApiIndices::V0_2(_) => ContractVersion::V0_2,
        }
    }

    pub(crate) fn has_embeddings(&self) -> bool {
        self.embeddings.is_some()
    }

    /// Instantiate and load the export functions (type-checking them against the
    /// host's bindings of the component's version).
    pub(crate) async fn instantiate_async(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Provider> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        let api = match &self.api {
            ApiIndices::V0_1(i) => Api::V0_1(i.load(&mut *store, &instance)?),
            ApiIndices::V0_2(i) => Api::V0_2(i.load(&mut *store, &instance)?),
        };
        let embeddings = match &self.embeddings {
            Some(i) => Some(i.load(&mut *store, &instance)?),
            None => None,
        };
        Ok(Provider { api, embeddings })
    }
}

/// Call a `provider-api` function on whichever version the instance has:
/// `api!(bindings, |a| a.call_complete(store, &req))`. Both versions share the data
/// types (see `bindings`), so both arms have one type.
macro_rules! api {
    ($bindings:expr, |$a:ident| $call:expr) => {
        match &$bindings.api {
            $crate::exports::Api::V0_1($a) => $call.await,
            $crate::exports::Api::V0_2($a) => $call.await,
        }
    };
}
pub(crate) use api;

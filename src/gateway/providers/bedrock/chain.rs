//! Credentials from the standard AWS chain (`aws-config`'s default chain: environment
//! variables, shared config files, web identity / IRSA, ECS and EKS Pod Identity container
//! credentials, EC2 instance metadata), cached per region for the whole process and refreshed
//! before they expire.
//!
//! The chain's own HTTP client reaches the credential endpoints (STS, `169.254.170.23`, IMDS):
//! the egress guard covers provider traffic, not the gateway's own identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::Region;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::gateway::providers::SignError;

/// Credentials expiring sooner than this are refreshed before a request is signed with them.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The chain's credentials for one region.
pub struct ChainCredentials {
    region: String,
    chain: tokio::sync::OnceCell<DefaultCredentialsChain>,
    cached: RwLock<Option<Credentials>>,
    /// One refresh at a time; requests arriving meanwhile wait for its result.
    refreshing: tokio::sync::Mutex<()>,
}

impl ChainCredentials {
    /// The process's chain for `region`, shared across configuration reloads so that a reload
    /// neither drops fresh credentials nor asks the chain again.
    pub fn for_region(region: &str) -> Arc<ChainCredentials> {
        static CHAINS: OnceLock<Mutex<HashMap<String, Arc<ChainCredentials>>>> = OnceLock::new();
        let mut chains = CHAINS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        chains
            .entry(region.to_string())
            .or_insert_with(|| {
                Arc::new(ChainCredentials {
                    region: region.to_string(),
                    chain: tokio::sync::OnceCell::new(),
                    cached: RwLock::new(None),
                    refreshing: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// Cached credentials that are good for at least `margin` more.
    fn cached(&self, margin: Duration) -> Option<Credentials> {
        let cached = self.cached.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let credentials = cached.as_ref()?;
        match credentials.expiry() {
            Some(expiry) if expiry <= SystemTime::now() + margin => None,
            _ => Some(credentials.clone()),
        }
    }

    /// Credentials to sign with: the cached ones while they have more than five minutes left,
    /// else fresh ones from the chain.
    pub async fn credentials(&self) -> Result<Credentials, SignError> {
        if let Some(credentials) = self.cached(REFRESH_BEFORE) {
            return Ok(credentials);
        }
        let _refreshing = self.refreshing.lock().await;
        if let Some(credentials) = self.cached(REFRESH_BEFORE) {
            return Ok(credentials);
        }
        let chain = self
            .chain
            .get_or_init(|| {
                DefaultCredentialsChain::builder()
                    .region(Region::new(self.region.clone()))
                    .build()
            })
            .await;
        match chain.provide_credentials().await {
            Ok(credentials) => {
                tracing::debug!(region = %self.region, access_key_id = %credentials.access_key_id(), expiry = ?credentials.expiry(), "fetched AWS credentials from the standard chain");
                *self.cached.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(credentials.clone());
                Ok(credentials)
            }
            Err(error) => {
                let why = DisplayErrorContext(&error).to_string();
                // Credentials that have not expired yet still sign; the next request tries again.
                if let Some(credentials) = self.cached(Duration::ZERO) {
                    tracing::warn!(region = %self.region, error = %why, "cannot refresh AWS credentials from the standard chain; using the current ones until they expire");
                    return Ok(credentials);
                }
                Err(SignError(format!(
                    "no AWS credentials from the standard chain (environment variables, web identity / IRSA, EKS Pod Identity, instance metadata): {why}"
                )))
            }
        }
    }
}

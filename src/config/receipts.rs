//! The flags of consent receipts (contract §4.8): the signing key and the operator's terms that
//! every record names.

use std::{path::PathBuf, sync::Arc};

use clap::Args;

use super::ConfigError;
use crate::{
    domain::Retention,
    receipts::{Receipts, Terms},
};

/// Consent receipts: off unless `--consent-signing-key` is given; the key needs the
/// controller, its contact, the storage location and the jurisdiction (records name them).
#[derive(Debug, Clone, Args)]
pub struct ReceiptArgs {
    /// Ed25519 private key (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`): every consent
    /// change gets a signed receipt. Publish the public key (`openssl pkey -pubout`).
    #[arg(long, env = "VICINITY_CONSENT_SIGNING_KEY", requires_all = [
        "consent_controller", "consent_contact", "consent_storage_location", "consent_jurisdiction",
    ])]
    pub consent_signing_key: Option<PathBuf>,
    /// The key set to publish: a JSON Web Key Set (`vicinity consent jwks`) of every public key
    /// ever used to sign receipts. Served at `GET /.well-known/vicinity-receipts.jwks.json` on
    /// the metrics listener and read again on SIGHUP with the signing key; it must hold the
    /// signing key in force, or the key (or the reload) is refused.
    #[arg(
        long,
        env = "VICINITY_CONSENT_KEY_SET",
        requires = "consent_signing_key"
    )]
    pub consent_key_set: Option<PathBuf>,
    /// The terms every record names.
    #[command(flatten)]
    pub terms: TermsArgs,
    /// The language of the privacy notice (BCP 47).
    #[arg(long, env = "VICINITY_CONSENT_LANGUAGE", default_value = "en")]
    pub consent_language: String,
    /// How a user withdraws, as records state it.
    #[arg(
        long,
        env = "VICINITY_CONSENT_WITHDRAWAL_METHOD",
        default_value = "in the app's privacy settings (WithdrawConsent)"
    )]
    pub consent_withdrawal_method: String,
}

/// The operator's terms that records name: each needs `--consent-signing-key`.
#[derive(Debug, Clone, Args)]
#[group(multiple = true, requires = "consent_signing_key")]
pub struct TermsArgs {
    /// The controller's legal name, as records state it.
    #[arg(long, env = "VICINITY_CONSENT_CONTROLLER")]
    pub consent_controller: Option<String>,
    /// How users reach the controller or its data-protection officer.
    #[arg(long, env = "VICINITY_CONSENT_CONTACT")]
    pub consent_contact: Option<String>,
    /// Where the data is stored (a country or region).
    #[arg(long, env = "VICINITY_CONSENT_STORAGE_LOCATION")]
    pub consent_storage_location: Option<String>,
    /// The jurisdiction whose law governs the processing.
    #[arg(long, env = "VICINITY_CONSENT_JURISDICTION")]
    pub consent_jurisdiction: Option<String>,
}

impl ReceiptArgs {
    /// The signer the flags give (`None`: no receipts).
    pub fn signer(&self, retention: Retention) -> Result<Option<Arc<Receipts>>, ConfigError> {
        let Some(path) = &self.consent_signing_key else {
            return Ok(None);
        };
        let given = self.terms.clone();
        let terms = Terms {
            controller: given.consent_controller.unwrap_or_default(),
            contact: given.consent_contact.unwrap_or_default(),
            language: self.consent_language.clone(),
            storage_location: given.consent_storage_location.unwrap_or_default(),
            jurisdiction: given.consent_jurisdiction.unwrap_or_default(),
            withdrawal_method: self.consent_withdrawal_method.clone(),
            retention,
        };
        let receipts = Receipts::from_files(path, self.consent_key_set.as_deref(), terms)
            .map_err(|e| ConfigError(e.to_string()))?;
        Ok(Some(Arc::new(receipts)))
    }
}

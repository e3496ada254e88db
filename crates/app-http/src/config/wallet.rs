//! Wallet and payment-provider settings: the ledger's policy and the webhook verifier.

use keel_domain::wallet::{ApprovalPolicy, Currency, WalletPolicy};
use keel_domain::webhooks::{
    DEFAULT_TOLERANCE, DEV_REVIO_PUBLIC_KEY_PEM, RevioPublicKey, StandardWebhookSecret,
    WebhookVerifier,
};
use serde::Deserialize;

use super::{ConfigError, RevioSettings};

/// Wallet settings (`[wallet]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletSettings {
    /// Currency of `GET /wallet/balance` without `currency` (`KEEL_WALLET_DEFAULT_CURRENCY`).
    pub default_currency: String,
    /// Adjustments above this many minor units need a second admin
    /// (`KEEL_WALLET_APPROVAL_THRESHOLD_MINOR`).
    pub approval_threshold_minor: i64,
    /// Pending operations older than this are reconciled (`KEEL_WALLET_RECONCILE_AFTER_SECS`).
    pub reconcile_after_secs: u64,
    /// How often reconciliation runs (`KEEL_WALLET_RECONCILE_INTERVAL_SECS`).
    pub reconcile_interval_secs: u64,
}

impl WalletSettings {
    /// The ledger's policy.
    pub fn policy(&self) -> Result<WalletPolicy, ConfigError> {
        let default_currency = Currency::parse(&self.default_currency)
            .map_err(|e| ConfigError::new("KEEL_WALLET_DEFAULT_CURRENCY", e))?;
        if self.approval_threshold_minor < 0 {
            return Err(ConfigError::new(
                "KEEL_WALLET_APPROVAL_THRESHOLD_MINOR",
                "must be 0 or more",
            ));
        }
        let after = i64::try_from(self.reconcile_after_secs)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                ConfigError::new("KEEL_WALLET_RECONCILE_AFTER_SECS", "must be 1 or more")
            })?;
        if self.reconcile_interval_secs == 0 {
            return Err(ConfigError::new(
                "KEEL_WALLET_RECONCILE_INTERVAL_SECS",
                "must be 1 or more",
            ));
        }
        Ok(WalletPolicy {
            approval: ApprovalPolicy {
                approval_threshold: self.approval_threshold_minor,
            },
            reconcile_after: chrono::Duration::seconds(after),
            default_currency,
        })
    }
}

impl RevioSettings {
    /// Whether keel uses its built-in simulator (no `KEEL_REVIO_URL`).
    pub fn simulated(&self) -> bool {
        self.url.trim().is_empty()
    }

    /// Whether webhooks are verified with the public dev key (no `KEEL_REVIO_PUBLIC_KEY`).
    pub fn dev_public_key(&self) -> bool {
        self.public_key.trim().is_empty() && self.webhook_secret.expose().is_empty()
    }

    /// The webhook verifier: the configured RSA key and/or Standard Webhooks secret; with
    /// neither, the simulator's public dev key (the simulator signs with its dev key). A real
    /// provider (`KEEL_REVIO_URL`) must come with a key of its own.
    pub fn verifier(&self) -> Result<WebhookVerifier, ConfigError> {
        let secret = self.webhook_secret.expose();
        let hmac = (!secret.is_empty())
            .then(|| StandardWebhookSecret::from_whsec(secret))
            .transpose()
            .map_err(|e| ConfigError::new("KEEL_REVIO_WEBHOOK_SECRET", e))?;
        let pem = self.public_key.trim();
        let rsa = if !pem.is_empty() {
            Some(
                RevioPublicKey::from_pem(pem)
                    .map_err(|e| ConfigError::new("KEEL_REVIO_PUBLIC_KEY", e))?,
            )
        } else if hmac.is_none() {
            if !self.simulated() {
                return Err(ConfigError::new(
                    "KEEL_REVIO_PUBLIC_KEY",
                    "a real provider (KEEL_REVIO_URL) needs KEEL_REVIO_PUBLIC_KEY or KEEL_REVIO_WEBHOOK_SECRET",
                ));
            }
            Some(
                RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PEM)
                    .map_err(|e| ConfigError::new("KEEL_REVIO_PUBLIC_KEY", e))?,
            )
        } else {
            None
        };
        Ok(WebhookVerifier {
            rsa,
            hmac,
            tolerance: DEFAULT_TOLERANCE,
        })
    }
}

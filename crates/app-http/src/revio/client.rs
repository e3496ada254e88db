//! [`RevioHttpClient`]: the payment provider port over the provider's HTTP API.

use std::time::Duration;

use async_trait::async_trait;
use keel_domain::wallet::{
    Checkout, CheckoutRequest, OperationId, PaymentProvider, PayoutRequest, ProviderError,
    ProviderStatus,
};

use super::wire::{CheckoutBody, ErrorBody, PayoutBody, StatusBody};

/// How long one provider call may take by default.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest part of an error answer quoted in a [`ProviderError`].
const MAX_QUOTED: usize = 200;

/// [`PaymentProvider`] over HTTP. Connection errors, timeouts and 5xx are
/// [`ProviderError::Unavailable`]; 4xx are [`ProviderError::Rejected`].
#[derive(Debug, Clone)]
pub struct RevioHttpClient {
    client: reqwest::Client,
    base_url: String,
}

impl RevioHttpClient {
    /// A client of the provider at `base_url` (e.g. `http://127.0.0.1:8090`), each call
    /// limited to `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request and sorts failures into the port's errors.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = request
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(describe(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let detail = error_detail(response).await;
        let message = format!("HTTP {}: {detail}", status.as_u16());
        if status.is_client_error() {
            Err(ProviderError::Rejected(message))
        } else {
            Err(ProviderError::Unavailable(message))
        }
    }
}

/// The `error` of a JSON error answer, or the start of the body.
async fn error_detail(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<ErrorBody>(&text).map_or(text, |body| body.error);
    detail.chars().take(MAX_QUOTED).collect()
}

/// A transport error with its causes (reqwest's own message hides them), without the URL.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A 2xx answer whose body does not parse: the provider misbehaves.
fn malformed(e: reqwest::Error) -> ProviderError {
    ProviderError::Unavailable(format!("malformed answer: {}", describe(e)))
}

impl RevioHttpClient {
    /// A POST carrying our operation id as `Idempotency-Key`, so a retry after a timeout never
    /// creates a second checkout or payout at the provider.
    fn idempotent_post(&self, path: &str, reference: OperationId) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("Idempotency-Key", reference.0.to_string())
    }
}

#[async_trait]
impl PaymentProvider for RevioHttpClient {
    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<Checkout, ProviderError> {
        let body = CheckoutBody {
            reference: request.reference,
            amount_minor: request.money.amount.minor(),
            currency: request.money.currency.to_string(),
        };
        let response = self
            .send(
                self.idempotent_post("/v1/checkouts", request.reference)
                    .json(&body),
            )
            .await?;
        response.json::<Checkout>().await.map_err(malformed)
    }

    async fn create_payout(&self, request: &PayoutRequest) -> Result<(), ProviderError> {
        let body = PayoutBody {
            reference: request.reference,
            amount_minor: request.money.amount.minor(),
            currency: request.money.currency.to_string(),
            destination: request.destination.clone(),
        };
        self.send(
            self.idempotent_post("/v1/payouts", request.reference)
                .json(&body),
        )
        .await?;
        Ok(())
    }

    async fn status(&self, reference: OperationId) -> Result<ProviderStatus, ProviderError> {
        let path = format!("/v1/references/{}", reference.0);
        let response = self.send(self.client.get(self.url(&path))).await?;
        let body = response.json::<StatusBody>().await.map_err(malformed)?;
        ProviderStatus::try_from(body)
    }
}

//! [`HttpWebhookSink`]: webhooks POSTed to keel over HTTP.

use std::time::Duration;

use async_trait::async_trait;
use keel_adapters_memory::revio::{SignedWebhook, WebhookSink};

use super::client::describe;

/// How long one webhook delivery may take.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// POSTs each signed webhook (its headers and raw body) to one URL, e.g.
/// `http://127.0.0.1:8080/api/v1/webhooks/revio`.
#[derive(Debug, Clone)]
pub struct HttpWebhookSink {
    client: reqwest::Client,
    url: String,
}

impl HttpWebhookSink {
    /// A sink posting to `url`, giving each delivery `timeout`.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            url: url.into(),
        })
    }
}

#[async_trait]
impl WebhookSink for HttpWebhookSink {
    async fn deliver(&self, webhook: &SignedWebhook) -> Result<u16, String> {
        let mut request = self.client.post(&self.url).body(webhook.body.clone());
        for (name, value) in &webhook.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => Err(describe(e)),
        }
    }
}

//! Where the simulator's signed webhooks go.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

/// One signed webhook delivery: headers (lowercase names) and the exact body bytes signed.
///
/// Its `Debug` shows header names only, never the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedWebhook {
    /// Headers to send, signature headers included.
    pub headers: Vec<(String, String)>,
    /// The raw JSON body.
    pub body: Vec<u8>,
}

impl SignedWebhook {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for SignedWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("SignedWebhook")
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Delivers webhooks to the receiving application (the port the simulator sends through).
#[async_trait]
pub trait WebhookSink: Send + Sync {
    /// Sends one delivery; `Ok(status)` is the receiver's HTTP status, `Err` a transport error.
    async fn deliver(&self, webhook: &SignedWebhook) -> Result<u16, String>;
}

#[derive(Debug, Default)]
struct SinkState {
    received: Vec<SignedWebhook>,
    scripted: VecDeque<u16>,
}

/// A [`WebhookSink`] in memory: records every attempt and answers scripted statuses (then 200).
/// Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryWebhookSink {
    state: Arc<Mutex<SinkState>>,
}

impl MemoryWebhookSink {
    /// A sink answering 200 to everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sink answering `statuses` in order to the first attempts, then 200.
    pub fn answering(statuses: impl IntoIterator<Item = u16>) -> Self {
        let sink = Self::new();
        sink.lock().scripted.extend(statuses);
        sink
    }

    /// Every delivery attempt so far, in order.
    pub fn received(&self) -> Vec<SignedWebhook> {
        self.lock().received.clone()
    }

    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl WebhookSink for MemoryWebhookSink {
    async fn deliver(&self, webhook: &SignedWebhook) -> Result<u16, String> {
        let mut state = self.lock();
        state.received.push(webhook.clone());
        Ok(state.scripted.pop_front().unwrap_or(200))
    }
}

//! The registry of job kinds a worker can run: name → settings and handler.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;

use super::{JobContext, JobFailure, JobHandler, JobKind, KindSettings};

/// A handler with its payload type erased, so kinds of any type share one map.
#[async_trait]
trait ErasedHandler: Send + Sync {
    async fn run(&self, ctx: &JobContext, payload: &serde_json::Value) -> Result<(), JobFailure>;
    async fn on_dead(
        &self,
        ctx: &JobContext,
        payload: &serde_json::Value,
    ) -> Result<(), JobFailure>;
}

struct Typed<J, H> {
    handler: H,
    kind: PhantomData<fn() -> J>,
}

fn decode<J: JobKind>(payload: &serde_json::Value) -> Result<J, JobFailure> {
    J::deserialize(payload)
        .map_err(|e| JobFailure::permanent(format!("payload of {} is invalid: {e}", J::KIND)))
}

#[async_trait]
impl<J: JobKind, H: JobHandler<J>> ErasedHandler for Typed<J, H> {
    async fn run(&self, ctx: &JobContext, payload: &serde_json::Value) -> Result<(), JobFailure> {
        self.handler.run(ctx, decode(payload)?).await
    }

    async fn on_dead(
        &self,
        ctx: &JobContext,
        payload: &serde_json::Value,
    ) -> Result<(), JobFailure> {
        match decode::<J>(payload) {
            Ok(job) => self.handler.on_dead(ctx, job).await,
            // A payload no handler can read has nothing to clean up.
            Err(_) => Ok(()),
        }
    }
}

/// One registered kind.
#[derive(Clone)]
pub struct RegisteredKind {
    settings: KindSettings,
    handler: Arc<dyn ErasedHandler>,
}

impl RegisteredKind {
    /// The kind's settings.
    pub fn settings(&self) -> &KindSettings {
        &self.settings
    }

    /// Runs one attempt of a job of this kind.
    pub async fn run(
        &self,
        ctx: &JobContext,
        payload: &serde_json::Value,
    ) -> Result<(), JobFailure> {
        self.handler.run(ctx, payload).await
    }

    /// Runs the kind's dead-letter hook.
    pub async fn on_dead(
        &self,
        ctx: &JobContext,
        payload: &serde_json::Value,
    ) -> Result<(), JobFailure> {
        self.handler.on_dead(ctx, payload).await
    }
}

/// The job kinds a worker pool runs. Workers claim only the kinds registered here, so nodes of
/// different versions never take jobs they cannot run.
#[derive(Clone, Default)]
pub struct JobRegistry {
    kinds: BTreeMap<&'static str, RegisteredKind>,
}

impl std::fmt::Debug for JobRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRegistry")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl JobRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for kind `J` with the kind's own settings; replaces an earlier one.
    pub fn register<J: JobKind>(&mut self, handler: impl JobHandler<J>) -> &mut Self {
        self.register_with(J::settings(), handler)
    }

    /// Registers `handler` for kind `J` with `settings` (for example from configuration).
    pub fn register_with<J: JobKind>(
        &mut self,
        settings: KindSettings,
        handler: impl JobHandler<J>,
    ) -> &mut Self {
        let handler = Arc::new(Typed {
            handler,
            kind: PhantomData::<fn() -> J>,
        });
        self.kinds
            .insert(J::KIND, RegisteredKind { settings, handler });
        self
    }

    /// The registered kind called `name`.
    pub fn get(&self, name: &str) -> Option<&RegisteredKind> {
        self.kinds.get(name)
    }

    /// Names of every registered kind.
    pub fn kind_names(&self) -> Vec<String> {
        self.kinds.keys().map(|k| (*k).to_owned()).collect()
    }

    /// Whether no kind is registered.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

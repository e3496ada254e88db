//! A shutdown signal that any number of workers can wait on, from any async runtime.

use std::future::Future;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

/// Resolves once the host asks background work to stop; cheap to clone.
#[derive(Clone)]
pub struct Shutdown(Shared<BoxFuture<'static, ()>>);

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Shutdown")
            .field(&self.is_requested())
            .finish()
    }
}

impl Shutdown {
    /// A signal that fires when `signal` completes.
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(signal.boxed().shared())
    }

    /// A signal that never fires.
    pub fn never() -> Self {
        Self::on(std::future::pending())
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.0.clone().now_or_never().is_some()
    }

    /// Completes once shutdown is requested.
    pub async fn requested(&self) {
        self.0.clone().await;
    }
}

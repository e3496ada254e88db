//! Builds and runs the HTTP server: app factory, binding, graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::background::Background;
use crate::config::{ConfigError, Settings};
use crate::http::auth::authenticate;
use crate::http::nul_guard::refuse_nul;
use crate::http::{extractors, metrics, request_context::request_context};
use crate::routes;
use crate::state::{AppState, Stores};

/// Extra routes mounted inside `/api/v1` (used by capabilities and by tests).
pub type ApiRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// How often histogram summaries are compacted (`metrics` upkeep).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Why a keel process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configured store cannot be reached or migrated.
    #[error("store unavailable at start: {0}")]
    Store(#[from] keel_domain::StoreError),
    /// The listen address cannot be bound.
    #[error("cannot bind {address}: {source}")]
    Bind {
        /// The address from `KEEL_BIND`.
        address: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The identity services could not be built.
    #[error(transparent)]
    Identity(#[from] crate::state::IdentitySetupError),
    /// Another I/O failure while starting the server.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A bound, not yet running, keel HTTP server.
pub struct Application {
    server: Server,
    port: u16,
    stores: Stores,
    state: web::Data<AppState>,
}

impl Application {
    /// Connects the stores named by `settings` and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_routes(settings, Arc::new(|_| {})).await
    }

    /// Like [`Application::build`], with `extra_api` routes mounted under `/api/v1`.
    pub async fn build_with_routes(
        settings: Settings,
        extra_api: ApiRoutes,
    ) -> Result<Self, StartupError> {
        let stores = Stores::connect(&settings).await?;
        Self::start_over(settings, stores, extra_api).await
    }

    /// Like [`Application::build_with`], but also creates the bootstrap admin first, exactly as
    /// the binary does.
    pub async fn start_over(
        settings: Settings,
        stores: Stores,
        extra_api: ApiRoutes,
    ) -> Result<Self, StartupError> {
        crate::bootstrap::ensure_admin(&settings, &stores).await?;
        Self::build_with(settings, stores, extra_api)
    }

    /// Binds a server over the given stores, with `extra_api` routes mounted under `/api/v1`.
    pub fn build_with(
        settings: Settings,
        stores: Stores,
        extra_api: ApiRoutes,
    ) -> Result<Self, StartupError> {
        let listener =
            TcpListener::bind(settings.server.bind).map_err(|source| StartupError::Bind {
                address: settings.server.bind,
                source,
            })?;
        let port = listener.local_addr()?.port();
        // The address actually bound (port 0 becomes the real port): the built-in payment
        // simulator sends its webhooks here.
        let mut settings = settings;
        settings.server.bind.set_port(port);
        // The recorder first: the rate limiter registers its counters when built.
        metrics::handle();
        let state = web::Data::new(AppState::new(settings.clone(), stores.clone())?);
        let body_limit = settings.server.body_limit_bytes;
        let state_for_tasks = state.clone();
        let mut server = HttpServer::new(move || {
            let extra_api = extra_api.clone();
            App::new()
                .app_data(state.clone())
                .configure(extractors::configure(body_limit))
                .configure(move |cfg| routes::configure(cfg, extra_api.as_ref()))
                .default_service(web::to(routes::not_found))
                .wrap(from_fn(authenticate))
                .wrap(from_fn(refuse_nul))
                .wrap(from_fn(request_context))
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // keel handles signals itself: actix treats SIGINT as a forced stop, keel drains on both.
        .disable_signals()
        .listen(listener)?;
        if settings.server.http_workers > 0 {
            server = server.workers(settings.server.http_workers);
        }
        Ok(Self {
            server: server.run(),
            port,
            stores,
            state: state_for_tasks,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Which system of record the server runs on.
    pub fn backend(&self) -> crate::state::Backend {
        self.stores.backend
    }

    /// Whether Redis is configured.
    pub fn has_redis(&self) -> bool {
        self.stores.has_redis()
    }

    /// A handle to stop the server from elsewhere (tests, signals).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT (Ctrl-C) or SIGTERM: then stops accepting, lets in-flight requests
    /// finish (up to the shutdown timeout) and closes the pools.
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        let handle = self.handle();
        let live = self.state.scoring.live.clone();
        let signals = tokio::spawn(async move {
            let signal = shutdown_signal().await;
            tracing::info!(signal, "shutdown requested: draining in-flight requests");
            // Live streams never end by themselves: close them so draining does not wait.
            live.close();
            handle.stop(true).await;
        });
        let result = self.run_until_stopped().await;
        signals.abort();
        result
    }

    /// Serves until [`ServerHandle::stop`] is called, then closes the pools.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let upkeep = tokio::spawn(async {
            let mut tick = tokio::time::interval(METRICS_UPKEEP);
            loop {
                tick.tick().await;
                metrics::handle().run_upkeep();
            }
        });
        let background = Background::start(&self.state);
        let result = self.server.await;
        upkeep.abort();
        background.stop().await;
        self.stores.close();
        tracing::info!("server stopped; pools closed");
        result
    }
}

/// Runs only the job workers and scheduler (`keel worker`) until SIGINT or SIGTERM, then lets
/// running jobs finish within their grace period, releases the rest and closes the pools.
pub async fn run_workers_until_signalled(settings: Settings) -> Result<(), StartupError> {
    if settings.database_url().is_none() {
        return Err(ConfigError::new(
            "DATABASE_URL",
            "is required by `keel worker` (in-memory jobs live inside one `keel serve`)",
        )
        .into());
    }
    if settings.jobs.workers == 0 {
        return Err(
            ConfigError::new("KEEL_WORKERS", "must be at least 1 for `keel worker`").into(),
        );
    }
    let stores = Stores::connect(&settings).await?;
    metrics::handle();
    let state = AppState::new(settings, stores.clone())?;
    let background = Background::start(&state);
    let signal = shutdown_signal().await;
    tracing::info!(signal, "shutdown requested: finishing running jobs");
    background.stop().await;
    stores.close();
    Ok(())
}

/// Resolves with the name of the first shutdown signal received.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = terminate => "SIGTERM",
    }
}

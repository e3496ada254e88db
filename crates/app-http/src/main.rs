//! The `keel` binary: `keel [serve]` and `keel migrate`.

use std::process::ExitCode;

use clap::Parser;
use keel_adapters_postgres::migrate::run_pending_migrations;
use keel_app_http::cli::{AuditCommand, Cli, Command};
use keel_app_http::state::Backend;
use keel_app_http::{Application, Settings, StartupError, telemetry};

/// jemalloc: steady under many threads, gives freed pages back, and can tell its live heap.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's live and resident bytes (its statistics refresh when the epoch advances).
#[cfg(feature = "jemalloc")]
fn jemalloc_figures() -> Option<keel_app_http::http::metrics::HeapFigures> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some(keel_app_http::http::metrics::HeapFigures {
        allocated: stats::allocated::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    #[cfg(feature = "jemalloc")]
    keel_app_http::http::metrics::set_heap_probe(jemalloc_figures);
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("keel: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Worker => keel_app_http::server::run_workers_until_signalled(settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::RotatePiiKeys { batch } => rotate_pii_keys(&settings, batch).await,
        Command::RevioSim {
            bind,
            webhook_url,
            delay_ms,
        } => keel_app_http::revio::run_dev_simulator(bind, webhook_url, delay_ms)
            .await
            .map_err(StartupError::Io),
        Command::Audit(AuditCommand::Verify) => match verify_audit(&settings).await {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "keel failed");
            eprintln!("keel: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), StartupError> {
    for name in settings.dev_default_secrets() {
        tracing::warn!(
            setting = name,
            "DEV-ONLY DEFAULT SECRET IN USE: set {name} before handling real data"
        );
    }
    let bind = settings.server.bind;
    let app = Application::build(settings).await?;
    match app.backend() {
        Backend::Memory => tracing::warn!(
            "no DATABASE_URL: serving from IN-MEMORY stores (the embedded default); nothing survives a restart"
        ),
        Backend::Postgres => tracing::info!("serving from Postgres"),
    }
    if app.has_redis() {
        tracing::info!("Redis configured: rate limits and caches are shared across nodes");
    }
    tracing::info!(address = %bind, port = app.port(), "keel listening on http://{}:{}", bind.ip(), app.port());
    app.run_until_signalled().await?;
    Ok(())
}

/// Re-encrypts stored PII to the active key and prints what it did.
async fn rotate_pii_keys(settings: &Settings, batch: u32) -> Result<(), StartupError> {
    let stores = keel_app_http::state::Stores::connect(settings).await?;
    let identity = keel_app_http::state::Identity::from_settings(settings)?;
    let report = keel_domain::identity::pii_rotation::rotate_pii_keys(
        stores.users.as_ref(),
        identity.cipher.as_ref(),
        batch,
    )
    .await
    .map_err(|e| StartupError::Io(std::io::Error::other(e.to_string())))?;
    println!(
        "keel: {} PII values re-encrypted to key {}, {} changed concurrently, {} unreadable (key missing from KEEL_PII_KEYS or damaged)",
        report.rotated,
        identity.cipher.active_key_id(),
        report.skipped,
        report.unreadable
    );
    Ok(())
}

/// Prints the chain report; `Ok(false)` when the chain is broken.
async fn verify_audit(settings: &Settings) -> Result<bool, StartupError> {
    let stores = keel_app_http::state::Stores::connect(settings).await?;
    let report = stores.audit.verify().await?;
    match &report.broken {
        None => println!("keel: audit chain intact ({} entries)", report.checked),
        Some(b) => println!(
            "keel: audit chain BROKEN at entry {} ({:?}); {} entries before it are intact",
            b.seq, b.reason, report.checked
        ),
    }
    Ok(report.is_intact())
}

async fn migrate(settings: &Settings) -> Result<(), StartupError> {
    let Some(url) = settings.database_url() else {
        return Err(StartupError::Config(keel_app_http::config::ConfigError {
            key: "DATABASE_URL".into(),
            reason: "is required by `keel migrate`".into(),
        }));
    };
    let applied = run_pending_migrations(url).await?;
    if applied.is_empty() {
        println!("keel: database is up to date");
    } else {
        for version in &applied {
            println!("keel: applied migration {version}");
        }
    }
    Ok(())
}

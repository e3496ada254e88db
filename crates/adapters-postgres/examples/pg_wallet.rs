//! The wallet use cases on Postgres, without a web server: a `WalletService` over
//! `PgLedgerStore` and the simulated Revio, whose signed webhooks are verified and applied in
//! process. A deposit settles by webhook, a withdrawal is held and its payout job (queued in the
//! same transaction) pays it out, every webhook is delivered twice (the second is a
//! `Duplicate`), and the ledger check ends it. Runs in a scratch database, migrated with
//! `run_pending_migrations` and dropped afterwards, so re-runs start clean.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run -p keel-adapters-postgres --example pg_wallet`

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use keel_adapters_memory::revio::{
    SignedWebhook, SimBehaviour, SimSigning, SimulatedRevio, WebhookSink,
};
use keel_adapters_postgres::migrate::run_pending_migrations;
use keel_adapters_postgres::testkit::with_database;
use keel_adapters_postgres::{PgJobQueue, PgLedgerStore, PgPool};
use keel_domain::SystemClock;
use keel_domain::identity::user::UserId;
use keel_domain::jobs::{JobFilter, JobKind, JobQueue};
use keel_domain::wallet::{
    ApprovalPolicy, Currency, EventOutcome, Money, ProviderEvent, SendPayout, WalletPolicy,
    WalletService,
};
use keel_domain::webhooks::{
    DEFAULT_TOLERANCE, DEV_REVIO_PUBLIC_KEY_PEM, RevioPublicKey, WebhookVerifier,
};
use tokio::sync::mpsc;
use uuid::Uuid;

type Error = Box<dyn std::error::Error>;

/// The webhook endpoint, in process: verify, parse, apply, report the outcome.
struct VerifyingSink {
    verifier: WebhookVerifier,
    wallet: OnceLock<WalletService>,
    outcomes: mpsc::UnboundedSender<(String, EventOutcome)>,
}

#[async_trait]
impl WebhookSink for VerifyingSink {
    async fn deliver(&self, webhook: &SignedWebhook) -> Result<u16, String> {
        let lookup = |name: &str| webhook.header(name).map(str::to_owned);
        let verified = self.verifier.verify(&lookup, &webhook.body, Utc::now());
        if verified.is_err() {
            return Ok(401);
        }
        let Ok(event) = serde_json::from_slice::<ProviderEvent>(&webhook.body) else {
            return Ok(400);
        };
        let wallet = self.wallet.get().ok_or("the wallet is not wired yet")?;
        let Ok(outcome) = wallet.handle_event(&event).await else {
            return Ok(500);
        };
        let event_type = event.event_type.as_str().to_owned();
        let _ = self.outcomes.send((event_type, outcome));
        Ok(200)
    }
}

/// Waits (bounded) for the sink to apply the next `n` webhooks, and prints them.
async fn webhooks(
    rx: &mut mpsc::UnboundedReceiver<(String, EventOutcome)>,
    n: usize,
) -> Result<(), Error> {
    for _ in 0..n {
        let next = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?;
        let (event_type, outcome) = next.ok_or("the sink is gone")?;
        println!("  webhook {event_type}: signature verified, {outcome:?}");
    }
    Ok(())
}

/// Prints `user`'s balance in the default currency (ZAR).
async fn show(wallet: &WalletService, user: UserId, label: &str) -> Result<(), Error> {
    let b = wallet.balance(user, None).await?;
    let major = |minor: i64| format!("{}.{:02}", minor / 100, minor % 100);
    let (available, held, total) = (major(b.available), major(b.held), major(b.total));
    println!("  balance {label}: available {available} / held {held} / total {total} ZAR");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        println!(
            "DATABASE_URL is not set: nothing to do. Usage: DATABASE_URL=postgres://user@host:5432/postgres \
             cargo run -p keel-adapters-postgres --example pg_wallet"
        );
        return Ok(());
    };
    let name = format!("keel_example_wallet_{}", Uuid::new_v4().simple());
    let mut admin = AsyncPgConnection::establish(&admin_url).await?;
    let create = format!("CREATE DATABASE {name}");
    admin.batch_execute(&create).await?;
    println!("scratch database {name}");
    let result = run(&with_database(&admin_url, &name)).await;
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    admin.batch_execute(&drop).await?;
    println!("dropped {name}");
    result
}

async fn run(url: &str) -> Result<(), Error> {
    let applied = run_pending_migrations(url).await?;
    println!("applied {} migration(s)", applied.len());
    let pool = PgPool::connect(url, 4).await?;
    let (outcomes, mut events) = mpsc::unbounded_channel();
    let zar = |minor| Money::parse(minor, "ZAR");
    let verifier = WebhookVerifier {
        rsa: Some(RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PEM)?),
        hmac: None,
        tolerance: DEFAULT_TOLERANCE,
    };
    let wallet = OnceLock::new();
    let sink = Arc::new(VerifyingSink {
        verifier,
        wallet,
        outcomes,
    });
    // Every webhook is delivered twice with the same event id, as real providers sometimes do.
    let mut behaviour = SimBehaviour::with_delay_ms(20);
    behaviour.duplicate_webhooks = true;
    let revio = SimulatedRevio::new(sink.clone(), behaviour, SimSigning::dev_rsa()?);
    let policy = WalletPolicy {
        approval: ApprovalPolicy {
            approval_threshold: 100_000,
        },
        reconcile_after: chrono::Duration::minutes(10),
        default_currency: Currency::parse("ZAR")?,
    };
    let store = Arc::new(PgLedgerStore::new(pool.clone()));
    let wallet = WalletService::new(store, Arc::new(revio), Arc::new(SystemClock), policy);
    let _ = sink.wallet.set(wallet.clone());
    let user = UserId::new_random();

    let opened = wallet.deposit(user, zar(50_000)?, None).await?;
    let checkout = opened.checkout.checkout_reference;
    println!("deposit 500.00 ZAR: checkout {checkout}");
    webhooks(&mut events, 2).await?;
    show(&wallet, user, "after deposit").await?;

    let placed = wallet.withdraw(user, zar(20_000)?, "acct_1", None).await?;
    println!("withdraw 200.00 ZAR: {:?}", placed.operation.status);
    show(&wallet, user, "with the hold").await?;
    // The payout job committed with the hold, in the same transaction.
    let filter = JobFilter {
        kind: Some(SendPayout::KIND.into()),
        limit: 10,
        ..Default::default()
    };
    for job in PgJobQueue::new(pool.clone()).list(&filter).await? {
        // What the `wallet.payout` job's handler does with its payload.
        let payout: SendPayout = serde_json::from_value(job.payload)?;
        wallet.send_payout(payout.operation_id).await?;
        println!("payout job {}: sent to the provider", job.kind);
    }
    webhooks(&mut events, 2).await?;
    let paid = wallet.operation(user, placed.operation.id).await?;
    println!("withdrawal is {:?}", paid.status);
    show(&wallet, user, "after payout").await?;

    let report = wallet.verify().await?;
    let (accounts, transactions) = (report.accounts, report.transactions);
    let consistent = report.is_consistent();
    println!("verify: {accounts} accounts, {transactions} transactions, consistent = {consistent}");
    pool.close();
    if !consistent {
        return Err(format!("ledger inconsistent: {report:?}").into());
    }
    Ok(())
}

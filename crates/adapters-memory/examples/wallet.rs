//! The wallet use cases embedded without a web server: a `WalletService` over the memory ledger
//! and the simulated Revio, whose signed webhooks go to an in-process sink that verifies them
//! with the dev public key and applies them with `handle_event`. Shows a deposit settled by
//! webhook, a withdrawal held then paid out by its payout job, a duplicated webhook, a
//! reversal, and the ledger check.
//!
//! `cargo run -p keel-adapters-memory --example wallet`

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use keel_adapters_memory::revio::{
    SignedWebhook, SimBehaviour, SimSigning, SimulatedRevio, WebhookSink,
};
use keel_adapters_memory::{MemoryJobQueue, MemoryLedgerStore};
use keel_domain::SystemClock;
use keel_domain::identity::user::UserId;
use keel_domain::jobs::{JobFilter, JobKind, JobQueue};
use keel_domain::wallet::{
    ApprovalPolicy, Currency, EventOutcome, Money, ProviderEvent, SendPayout, WalletError,
    WalletPolicy, WalletService,
};
use keel_domain::webhooks::{
    DEFAULT_TOLERANCE, DEV_REVIO_PUBLIC_KEY_PEM, RevioPublicKey, WebhookVerifier,
};
use tokio::sync::mpsc;

type Error = Box<dyn std::error::Error>;

/// The webhook endpoint, in process: verify the signature over the raw body, parse the event,
/// apply it to the wallet, and report what became of it.
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

/// Waits (bounded) for the sink to apply the next webhook, and prints it.
async fn webhook(rx: &mut mpsc::UnboundedReceiver<(String, EventOutcome)>) -> Result<(), Error> {
    let next = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?;
    let (event_type, outcome) = next.ok_or("the sink is gone")?;
    println!("  webhook {event_type}: signature verified, {outcome:?}");
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
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
    let fast = SimBehaviour::with_delay_ms(20);
    let revio = SimulatedRevio::new(sink.clone(), fast.clone(), SimSigning::dev_rsa()?);
    let policy = WalletPolicy {
        approval: ApprovalPolicy {
            approval_threshold: 100_000,
        },
        reconcile_after: chrono::Duration::minutes(10),
        default_currency: Currency::parse("ZAR")?,
    };
    let jobs = MemoryJobQueue::new();
    let store = Arc::new(MemoryLedgerStore::new(jobs.clone()));
    let provider = Arc::new(revio.clone());
    let wallet = WalletService::new(store, provider, Arc::new(SystemClock), policy);
    let _ = sink.wallet.set(wallet.clone());
    let user = UserId::new_random();

    let opened = wallet.deposit(user, zar(50_000)?, None).await?;
    let checkout = opened.checkout.checkout_reference;
    println!("deposit 500.00 ZAR: checkout {checkout}");
    webhook(&mut events).await?;
    show(&wallet, user, "after deposit").await?;

    let placed = wallet.withdraw(user, zar(20_000)?, "acct_1", None).await?;
    println!("withdraw 200.00 ZAR: {:?}", placed.operation.status);
    show(&wallet, user, "with the hold").await?;
    let filter = JobFilter {
        kind: Some(SendPayout::KIND.into()),
        limit: 10,
        ..Default::default()
    };
    for job in jobs.list(&filter).await? {
        // What the `wallet.payout` job's handler does with its payload.
        let payout: SendPayout = serde_json::from_value(job.payload)?;
        wallet.send_payout(payout.operation_id).await?;
        println!("payout job {}: sent to the provider", job.kind);
    }
    webhook(&mut events).await?;
    let paid = wallet.operation(user, placed.operation.id).await?;
    println!("withdrawal is {:?}", paid.status);
    show(&wallet, user, "after payout").await?;

    revio.set_behaviour(SimBehaviour {
        duplicate_webhooks: true,
        ..fast.clone()
    });
    let twice = wallet.deposit(user, zar(10_000)?, None).await?;
    println!("deposit 100.00 ZAR, its webhook delivered twice (same event id):");
    webhook(&mut events).await?;
    webhook(&mut events).await?;
    revio.set_behaviour(fast);
    show(&wallet, user, "after the duplicate").await?;

    let settled = wallet.operation(user, twice.operation.id).await?;
    let deposit_tx = settled.transaction_id.ok_or("no transaction")?;
    let reversal = wallet.reverse(deposit_tx, "chargeback", None).await?;
    let direction = reversal.operation.direction;
    println!("reversal of the 100.00 deposit: {direction:?}");
    match wallet.reverse(deposit_tx, "again", None).await {
        Err(WalletError::AlreadyReversed) => println!("reversing it again: already reversed"),
        other => return Err(format!("unexpected second reversal: {other:?}").into()),
    }
    show(&wallet, user, "after the reversal").await?;

    let report = wallet.verify().await?;
    let (accounts, transactions) = (report.accounts, report.transactions);
    let consistent = report.is_consistent();
    println!("verify: {accounts} accounts, {transactions} transactions, consistent = {consistent}");
    if !consistent {
        return Err(format!("ledger inconsistent: {report:?}").into());
    }
    Ok(())
}

//! A deposit through the simulated Revio: open a checkout, wait for the signed webhook, and
//! ask the provider for the reference's status.
//!
//! `cargo run -p keel-adapters-memory --example revio_sim`

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keel_adapters_memory::revio::{
    SignedWebhook, SimBehaviour, SimSigning, SimulatedRevio, WebhookSink,
};
use keel_domain::wallet::{CheckoutRequest, Money, OperationId, PaymentProvider};
use uuid::Uuid;

/// Prints each webhook (headers without the signature, and the body) and accepts it.
struct PrintingSink;

#[async_trait]
impl WebhookSink for PrintingSink {
    async fn deliver(&self, webhook: &SignedWebhook) -> Result<u16, String> {
        println!("webhook received:");
        for (name, value) in &webhook.headers {
            let shown = if name.ends_with("signature") {
                "<signature>"
            } else {
                value
            };
            println!("  {name}: {shown}");
        }
        println!("  body: {}", String::from_utf8_lossy(&webhook.body));
        Ok(200)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let revio = SimulatedRevio::new(
        Arc::new(PrintingSink),
        SimBehaviour::with_delay_ms(100),
        SimSigning::dev_rsa()?,
    );
    let request = CheckoutRequest {
        reference: OperationId(Uuid::now_v7()),
        money: Money::parse(5_000, "ZAR")?,
    };
    let checkout = revio.create_checkout(&request).await?;
    println!("checkout opened: {checkout:?}");
    println!("status now: {:?}", revio.status(request.reference).await?);

    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("status later: {:?}", revio.status(request.reference).await?);
    Ok(())
}

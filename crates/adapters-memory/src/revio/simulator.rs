//! [`SimulatedRevio`]: the provider port, completing items in background tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use keel_domain::wallet::{
    Checkout, CheckoutRequest, Money, OperationId, PaymentProvider, PayoutRequest, ProviderError,
    ProviderEvent, ProviderEventData, ProviderStatus,
};
use tokio::runtime::Handle;
use uuid::Uuid;

use super::behaviour::{SimBehaviour, SimCalls, SimOutcome};
use super::delivery::{RetryPolicy, deliver};
use super::records::{ItemKind, Record};
use super::signing::SimSigning;
use super::sink::WebhookSink;

struct Shared {
    records: Mutex<HashMap<OperationId, Record>>,
    behaviour: Mutex<SimBehaviour>,
    signing: SimSigning,
    sink: Arc<dyn WebhookSink>,
    retry: RetryPolicy,
    runtime: Option<Handle>,
}

/// A simulated Revio: keeps every checkout and payout by reference (creation is idempotent),
/// completes each after the behaviour's delay and reports it through signed webhooks.
///
/// Clones share the same records. Needs a Tokio runtime: completions run on the runtime that
/// built it (or the caller's, when built outside one).
#[derive(Clone)]
pub struct SimulatedRevio {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimulatedRevio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedRevio")
            .field("behaviour", &self.behaviour())
            .finish_non_exhaustive()
    }
}

/// What a completion task needs, captured at creation.
struct Completion {
    reference: OperationId,
    succeed: bool,
    delay: Duration,
    behaviour: SimBehaviour,
}

impl SimulatedRevio {
    /// A simulator sending webhooks to `sink`, signed with `signing`, retried by default policy.
    pub fn new(sink: Arc<dyn WebhookSink>, behaviour: SimBehaviour, signing: SimSigning) -> Self {
        Self {
            shared: Arc::new(Shared {
                records: Mutex::new(HashMap::new()),
                behaviour: Mutex::new(behaviour),
                signing,
                sink,
                retry: RetryPolicy::default(),
                runtime: Handle::try_current().ok(),
            }),
        }
    }

    /// The same simulator with another delivery retry policy (call before sharing it).
    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        match Arc::try_unwrap(self.shared) {
            Ok(mut shared) => {
                shared.retry = retry;
                Self {
                    shared: Arc::new(shared),
                }
            }
            Err(shared) => Self { shared },
        }
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> SimBehaviour {
        lock(&self.shared.behaviour).clone()
    }

    /// Replaces the behaviour; items already created keep the one they were created under.
    pub fn set_behaviour(&self, behaviour: SimBehaviour) {
        *lock(&self.shared.behaviour) = behaviour;
    }

    /// Applies the `calls` knob; `Ok` with the behaviour when the call may proceed.
    async fn call(&self) -> Result<SimBehaviour, ProviderError> {
        let behaviour = self.behaviour();
        match behaviour.calls {
            SimCalls::Ok => Ok(behaviour),
            SimCalls::Unavailable => Err(ProviderError::Unavailable("simulated outage".to_owned())),
            SimCalls::Reject => Err(ProviderError::Rejected("simulated rejection".to_owned())),
            SimCalls::Timeout => {
                tokio::time::sleep(Duration::from_millis(behaviour.timeout_ms)).await;
                Err(ProviderError::Unavailable("simulated timeout".to_owned()))
            }
        }
    }

    /// Records a new item, or returns the existing one for this reference (`None` = new).
    fn record(
        &self,
        reference: OperationId,
        kind: ItemKind,
        money: Money,
    ) -> Result<Option<Record>, ProviderError> {
        let mut records = lock(&self.shared.records);
        if let Some(existing) = records.get(&reference) {
            let same_request = existing.money == money
                && std::mem::discriminant(&existing.kind) == std::mem::discriminant(&kind)
                && match (&existing.kind, &kind) {
                    (ItemKind::Payout { destination: a }, ItemKind::Payout { destination: b }) => {
                        a == b
                    }
                    _ => true,
                };
            return if same_request {
                Ok(Some(existing.clone()))
            } else {
                Err(ProviderError::Rejected(
                    "reference already used for another request".to_owned(),
                ))
            };
        }
        records.insert(
            reference,
            Record {
                kind,
                money,
                status: ProviderStatus::Pending,
            },
        );
        Ok(None)
    }

    /// Schedules the completion of a new item.
    fn schedule(&self, reference: OperationId, behaviour: SimBehaviour) {
        let completion = Completion {
            reference,
            succeed: behaviour.outcome == SimOutcome::Succeed,
            delay: Duration::from_millis(behaviour.delay_ms),
            behaviour,
        };
        let simulator = self.clone();
        let task = async move { simulator.complete(completion).await };
        match &self.shared.runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// Waits, completes the item and sends its webhooks.
    async fn complete(self, completion: Completion) {
        tokio::time::sleep(completion.delay).await;
        let Some(record) = self.finish(completion.reference, completion.succeed) else {
            return;
        };
        let behaviour = &completion.behaviour;
        if !behaviour.send_webhooks {
            return;
        }
        let mut events = vec![event(completion.reference, &record, completion.succeed)];
        if behaviour.out_of_order {
            events.push(event(completion.reference, &record, !completion.succeed));
        }
        let copies = if behaviour.duplicate_webhooks { 2 } else { 1 };
        for event in events {
            let Ok(body) = serde_json::to_vec(&event) else {
                tracing::error!(event_id = %event.id, "revio simulator: cannot encode an event");
                continue;
            };
            for _ in 0..copies {
                deliver(
                    self.shared.sink.as_ref(),
                    &self.shared.signing,
                    self.shared.retry,
                    &event.id,
                    &body,
                )
                .await;
            }
        }
    }

    /// Marks the item succeeded or failed; its record after that.
    fn finish(&self, reference: OperationId, succeed: bool) -> Option<Record> {
        let mut records = lock(&self.shared.records);
        let record = records.get_mut(&reference)?;
        record.status = if succeed {
            ProviderStatus::Succeeded {
                money: record.money,
            }
        } else {
            ProviderStatus::Failed {
                reason: record.kind.failure_reason().to_owned(),
            }
        };
        Some(record.clone())
    }
}

/// A new event (fresh id) reporting `record` as succeeded or failed.
fn event(reference: OperationId, record: &Record, succeeded: bool) -> ProviderEvent {
    ProviderEvent {
        id: format!("evt_{}", Uuid::now_v7().simple()),
        event_type: record.kind.event(succeeded),
        created_at: Utc::now(),
        data: ProviderEventData {
            reference,
            amount_minor: record.money.amount.minor(),
            currency: record.money.currency,
            reason: (!succeeded).then(|| record.kind.failure_reason().to_owned()),
        },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl PaymentProvider for SimulatedRevio {
    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<Checkout, ProviderError> {
        let behaviour = self.call().await?;
        let checkout_reference = format!("chk_{}", Uuid::now_v7().simple());
        let checkout = Checkout {
            checkout_url: Some(format!("https://revio.invalid/pay/{checkout_reference}")),
            checkout_reference,
        };
        let kind = ItemKind::Deposit(checkout.clone());
        match self.record(request.reference, kind, request.money)? {
            Some(Record {
                kind: ItemKind::Deposit(existing),
                ..
            }) => Ok(existing),
            Some(_) => Err(ProviderError::Rejected(
                "reference already used for a payout".to_owned(),
            )),
            None => {
                self.schedule(request.reference, behaviour);
                Ok(checkout)
            }
        }
    }

    async fn create_payout(&self, request: &PayoutRequest) -> Result<(), ProviderError> {
        let behaviour = self.call().await?;
        let kind = ItemKind::Payout {
            destination: request.destination.clone(),
        };
        if self
            .record(request.reference, kind, request.money)?
            .is_none()
        {
            self.schedule(request.reference, behaviour);
        }
        Ok(())
    }

    async fn status(&self, reference: OperationId) -> Result<ProviderStatus, ProviderError> {
        self.call().await?;
        Ok(lock(&self.shared.records)
            .get(&reference)
            .map_or(ProviderStatus::Unknown, |r| r.status.clone()))
    }
}

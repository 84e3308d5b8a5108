//! Runs a handler over a topic as a consumer group, at least once: a batch is committed
//! only after every record in it was handled or dead-lettered, so a consumer that dies
//! mid-batch sees the uncommitted records again (handlers are idempotent on the event id).
//! A transient failure is retried with backoff; a record that cannot be decoded, that the
//! handler rejects, or that keeps failing goes to `<topic>.dlq` and the partition moves on.

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    envelope::Envelope,
    port::{EventBus, Message, Record, Subscription},
};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying: a store or a peer was briefly unavailable.
    #[error("transient: {0}")]
    Transient(String),
    /// Never going to work: straight to the dead-letter topic.
    #[error("rejected: {0}")]
    Rejected(String),
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError>;
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub batch: usize,
    pub poll_wait: Duration,
    /// Attempts at one record before it is dead-lettered.
    pub max_attempts: u32,
    /// The first retry's pause; each further retry doubles it.
    pub backoff: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            batch: 200,
            poll_wait: Duration::from_secs(1),
            max_attempts: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// A dead letter's id is derived from where the record was, so a record dead-lettered
/// twice (after a crash) is one event in the dead-letter topic.
fn dead_letter(record: &Record) -> Message {
    let origin = format!("{}/{}/{}", record.topic, record.partition, record.offset);
    Message {
        topic: dead_letter_topic(&record.topic),
        key: record.key.clone(),
        id: Some(Uuid::new_v5(&Uuid::NAMESPACE_OID, origin.as_bytes())),
        value: record.value.clone(),
    }
}

pub struct Consumer {
    pub bus: Arc<dyn EventBus>,
    pub topic: String,
    pub group: String,
    pub handler: Arc<dyn Handler>,
    pub options: ConsumerOptions,
}

impl Consumer {
    /// Runs the consumer in the background until the handle stops it.
    pub fn spawn(self) -> kernel::background::Background {
        kernel::background::Background::spawn(|stop| self.run(stop))
    }

    /// Consumes until `stop` resolves; the batch in hand is finished and committed first.
    pub async fn run(self, stop: impl Future<Output = ()> + Send) {
        tokio::pin!(stop);
        let mut pause = self.options.backoff;
        loop {
            let subscription = tokio::select! {
                () = &mut stop => return,
                subscribed = self.bus.subscribe(&self.topic, &self.group) => subscribed,
            };
            let mut subscription = match subscription {
                Ok(subscription) => subscription,
                Err(error) => {
                    tracing::warn!(topic = %self.topic, group = %self.group, %error, "cannot subscribe yet");
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            pause = self.options.backoff;
            loop {
                let polled = tokio::select! {
                    () = &mut stop => return,
                    polled = subscription.poll(self.options.batch, self.options.poll_wait) => polled,
                };
                match polled {
                    Ok(records) if records.is_empty() => {}
                    Ok(records) => {
                        if let Err(error) = self.handle_batch(subscription.as_mut(), &records).await
                        {
                            tracing::warn!(topic = %self.topic, group = %self.group, %error, "batch not committed; it will be redelivered");
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(topic = %self.topic, group = %self.group, %error, "poll failed; resubscribing");
                        break;
                    }
                }
            }
        }
    }

    async fn handle_batch(
        &self,
        subscription: &mut dyn Subscription,
        records: &[Record],
    ) -> Result<(), crate::BusError> {
        for record in records {
            if let Err(reason) = self.handle_record(record).await {
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %reason, "dead-lettering a record");
                self.bus.publish(&[dead_letter(record)]).await?;
                metrics::counter!("events_dead_lettered_total", "topic" => record.topic.clone())
                    .increment(1);
            }
        }
        subscription.commit(records).await
    }

    /// Handles one record, retrying transient failures; the error is why it must be
    /// dead-lettered.
    async fn handle_record(&self, record: &Record) -> Result<(), String> {
        let envelope = record.envelope().map_err(|error| error.to_string())?;
        let span = tracing::info_span!(
            "handle event",
            event_type = %envelope.event_type,
            event_id = %envelope.id,
            group = %self.group,
        );
        if let Some(traceparent) = envelope.headers.get(crate::envelope::TRACEPARENT) {
            kernel::telemetry::follow_traceparent(&span, traceparent);
        }
        self.handle_with_retries(&envelope).instrument(span).await
    }

    async fn handle_with_retries(&self, envelope: &Envelope) -> Result<(), String> {
        let mut attempt = 1;
        loop {
            match self.handler.handle(envelope).await {
                Ok(()) => return Ok(()),
                Err(HandlerError::Rejected(reason)) => return Err(reason),
                Err(HandlerError::Transient(reason)) if attempt >= self.options.max_attempts => {
                    return Err(format!("still failing after {attempt} attempts: {reason}"));
                }
                Err(HandlerError::Transient(reason)) => {
                    let pause = self.options.backoff * 2_u32.saturating_pow(attempt - 1);
                    tracing::debug!(event_id = %envelope.id, attempt, %reason, "retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
            }
        }
    }
}

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

/// A handler that takes a poll's records together, for consumers whose store is fastest
/// fed in batches (the analytics warehouse counts thousands of plays per insert).
#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles the envelopes (in record order) and returns those it rejects, by event id
    /// with the reason, which go to the dead-letter topic. An error is transient: the whole
    /// batch is retried with backoff until it passes, never dead-lettered, because a store
    /// outage fails every record alike and nothing may be lost to it.
    async fn handle_batch(&self, envelopes: &[Envelope]) -> Result<Vec<(Uuid, String)>, String>;
}

/// How a consumer hands records to its handler.
#[derive(Clone)]
pub enum Handling {
    /// One record at a time, each retried on its own.
    Each(Arc<dyn Handler>),
    /// A poll's records at once.
    Batch(Arc<dyn BatchHandler>),
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
    pub handler: Handling,
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
        metrics::counter!("events_dead_lettered_total", "topic" => self.topic.clone()).increment(0);
        let lag = metrics::gauge!(
            "events_consumer_lag",
            "topic" => self.topic.clone(),
            "group" => self.group.clone()
        );
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
                if let (Ok(_), Some(behind)) = (&polled, subscription.lag()) {
                    lag.set(behind as f64);
                }
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
        match &self.handler {
            Handling::Each(handler) => {
                for record in records {
                    if let Err(reason) = self.handle_record(handler.as_ref(), record).await {
                        self.dead_letter(record, &reason).await?;
                    }
                }
            }
            Handling::Batch(handler) => self.handle_together(handler.as_ref(), records).await?,
        }
        subscription.commit(records).await
    }

    async fn dead_letter(&self, record: &Record, reason: &str) -> Result<(), crate::BusError> {
        tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %reason, "dead-lettering a record");
        self.bus.publish(&[dead_letter(record)]).await?;
        metrics::counter!("events_dead_lettered_total", "topic" => record.topic.clone())
            .increment(1);
        Ok(())
    }

    /// Hands the decodable records to a batch handler, retrying the batch until it passes;
    /// undecodable and rejected records are dead-lettered.
    async fn handle_together(
        &self,
        handler: &dyn BatchHandler,
        records: &[Record],
    ) -> Result<(), crate::BusError> {
        let mut envelopes = Vec::with_capacity(records.len());
        let mut sources = std::collections::HashMap::with_capacity(records.len());
        for record in records {
            match record.envelope() {
                Ok(envelope) => {
                    sources.insert(envelope.id, record);
                    envelopes.push(envelope);
                }
                Err(error) => self.dead_letter(record, &error.to_string()).await?,
            }
        }
        if envelopes.is_empty() {
            return Ok(());
        }
        let mut attempt: u32 = 1;
        let rejected = loop {
            match handler.handle_batch(&envelopes).await {
                Ok(rejected) => break rejected,
                Err(reason) => {
                    let pause = (self.options.backoff * 2_u32.saturating_pow(attempt - 1))
                        .min(Duration::from_secs(10));
                    tracing::warn!(topic = %self.topic, group = %self.group, records = envelopes.len(), attempt, %reason, "batch failed; retrying");
                    tokio::time::sleep(pause).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        };
        for (id, reason) in rejected {
            if let Some(record) = sources.get(&id) {
                self.dead_letter(record, &reason).await?;
            }
        }
        Ok(())
    }

    /// Handles one record, retrying transient failures; the error is why it must be
    /// dead-lettered.
    async fn handle_record(&self, handler: &dyn Handler, record: &Record) -> Result<(), String> {
        let envelope = record.envelope().map_err(|error| error.to_string())?;
        let span = tracing::info_span!(
            "handle event",
            event_type = %envelope.event_type,
            event_id = %envelope.id,
            group = %self.group,
            trace_id = tracing::field::Empty,
        );
        let traceparent = envelope.headers.get(crate::envelope::TRACEPARENT);
        kernel::telemetry::continue_trace(&span, traceparent.map(String::as_str));
        self.handle_with_retries(handler, &envelope).instrument(span).await
    }

    async fn handle_with_retries(
        &self,
        handler: &dyn Handler,
        envelope: &Envelope,
    ) -> Result<(), String> {
        let mut attempt = 1;
        loop {
            match handler.handle(envelope).await {
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

//! Billing as plain rules: how a payment provider's webhook is authenticated, what its
//! events mean, and how long a user's premium lasts given their payments.
//!
//! Webhooks are signed the way Stripe signs them: `Stripe-Signature: t=<unix>,v1=<hex>`,
//! where each `v1` is HMAC-SHA256 over `"<t>.<body>"` with an endpoint secret. Several
//! `v1` values may be present, and several secrets may be configured, so a secret can be
//! rotated without dropping events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use uuid::Uuid;

/// The header that carries a webhook's signature.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the Stripe-Signature header is missing")]
    MissingSignature,
    #[error("the Stripe-Signature header is malformed: {0}")]
    MalformedSignature(&'static str),
    #[error("the signature's timestamp is outside the tolerance of {0} seconds")]
    Stale(u64),
    #[error("no signature matches the body")]
    BadSignature,
    #[error("the event is malformed: {0}")]
    Malformed(String),
    #[error("no secret is configured for billing webhooks")]
    NotConfigured,
}

/// Checks that `header` signs `body` with one of `secrets`, at a time within `tolerance`
/// of `now`. The comparison is constant-time.
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    secrets: &[&str],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    if secrets.is_empty() {
        return Err(WebhookError::NotConfigured);
    }
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (name, value) =
            part.trim().split_once('=').ok_or(WebhookError::MalformedSignature("expected k=v"))?;
        match name {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| WebhookError::MalformedSignature("t is not a number"))?,
                );
            }
            "v1" => signatures.push(
                hex::decode(value)
                    .map_err(|_| WebhookError::MalformedSignature("v1 is not hexadecimal"))?,
            ),
            // Other schemes (`v0`, test-mode signatures) are not ours to check.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::MalformedSignature("no t"))?;
    if signatures.is_empty() {
        return Err(WebhookError::MalformedSignature("no v1 signature"));
    }
    let age = now.timestamp().abs_diff(timestamp);
    if age > tolerance.as_secs() {
        return Err(WebhookError::Stale(tolerance.as_secs()));
    }
    for secret in secrets {
        for signature in &signatures {
            let mut mac = signer(secret, timestamp);
            mac.update(body);
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(WebhookError::BadSignature)
}

/// The `Stripe-Signature` value for `body` signed with `secret` at `timestamp`, as a
/// provider (or `tonearm billing simulate`) sends it.
pub fn sign(body: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac = signer(secret, timestamp);
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn signer(secret: &str, timestamp: i64) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac
}

/// A provider event, as much of it as Tonearm reads.
#[derive(Debug, Deserialize)]
pub struct ProviderEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

/// Who a billing object is about: the Tonearm user id put in its metadata at checkout,
/// or else the customer's email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Customer {
    Id(Uuid),
    Email(String),
}

/// What an event asks of Tonearm.
#[derive(Debug, Clone, PartialEq)]
pub enum BillingChange {
    /// An invoice was paid: premium until the end of the period it covers.
    Paid { customer: Customer, invoice: PaidInvoice },
    /// The charge of an invoice was refunded: that payment no longer counts.
    Refunded { invoice_id: String },
    /// The subscription was cancelled: premium ends now.
    Cancelled { customer: Customer },
    /// An event type Tonearm does not act on (acknowledged all the same).
    Ignored,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaidInvoice {
    pub invoice_id: String,
    pub amount_cents: u64,
    pub currency: String,
    pub period_end: DateTime<Utc>,
}

#[derive(Deserialize)]
struct InvoiceObject {
    id: String,
    #[serde(default)]
    customer_email: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    amount_paid: u64,
    currency: String,
    lines: Lines,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    tonearm_user_id: Option<String>,
}

#[derive(Deserialize)]
struct Lines {
    data: Vec<Line>,
}

#[derive(Deserialize)]
struct Line {
    period: Period,
}

#[derive(Deserialize)]
struct Period {
    end: i64,
}

#[derive(Deserialize)]
struct ChargeObject {
    invoice: Option<String>,
}

#[derive(Deserialize)]
struct SubscriptionObject {
    #[serde(default)]
    customer_email: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

fn customer(metadata: &Metadata, email: Option<&str>) -> Result<Customer, WebhookError> {
    if let Some(id) = &metadata.tonearm_user_id {
        return id.parse().map(Customer::Id).map_err(|_| {
            WebhookError::Malformed("metadata.tonearm_user_id is not a user id".into())
        });
    }
    match email {
        Some(email) if !email.trim().is_empty() => Ok(Customer::Email(email.trim().to_owned())),
        _ => Err(WebhookError::Malformed(
            "the object names no customer (metadata.tonearm_user_id or customer_email)".into(),
        )),
    }
}

fn object<T: serde::de::DeserializeOwned>(
    event: &ProviderEvent,
    what: &str,
) -> Result<T, WebhookError> {
    serde_json::from_value(event.data.object.clone())
        .map_err(|error| WebhookError::Malformed(format!("{what}: {error}")))
}

impl ProviderEvent {
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        let event: Self =
            serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        if event.id.is_empty() || event.id.chars().count() > 255 {
            return Err(WebhookError::Malformed("id must be 1 to 255 characters".into()));
        }
        Ok(event)
    }

    /// What the event asks for.
    pub fn change(&self) -> Result<BillingChange, WebhookError> {
        match self.event_type.as_str() {
            "invoice.paid" | "invoice.payment_succeeded" => {
                let invoice: InvoiceObject = object(self, "invoice")?;
                let end = invoice.lines.data.iter().map(|line| line.period.end).max().ok_or_else(
                    || WebhookError::Malformed("the invoice has no lines with a period".into()),
                )?;
                let period_end = DateTime::from_timestamp(end, 0).ok_or_else(|| {
                    WebhookError::Malformed("the period end is out of range".into())
                })?;
                if invoice.currency.is_empty() || invoice.currency.len() > 8 {
                    return Err(WebhookError::Malformed("currency must be 1 to 8 letters".into()));
                }
                Ok(BillingChange::Paid {
                    customer: customer(&invoice.metadata, invoice.customer_email.as_deref())?,
                    invoice: PaidInvoice {
                        invoice_id: invoice.id,
                        amount_cents: invoice.amount_paid,
                        currency: invoice.currency.to_lowercase(),
                        period_end,
                    },
                })
            }
            "charge.refunded" => {
                let charge: ChargeObject = object(self, "charge")?;
                let invoice_id = charge.invoice.ok_or_else(|| {
                    WebhookError::Malformed("the refunded charge names no invoice".into())
                })?;
                Ok(BillingChange::Refunded { invoice_id })
            }
            "customer.subscription.deleted" => {
                let subscription: SubscriptionObject = object(self, "subscription")?;
                Ok(BillingChange::Cancelled {
                    customer: customer(
                        &subscription.metadata,
                        subscription.customer_email.as_deref(),
                    )?,
                })
            }
            _ => Ok(BillingChange::Ignored),
        }
    }
}

/// One payment as the premium rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentTerm {
    pub paid_at: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub refunded: bool,
}

/// The end of a user's premium: the latest period end among payments that were neither
/// refunded nor made before the subscription was last cancelled. `None` means free.
/// (An end in the past is free too; the auth service compares it with the clock.)
pub fn premium_until(
    payments: &[PaymentTerm],
    cancelled_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    payments
        .iter()
        .filter(|payment| !payment.refunded)
        .filter(|payment| cancelled_at.is_none_or(|cancelled| payment.paid_at > cancelled))
        .map(|payment| payment.period_end)
        .max()
}

/// A user's subscription after a change, as `payment.completed` and
/// `subscription.changed` announce it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionState {
    pub user_id: Uuid,
    pub premium_until: Option<DateTime<Utc>>,
    pub revision: u64,
}

/// The webhook body `tonearm billing simulate` sends: an invoice for `months` months from
/// `now`, paid by the account with `email`.
pub fn simulated_invoice(email: &str, months: u32, now: DateTime<Utc>) -> serde_json::Value {
    let end = now
        .checked_add_months(chrono::Months::new(months))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .timestamp();
    let id = Uuid::now_v7().simple().to_string();
    serde_json::json!({
        "id": format!("evt_sim_{id}"),
        "object": "event",
        "type": "invoice.paid",
        "created": now.timestamp(),
        "data": {"object": {
            "id": format!("in_sim_{id}"),
            "object": "invoice",
            "customer_email": email,
            "amount_paid": 999 * u64::from(months),
            "currency": "eur",
            "lines": {"data": [{"period": {"start": now.timestamp(), "end": end}}]}
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    const TOLERANCE: Duration = Duration::from_secs(300);

    #[test]
    fn a_signature_made_with_any_configured_secret_is_accepted() {
        let now = Utc::now();
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, "whsec_new", now.timestamp());
        let verify =
            |secrets: &[&str]| verify_signature(Some(&header), body, secrets, now, TOLERANCE);
        assert_eq!(verify(&["whsec_old", "whsec_new"]), Ok(()));
        assert_eq!(verify(&["whsec_old"]), Err(WebhookError::BadSignature));
        assert_eq!(verify(&[]), Err(WebhookError::NotConfigured));
    }

    #[test]
    fn a_changed_body_or_timestamp_breaks_the_signature() {
        let now = Utc::now();
        let header = sign(b"{}", "s", now.timestamp());
        assert_eq!(
            verify_signature(Some(&header), b"{ }", &["s"], now, TOLERANCE),
            Err(WebhookError::BadSignature)
        );
        let moved = header.replacen(
            &format!("t={}", now.timestamp()),
            &format!("t={}", now.timestamp() - 1),
            1,
        );
        assert_eq!(
            verify_signature(Some(&moved), b"{}", &["s"], now, TOLERANCE),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn old_signatures_and_malformed_headers_are_refused() {
        let now = Utc::now();
        let old = (now - TimeDelta::seconds(301)).timestamp();
        let header = sign(b"{}", "s", old);
        assert_eq!(
            verify_signature(Some(&header), b"{}", &["s"], now, TOLERANCE),
            Err(WebhookError::Stale(300))
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "nonsense"] {
            assert!(
                matches!(
                    verify_signature(Some(bad), b"{}", &["s"], now, TOLERANCE),
                    Err(WebhookError::MalformedSignature(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            verify_signature(None, b"{}", &["s"], now, TOLERANCE),
            Err(WebhookError::MissingSignature)
        );
    }

    #[test]
    fn several_v1_values_pass_when_one_matches() {
        let now = Utc::now();
        let good = sign(b"{}", "s", now.timestamp());
        let header = format!("{good},v1={}", "00".repeat(32));
        assert_eq!(verify_signature(Some(&header), b"{}", &["s"], now, TOLERANCE), Ok(()));
    }

    #[test]
    fn a_simulated_invoice_reads_as_a_payment() {
        let now = Utc::now();
        let body = serde_json::to_vec(&simulated_invoice("a@example.com", 2, now)).unwrap();
        let event = ProviderEvent::parse(&body).unwrap();
        let BillingChange::Paid { customer, invoice } = event.change().unwrap() else {
            panic!("a payment")
        };
        assert_eq!(customer, Customer::Email("a@example.com".into()));
        assert_eq!(invoice.amount_cents, 1998);
        assert!(invoice.period_end > now + TimeDelta::days(55));
    }

    #[test]
    fn unknown_types_are_ignored_and_bad_objects_refused() {
        let event = |kind: &str, object: serde_json::Value| ProviderEvent {
            id: "evt".into(),
            event_type: kind.into(),
            data: EventData { object },
        };
        assert_eq!(
            event("customer.created", serde_json::json!({})).change(),
            Ok(BillingChange::Ignored)
        );
        assert!(event("invoice.paid", serde_json::json!({"id": "in"})).change().is_err());
        assert!(event("charge.refunded", serde_json::json!({})).change().is_err());
        let cancelled = event(
            "customer.subscription.deleted",
            serde_json::json!({"metadata": {"tonearm_user_id": "not-a-uuid"}}),
        );
        assert!(cancelled.change().is_err());
    }

    #[test]
    fn premium_lasts_to_the_latest_period_that_still_counts() {
        let now = Utc::now();
        let day = TimeDelta::days(1);
        let first =
            PaymentTerm { paid_at: now - day * 40, period_end: now - day * 10, refunded: false };
        let second =
            PaymentTerm { paid_at: now - day * 10, period_end: now + day * 20, refunded: false };
        assert_eq!(premium_until(&[first.clone(), second.clone()], None), Some(now + day * 20));
        let refunded = PaymentTerm { refunded: true, ..second.clone() };
        assert_eq!(premium_until(&[first.clone(), refunded], None), Some(now - day * 10));
        assert_eq!(premium_until(&[first.clone(), second.clone()], Some(now)), None);
        let renewed =
            PaymentTerm { paid_at: now + day, period_end: now + day * 31, refunded: false };
        assert_eq!(premium_until(&[first, second, renewed], Some(now)), Some(now + day * 31));
        assert_eq!(premium_until(&[], None), None);
    }
}

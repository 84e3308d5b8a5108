//! Sending the mail queue: a relay over SMTP (with `lettre`), or `.eml` files in a
//! directory for the embedded shape. The sender takes due messages from the store, holds
//! each while it talks to the relay, and marks it sent only after the relay accepted it;
//! a refusal or an unreachable relay schedules the next attempt with backoff, so an
//! outage delays mail and loses none.
//!
//! A message keeps one `Message-ID` on every attempt. The only way one can go out twice
//! is a crash after the relay accepted it and before the store heard so; a receiver that
//! deduplicates by `Message-ID` sees it once.

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use kernel::background::Background;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, header::MessageId},
};

use crate::{
    config::MailConfig,
    domain::{OutgoingMail, mail_backoff},
    store::PeopleStore,
};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the message cannot be built: {0}")]
    Build(String),
    #[error("the relay refused or could not be reached: {0}")]
    Relay(String),
    #[error("the message cannot be written: {0}")]
    Write(#[from] std::io::Error),
}

/// Where messages go.
#[async_trait]
pub trait MailTransport: Send + Sync + 'static {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError>;
    fn engine(&self) -> &'static str;
}

/// The mail transport the configuration names.
pub fn transport(
    config: &MailConfig,
    data_dir: &std::path::Path,
) -> Result<Arc<dyn MailTransport>, String> {
    let from: Mailbox = config
        .from
        .parse()
        .map_err(|e| format!("people.mail.from `{}` is not an address: {e}", config.from))?;
    match &config.smtp_url {
        Some(url) => {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                .map_err(|e| format!("people.mail.smtp_url {}: {e}", url.redacted()))?
                .timeout(Some(Duration::from_secs(config.timeout_secs.max(1))))
                .build();
            Ok(Arc::new(SmtpMail { transport, from }))
        }
        None => {
            let dir = config.dir.clone().unwrap_or_else(|| data_dir.join("mail"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating the mail directory {}: {e}", dir.display()))?;
            Ok(Arc::new(FileMail { dir, from }))
        }
    }
}

fn message(mail: &OutgoingMail, from: &Mailbox) -> Result<Message, MailError> {
    let to: Mailbox =
        mail.recipient.parse().map_err(|e| MailError::Build(format!("recipient: {e}")))?;
    let domain = from.email.domain().to_owned();
    Message::builder()
        .header(MessageId::from(format!("<{}.{}@{domain}>", mail.kind, mail.id)))
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .date(mail.created_at.into())
        .multipart(MultiPart::alternative_plain_html(
            mail.text_body.clone(),
            mail.html_body.clone(),
        ))
        .map_err(|e| MailError::Build(e.to_string()))
}

struct SmtpMail {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

#[async_trait]
impl MailTransport for SmtpMail {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let message = message(mail, &self.from)?;
        self.transport.send(message).await.map(drop).map_err(|e| MailError::Relay(e.to_string()))
    }

    fn engine(&self) -> &'static str {
        "smtp"
    }
}

/// Writes each message to `<dir>/<id>.eml`: a message written twice is one file.
struct FileMail {
    dir: PathBuf,
    from: Mailbox,
}

#[async_trait]
impl MailTransport for FileMail {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let formatted = message(mail, &self.from)?.formatted();
        let path = self.dir.join(format!("{}.eml", mail.id));
        let partial = self.dir.join(format!(".{}.eml.partial", mail.id));
        tokio::fs::write(&partial, formatted).await?;
        tokio::fs::rename(&partial, &path).await?;
        Ok(())
    }

    fn engine(&self) -> &'static str {
        "files"
    }
}

/// Sends the queue in the background until stopped.
pub fn spawn_sender(
    store: Arc<dyn PeopleStore>,
    transport: Arc<dyn MailTransport>,
    config: MailConfig,
) -> Background {
    Background::spawn(move |stop| async move {
        let poll = Duration::from_millis(config.poll_ms.max(10));
        tokio::pin!(stop);
        loop {
            let sent = send_due(store.as_ref(), transport.as_ref(), &config).await;
            if sent == 0 {
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(poll) => {}
                }
            } else if futures::FutureExt::now_or_never(&mut stop).is_some() {
                return;
            }
        }
    })
}

/// One pass over due messages; returns how many it handled (sent or failed).
pub async fn send_due(
    store: &dyn PeopleStore,
    transport: &dyn MailTransport,
    config: &MailConfig,
) -> usize {
    let now = Utc::now();
    let due = match store.due_mail(now, 50).await {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "cannot read the mail queue");
            return 0;
        }
    };
    let hold = TimeDelta::seconds(i64::try_from(config.claim_secs.max(1)).unwrap_or(60));
    let max_backoff = Duration::from_secs(config.max_backoff_secs.max(1));
    let mut handled = 0;
    for mail in due {
        let now = Utc::now();
        match store.claim_mail(mail.id, now, now + hold).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(%error, "cannot claim mail");
                break;
            }
        }
        handled += 1;
        match transport.send(&mail).await {
            Ok(()) => {
                if let Err(error) = store.mail_sent(mail.id, Utc::now()).await {
                    // The claim lapses and the message is sent again: the one duplicate
                    // window, kept as short as a write.
                    tracing::error!(%error, mail_id = %mail.id, "mail sent but not recorded");
                }
                metrics::counter!("people_mail_sent_total", "kind" => mail.kind.clone())
                    .increment(1);
                tracing::info!(mail_id = %mail.id, kind = %mail.kind, "mail sent");
            }
            Err(error) => {
                let pause = mail_backoff(mail.attempts.saturating_add(1), max_backoff);
                let next = Utc::now() + TimeDelta::from_std(pause).unwrap_or(TimeDelta::MAX);
                tracing::warn!(%error, mail_id = %mail.id, retry_in_s = pause.as_secs(), "mail not sent");
                metrics::counter!("people_mail_failures_total").increment(1);
                if let Err(error) = store.mail_failed(mail.id, next, &error.to_string()).await {
                    tracing::warn!(%error, "cannot record a mail failure");
                }
            }
        }
    }
    handled
}

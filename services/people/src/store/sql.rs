//! The SQL both adapters run. `sql_store!` implements [`PeopleStore`](super::PeopleStore)
//! and [`OutboxStore`](bus::outbox::OutboxStore) for an adapter type holding a `pool`
//! field of its engine's pool type. Every write transaction begins with a write (the
//! inbox row, or the provider event's id), so on SQLite it takes the writer's lock before
//! it reads anything.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::{Follow, Notification, NotificationKind, OutgoingMail, Person};

pub(super) const PERSON_COLUMNS: &str =
    "u.id, u.display_name, u.email, u.registered_at, u.presence_visible";

pub(super) const NOTIFICATION_COLUMNS: &str = "n.id, n.user_id, n.kind, n.actor_id,
    u.display_name AS actor_name, n.playlist_id, n.playlist_name, n.count, n.created_at,
    n.updated_at, n.read_at";

pub(super) const MAIL_COLUMNS: &str =
    "id, kind, recipient, subject, text_body, html_body, created_at, attempts";

/// The most rows one statement writes, well under both engines' parameter limits.
pub(super) const CHUNK: usize = 250;

#[derive(sqlx::FromRow)]
pub(super) struct PersonRow {
    id: Uuid,
    display_name: String,
    email: String,
    registered_at: DateTime<Utc>,
    presence_visible: bool,
}

impl From<PersonRow> for Person {
    fn from(row: PersonRow) -> Self {
        Self {
            id: row.id,
            display_name: row.display_name,
            email: row.email,
            registered_at: row.registered_at,
            presence_visible: row.presence_visible,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct FollowRow {
    #[sqlx(flatten)]
    person: PersonRow,
    followed_at: DateTime<Utc>,
}

impl From<FollowRow> for Follow {
    fn from(row: FollowRow) -> Self {
        Self { person: row.person.into(), followed_at: row.followed_at }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct NotificationRow {
    id: Uuid,
    user_id: Uuid,
    kind: String,
    actor_id: Uuid,
    actor_name: Option<String>,
    playlist_id: Option<Uuid>,
    playlist_name: Option<String>,
    count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;
    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        let kind = NotificationKind::parse(&row.kind).ok_or_else(|| {
            StoreError::Corrupt(format!("notification {}: kind {}", row.id, row.kind))
        })?;
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            kind,
            actor_id: row.actor_id,
            actor_name: row.actor_name,
            playlist: row.playlist_id.map(|id| (id, row.playlist_name.unwrap_or_default())),
            count: u32::try_from(row.count).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            read: row.read_at.is_some(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct MailRow {
    id: Uuid,
    kind: String,
    recipient: String,
    subject: String,
    text_body: String,
    html_body: String,
    created_at: DateTime<Utc>,
    attempts: i32,
}

impl From<MailRow> for OutgoingMail {
    fn from(row: MailRow) -> Self {
        Self {
            id: row.id,
            kind: row.kind,
            recipient: row.recipient,
            subject: row.subject,
            text_body: row.text_body,
            html_body: row.html_body,
            created_at: row.created_at,
            attempts: u32::try_from(row.attempts).unwrap_or_default(),
        }
    }
}

/// A `COUNT(*)`, never negative.
pub(super) fn count(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or_default()
}

/// A `LIKE` pattern matching `text` literally, lower-cased.
pub(super) fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Implements the store for `$adapter`, with the migrations at `$migrations`.
macro_rules! sql_store {
    ($adapter:ty, $migrations:literal) => {
        use async_trait::async_trait;
        use chrono::{DateTime, Utc};
        use kernel::db::placeholders;
        use uuid::Uuid;

        use super::{
            BillingOutcome, PeopleStore, PlaylistRef, StoreError,
            sql::{
                CHUNK, FollowRow, MAIL_COLUMNS, MailRow, NOTIFICATION_COLUMNS, NotificationRow,
                PERSON_COLUMNS, PersonRow, count, like_literal,
            },
        };
        use crate::domain::{
            Follow, Notification, NotificationKind, NotificationPage, OutgoingMail, Person,
            billing::{self, BillingChange, PaymentTerm, SubscriptionState},
        };

        type Db = <$adapter as super::sql::Engine>::Database;
        type Conn = <Db as sqlx::Database>::Connection;

        #[async_trait]
        impl PeopleStore for $adapter {
            async fn migrate(&self) -> Result<(), StoreError> {
                sqlx::migrate!($migrations).run(&self.pool).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn apply_registered(
                &self,
                consumer: &str,
                event_id: Uuid,
                person: &Person,
                mail: &OutgoingMail,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(());
                }
                sqlx::query(
                    "INSERT INTO users (id, display_name, email, registered_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name,
                         email = excluded.email, registered_at = excluded.registered_at",
                )
                .bind(person.id)
                .bind(&person.display_name)
                .bind(&person.email)
                .bind(person.registered_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO outgoing_mail (id, kind, recipient, subject, text_body,
                         html_body, created_at, next_attempt_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(mail.id)
                .bind(&mail.kind)
                .bind(&mail.recipient)
                .bind(&mail.subject)
                .bind(&mail.text_body)
                .bind(&mail.html_body)
                .bind(mail.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn apply_renamed(
                &self,
                consumer: &str,
                event_id: Uuid,
                user_id: Uuid,
                display_name: &str,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(());
                }
                sqlx::query("UPDATE users SET display_name = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(display_name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn forget_user(
                &self,
                consumer: &str,
                event_id: Uuid,
                user_id: Uuid,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(());
                }
                let email: Option<String> =
                    sqlx::query_scalar("DELETE FROM users WHERE id = $1 RETURNING email")
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                for statement in [
                    "DELETE FROM follows WHERE follower_id = $1 OR followee_id = $1",
                    "DELETE FROM playlist_followers WHERE user_id = $1",
                    "DELETE FROM notifications WHERE user_id = $1 OR actor_id = $1",
                    "DELETE FROM subscriptions WHERE user_id = $1",
                ] {
                    sqlx::query(statement).bind(user_id).execute(&mut *tx).await?;
                }
                if let Some(email) = email {
                    sqlx::query("DELETE FROM outgoing_mail WHERE recipient = $1 AND sent_at IS NULL")
                        .bind(email)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn remember_person(&self, person: &Person) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO users (id, display_name, email, registered_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                )
                .bind(person.id)
                .bind(&person.display_name)
                .bind(&person.email)
                .bind(person.registered_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn person(&self, id: Uuid) -> Result<Option<Person>, StoreError> {
                Ok(sqlx::query_as::<_, PersonRow>(&format!(
                    "SELECT {PERSON_COLUMNS} FROM users u WHERE u.id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(Person::from))
            }

            #[tracing::instrument(skip_all)]
            async fn person_by_email(&self, email: &str) -> Result<Option<Person>, StoreError> {
                Ok(sqlx::query_as::<_, PersonRow>(&format!(
                    "SELECT {PERSON_COLUMNS} FROM users u WHERE u.email = $1"
                ))
                .bind(email.to_lowercase())
                .fetch_optional(&self.pool)
                .await?
                .map(Person::from))
            }

            #[tracing::instrument(skip_all)]
            async fn people(&self, ids: &[Uuid]) -> Result<Vec<Person>, StoreError> {
                let mut people = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    let sql = format!(
                        "SELECT {PERSON_COLUMNS} FROM users u WHERE u.id IN ({})",
                        placeholders(1, chunk.len())
                    );
                    let mut query = sqlx::query_as::<_, PersonRow>(&sql);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    people.extend(query.fetch_all(&self.pool).await?.into_iter().map(Person::from));
                }
                Ok(people)
            }

            #[tracing::instrument(skip_all)]
            async fn search_people(
                &self,
                prefix: &str,
                limit: u32,
                offset: u32,
            ) -> Result<(Vec<Person>, u64), StoreError> {
                let start = format!("{}%", like_literal(prefix));
                let word = format!("% {}%", like_literal(prefix));
                let matches = "(lower(u.display_name) LIKE $1 ESCAPE '\\'
                    OR lower(u.display_name) LIKE $2 ESCAPE '\\')";
                let rows = sqlx::query_as::<_, PersonRow>(&format!(
                    "SELECT {PERSON_COLUMNS} FROM users u WHERE {matches}
                     ORDER BY lower(u.display_name), u.id LIMIT $3 OFFSET $4"
                ))
                .bind(&start)
                .bind(&word)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?;
                let total: i64 =
                    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM users u WHERE {matches}"))
                        .bind(&start)
                        .bind(&word)
                        .fetch_one(&self.pool)
                        .await?;
                Ok((rows.into_iter().map(Person::from).collect(), count(total)))
            }

            #[tracing::instrument(skip_all)]
            async fn set_presence_visible(
                &self,
                user_id: Uuid,
                visible: bool,
            ) -> Result<bool, StoreError> {
                let changed = sqlx::query("UPDATE users SET presence_visible = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(visible)
                    .execute(&self.pool)
                    .await?;
                Ok(changed.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn follow(
                &self,
                follower: Uuid,
                followee: Uuid,
                at: DateTime<Utc>,
            ) -> Result<Option<Notification>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let added = sqlx::query(
                    "INSERT INTO follows (follower_id, followee_id, followed_at)
                     VALUES ($1, $2, $3) ON CONFLICT (follower_id, followee_id) DO NOTHING",
                )
                .bind(follower)
                .bind(followee)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if added.rows_affected() == 0 {
                    return Ok(None);
                }
                let id = Uuid::now_v7();
                insert_notifications(
                    &mut tx,
                    &[(id, followee)],
                    NotificationKind::NewFollower,
                    follower,
                    None,
                    at,
                )
                .await?;
                let made = read_notifications(&mut tx, &[id]).await?;
                tx.commit().await?;
                Ok(made.into_iter().next())
            }

            #[tracing::instrument(skip_all)]
            async fn unfollow(&self, follower: Uuid, followee: Uuid) -> Result<bool, StoreError> {
                let removed =
                    sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
                        .bind(follower)
                        .bind(followee)
                        .execute(&self.pool)
                        .await?;
                Ok(removed.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn following(
                &self,
                user_id: Uuid,
                limit: u32,
                offset: u32,
            ) -> Result<(Vec<Follow>, u64), StoreError> {
                follow_page(&self.pool, "follower_id", "followee_id", user_id, limit, offset).await
            }

            #[tracing::instrument(skip_all)]
            async fn followers(
                &self,
                user_id: Uuid,
                limit: u32,
                offset: u32,
            ) -> Result<(Vec<Follow>, u64), StoreError> {
                follow_page(&self.pool, "followee_id", "follower_id", user_id, limit, offset).await
            }

            #[tracing::instrument(skip_all)]
            async fn followee_ids(&self, user_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
                Ok(sqlx::query_scalar("SELECT followee_id FROM follows WHERE follower_id = $1")
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn follow_counts(&self, user_id: Uuid) -> Result<(u64, u64), StoreError> {
                let (followers, following): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM follows WHERE followee_id = $1),
                            (SELECT COUNT(*) FROM follows WHERE follower_id = $1)",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
                Ok((count(followers), count(following)))
            }

            #[tracing::instrument(skip_all)]
            async fn is_following(&self, follower: Uuid, followee: Uuid) -> Result<bool, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT EXISTS (
                         SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $2
                     )",
                )
                .bind(follower)
                .bind(followee)
                .fetch_one(&self.pool)
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn apply_playlist_created(
                &self,
                consumer: &str,
                event_id: Uuid,
                playlist: &PlaylistRef,
                at: DateTime<Utc>,
            ) -> Result<Vec<Notification>, StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(Vec::new());
                }
                let followers: Vec<Uuid> =
                    sqlx::query_scalar("SELECT follower_id FROM follows WHERE followee_id = $1")
                        .bind(playlist.owner_id)
                        .fetch_all(&mut *tx)
                        .await?;
                let rows: Vec<(Uuid, Uuid)> =
                    followers.into_iter().map(|user| (Uuid::now_v7(), user)).collect();
                insert_notifications(
                    &mut tx,
                    &rows,
                    NotificationKind::PlaylistCreated,
                    playlist.owner_id,
                    Some((playlist.id, &playlist.name)),
                    at,
                )
                .await?;
                let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
                let made = read_notifications(&mut tx, &ids).await?;
                tx.commit().await?;
                Ok(made)
            }

            #[tracing::instrument(skip_all)]
            async fn apply_playlist_changed(
                &self,
                consumer: &str,
                event_id: Uuid,
                playlist: &PlaylistRef,
                at: DateTime<Utc>,
            ) -> Result<Vec<Notification>, StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(Vec::new());
                }
                let kind = NotificationKind::PlaylistChanged.as_str();
                // Followers without an unread notification about this playlist get one;
                // the others' grows.
                let fresh: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT f.user_id FROM playlist_followers f
                     WHERE f.playlist_id = $1 AND f.user_id <> $2 AND NOT EXISTS (
                         SELECT 1 FROM notifications n
                         WHERE n.user_id = f.user_id AND n.kind = $3
                           AND n.playlist_id = $1 AND n.read_at IS NULL
                     )",
                )
                .bind(playlist.id)
                .bind(playlist.owner_id)
                .bind(kind)
                .fetch_all(&mut *tx)
                .await?;
                let grown: Vec<Uuid> = sqlx::query_scalar(
                    "UPDATE notifications SET count = count + 1, updated_at = $3,
                         playlist_name = $4
                     WHERE kind = $2 AND playlist_id = $1 AND read_at IS NULL
                       AND user_id IN (SELECT user_id FROM playlist_followers WHERE playlist_id = $1)
                     RETURNING id",
                )
                .bind(playlist.id)
                .bind(kind)
                .bind(at)
                .bind(&playlist.name)
                .fetch_all(&mut *tx)
                .await?;
                let rows: Vec<(Uuid, Uuid)> =
                    fresh.into_iter().map(|user| (Uuid::now_v7(), user)).collect();
                insert_notifications(
                    &mut tx,
                    &rows,
                    NotificationKind::PlaylistChanged,
                    playlist.owner_id,
                    Some((playlist.id, &playlist.name)),
                    at,
                )
                .await?;
                let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).chain(grown).collect();
                let made = read_notifications(&mut tx, &ids).await?;
                tx.commit().await?;
                Ok(made)
            }

            #[tracing::instrument(skip_all)]
            async fn apply_playlist_followed(
                &self,
                consumer: &str,
                event_id: Uuid,
                follower: Uuid,
                playlist: &PlaylistRef,
                at: DateTime<Utc>,
            ) -> Result<Option<Notification>, StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(None);
                }
                let added = sqlx::query(
                    "INSERT INTO playlist_followers (playlist_id, user_id) VALUES ($1, $2)
                     ON CONFLICT (playlist_id, user_id) DO NOTHING",
                )
                .bind(playlist.id)
                .bind(follower)
                .execute(&mut *tx)
                .await?;
                if added.rows_affected() == 0 || follower == playlist.owner_id {
                    tx.commit().await?;
                    return Ok(None);
                }
                let id = Uuid::now_v7();
                insert_notifications(
                    &mut tx,
                    &[(id, playlist.owner_id)],
                    NotificationKind::PlaylistFollowed,
                    follower,
                    Some((playlist.id, &playlist.name)),
                    at,
                )
                .await?;
                let made = read_notifications(&mut tx, &[id]).await?;
                tx.commit().await?;
                Ok(made.into_iter().next())
            }

            #[tracing::instrument(skip_all)]
            async fn apply_playlist_unfollowed(
                &self,
                consumer: &str,
                event_id: Uuid,
                user_id: Uuid,
                playlist_id: Uuid,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(());
                }
                sqlx::query("DELETE FROM playlist_followers WHERE playlist_id = $1 AND user_id = $2")
                    .bind(playlist_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn notifications(
                &self,
                user_id: Uuid,
                limit: u32,
                offset: u32,
                unread_only: bool,
            ) -> Result<NotificationPage, StoreError> {
                let filter = if unread_only { "AND n.read_at IS NULL" } else { "" };
                let rows = sqlx::query_as::<_, NotificationRow>(&format!(
                    "SELECT {NOTIFICATION_COLUMNS}
                     FROM notifications n LEFT JOIN users u ON u.id = n.actor_id
                     WHERE n.user_id = $1 {filter}
                     ORDER BY n.updated_at DESC, n.id DESC LIMIT $2 OFFSET $3"
                ))
                .bind(user_id)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?;
                let (total, unread): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE read_at IS NULL)
                     FROM notifications WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
                let items =
                    rows.into_iter().map(Notification::try_from).collect::<Result<_, _>>()?;
                let total = if unread_only { unread } else { total };
                Ok(NotificationPage { items, total: count(total), unread: count(unread) })
            }

            #[tracing::instrument(skip_all)]
            async fn mark_read(
                &self,
                user_id: Uuid,
                ids: Option<&[Uuid]>,
                at: DateTime<Utc>,
            ) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                match ids {
                    None => {
                        sqlx::query(
                            "UPDATE notifications SET read_at = $2
                             WHERE user_id = $1 AND read_at IS NULL",
                        )
                        .bind(user_id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Some(ids) => {
                        for chunk in ids.chunks(CHUNK) {
                            let sql = format!(
                                "UPDATE notifications SET read_at = $2
                                 WHERE user_id = $1 AND read_at IS NULL AND id IN ({})",
                                placeholders(3, chunk.len())
                            );
                            let mut query = sqlx::query(&sql).bind(user_id).bind(at);
                            for id in chunk {
                                query = query.bind(*id);
                            }
                            query.execute(&mut *tx).await?;
                        }
                    }
                }
                let unread: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
                )
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(count(unread))
            }

            #[tracing::instrument(skip_all)]
            async fn unread_count(&self, user_id: Uuid) -> Result<u64, StoreError> {
                let unread: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
                Ok(count(unread))
            }

            #[tracing::instrument(skip_all)]
            async fn apply_billing(
                &self,
                provider_event_id: &str,
                event_type: &str,
                change: &BillingChange,
                user_id: Option<Uuid>,
                at: DateTime<Utc>,
            ) -> Result<BillingOutcome, StoreError> {
                let mut tx = self.pool.begin().await?;
                let recorded = sqlx::query(
                    "INSERT INTO billing_events (provider_event_id, event_type, received_at)
                     VALUES ($1, $2, $3) ON CONFLICT (provider_event_id) DO NOTHING",
                )
                .bind(provider_event_id)
                .bind(event_type)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if recorded.rows_affected() == 0 {
                    return Ok(BillingOutcome::Duplicate);
                }
                let (user_id, payment) = match (change, user_id) {
                    (BillingChange::Paid { invoice, .. }, Some(user_id)) => {
                        let payment_id = Uuid::now_v7();
                        let added = sqlx::query(
                            "INSERT INTO payments (invoice_id, payment_id, user_id, amount_cents,
                                 currency, paid_at, period_end)
                             VALUES ($1, $2, $3, $4, $5, $6, $7)
                             ON CONFLICT (invoice_id) DO NOTHING",
                        )
                        .bind(&invoice.invoice_id)
                        .bind(payment_id)
                        .bind(user_id)
                        .bind(i64::try_from(invoice.amount_cents).unwrap_or(i64::MAX))
                        .bind(&invoice.currency)
                        .bind(at)
                        .bind(invoice.period_end)
                        .execute(&mut *tx)
                        .await?;
                        if added.rows_affected() == 0 {
                            // Providers announce one payment under several event types.
                            tx.commit().await?;
                            return Ok(BillingOutcome::Duplicate);
                        }
                        (user_id, Some(payment_id))
                    }
                    (BillingChange::Refunded { invoice_id }, _) => {
                        let refunded: Option<Uuid> = sqlx::query_scalar(
                            "UPDATE payments SET refunded_at = $2
                             WHERE invoice_id = $1 AND refunded_at IS NULL RETURNING user_id",
                        )
                        .bind(invoice_id)
                        .bind(at)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let Some(user_id) = refunded else {
                            tx.commit().await?;
                            return Ok(BillingOutcome::Ignored);
                        };
                        (user_id, None)
                    }
                    (BillingChange::Cancelled { .. }, Some(user_id)) => {
                        sqlx::query(
                            "INSERT INTO subscriptions (user_id, cancelled_at, revision)
                             VALUES ($1, $2, 0)
                             ON CONFLICT (user_id) DO UPDATE SET cancelled_at = excluded.cancelled_at",
                        )
                        .bind(user_id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        (user_id, None)
                    }
                    _ => {
                        tx.commit().await?;
                        return Ok(BillingOutcome::Ignored);
                    }
                };
                let state = resubscribe(&mut tx, user_id).await?;
                let event = crate::events::subscription_event(&state, change, payment, at);
                bus::outbox::sql::insert(&mut *tx, &event).await?;
                tx.commit().await?;
                Ok(BillingOutcome::Applied(state))
            }

            #[tracing::instrument(skip_all)]
            async fn subscription(
                &self,
                user_id: Uuid,
            ) -> Result<Option<SubscriptionState>, StoreError> {
                let row: Option<(Option<DateTime<Utc>>, i64)> = sqlx::query_as(
                    "SELECT premium_until, revision FROM subscriptions WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(premium_until, revision)| SubscriptionState {
                    user_id,
                    premium_until,
                    revision: u64::try_from(revision).unwrap_or_default(),
                }))
            }

            #[tracing::instrument(skip_all)]
            async fn due_mail(
                &self,
                now: DateTime<Utc>,
                limit: u32,
            ) -> Result<Vec<OutgoingMail>, StoreError> {
                let rows = sqlx::query_as::<_, MailRow>(&format!(
                    "SELECT {MAIL_COLUMNS} FROM outgoing_mail
                     WHERE sent_at IS NULL AND next_attempt_at <= $1
                       AND (claimed_until IS NULL OR claimed_until < $1)
                     ORDER BY next_attempt_at, id LIMIT $2"
                ))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(OutgoingMail::from).collect())
            }

            #[tracing::instrument(skip_all)]
            async fn claim_mail(
                &self,
                id: Uuid,
                now: DateTime<Utc>,
                until: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let claimed = sqlx::query(
                    "UPDATE outgoing_mail SET claimed_until = $3
                     WHERE id = $1 AND sent_at IS NULL
                       AND (claimed_until IS NULL OR claimed_until < $2)",
                )
                .bind(id)
                .bind(now)
                .bind(until)
                .execute(&self.pool)
                .await?;
                Ok(claimed.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn mail_sent(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE outgoing_mail SET sent_at = $2, claimed_until = NULL,
                         attempts = attempts + 1, last_error = NULL
                     WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn mail_failed(
                &self,
                id: Uuid,
                next_attempt_at: DateTime<Utc>,
                error: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE outgoing_mail SET attempts = attempts + 1, claimed_until = NULL,
                         next_attempt_at = $2, last_error = $3
                     WHERE id = $1 AND sent_at IS NULL",
                )
                .bind(id)
                .bind(next_attempt_at)
                .bind(error)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn release_mail_claims(&self) -> Result<u64, StoreError> {
                let released = sqlx::query(
                    "UPDATE outgoing_mail SET claimed_until = NULL
                     WHERE sent_at IS NULL AND claimed_until IS NOT NULL",
                )
                .execute(&self.pool)
                .await?;
                Ok(released.rows_affected())
            }

            #[tracing::instrument(skip_all)]
            async fn mail_backlog(&self) -> Result<u64, StoreError> {
                let backlog: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM outgoing_mail WHERE sent_at IS NULL")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(count(backlog))
            }
        }

        bus::sql_outbox_store!($adapter);

        /// Writes notifications of one kind by one actor: `(id, recipient)` each.
        async fn insert_notifications(
            conn: &mut Conn,
            rows: &[(Uuid, Uuid)],
            kind: NotificationKind,
            actor_id: Uuid,
            playlist: Option<(Uuid, &str)>,
            at: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            let (playlist_id, playlist_name) = playlist.unzip();
            for chunk in rows.chunks(CHUNK) {
                // $1..$5 are shared; each row adds its id and recipient.
                let values: Vec<String> = (0..chunk.len())
                    .map(|n| {
                        let first = 6 + 2 * n;
                        format!("(${first}, ${}, $1, $2, $3, $4, $5, $5)", first + 1)
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO notifications (id, user_id, kind, actor_id, playlist_id,
                         playlist_name, created_at, updated_at)
                     VALUES {}",
                    values.join(", ")
                );
                let mut query = sqlx::query(&sql)
                    .bind(kind.as_str())
                    .bind(actor_id)
                    .bind(playlist_id)
                    .bind(playlist_name)
                    .bind(at);
                for (id, user_id) in chunk {
                    query = query.bind(*id).bind(*user_id);
                }
                query.execute(&mut *conn).await?;
            }
            Ok(())
        }

        async fn read_notifications(
            conn: &mut Conn,
            ids: &[Uuid],
        ) -> Result<Vec<Notification>, StoreError> {
            let mut made = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                let sql = format!(
                    "SELECT {NOTIFICATION_COLUMNS}
                     FROM notifications n LEFT JOIN users u ON u.id = n.actor_id
                     WHERE n.id IN ({})",
                    placeholders(1, chunk.len())
                );
                let mut query = sqlx::query_as::<_, NotificationRow>(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                for row in query.fetch_all(&mut *conn).await? {
                    made.push(Notification::try_from(row)?);
                }
            }
            Ok(made)
        }

        /// A page of follows seen from `side` (`follower_id` for whom one follows,
        /// `followee_id` for one's followers); `other` names the listed person's column.
        async fn follow_page(
            pool: &sqlx::Pool<Db>,
            side: &str,
            other: &str,
            user_id: Uuid,
            limit: u32,
            offset: u32,
        ) -> Result<(Vec<Follow>, u64), StoreError> {
            let rows = sqlx::query_as::<_, FollowRow>(&format!(
                "SELECT {PERSON_COLUMNS}, f.followed_at
                 FROM follows f JOIN users u ON u.id = f.{other}
                 WHERE f.{side} = $1
                 ORDER BY f.followed_at DESC, u.id DESC LIMIT $2 OFFSET $3"
            ))
            .bind(user_id)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM follows f JOIN users u ON u.id = f.{other}
                 WHERE f.{side} = $1"
            ))
            .bind(user_id)
            .fetch_one(pool)
            .await?;
            Ok((rows.into_iter().map(Follow::from).collect(), count(total)))
        }

        /// Recomputes a user's premium from their payments and bumps the revision.
        async fn resubscribe(conn: &mut Conn, user_id: Uuid) -> Result<SubscriptionState, StoreError> {
            let payments: Vec<(DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>)> =
                sqlx::query_as(
                    "SELECT paid_at, period_end, refunded_at FROM payments WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_all(&mut *conn)
                .await?;
            let cancelled_at: Option<Option<DateTime<Utc>>> =
                sqlx::query_scalar("SELECT cancelled_at FROM subscriptions WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let terms: Vec<PaymentTerm> = payments
                .into_iter()
                .map(|(paid_at, period_end, refunded_at)| PaymentTerm {
                    paid_at,
                    period_end,
                    refunded: refunded_at.is_some(),
                })
                .collect();
            let premium_until = billing::premium_until(&terms, cancelled_at.flatten());
            let revision: i64 = sqlx::query_scalar(
                "INSERT INTO subscriptions (user_id, premium_until, revision) VALUES ($1, $2, 1)
                 ON CONFLICT (user_id) DO UPDATE SET premium_until = excluded.premium_until,
                     revision = subscriptions.revision + 1
                 RETURNING revision",
            )
            .bind(user_id)
            .bind(premium_until)
            .fetch_one(&mut *conn)
            .await?;
            Ok(SubscriptionState {
                user_id,
                premium_until,
                revision: u64::try_from(revision).unwrap_or_default(),
            })
        }
    };
}

pub(super) use sql_store;

/// Names the sqlx database an adapter runs on, for helpers generic over connections.
pub(super) trait Engine {
    type Database: sqlx::Database;
}

impl Engine for super::SqlitePeopleStore {
    type Database = sqlx::Sqlite;
}

impl Engine for super::PostgresPeopleStore {
    type Database = sqlx::Postgres;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(like_literal("Ann_50%"), "ann\\_50\\%");
        assert_eq!(like_literal("a\\b"), "a\\\\b");
    }
}

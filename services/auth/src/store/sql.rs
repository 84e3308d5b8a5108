//! The SQL both adapters run. `sql_store!` implements [`AuthStore`] for an adapter type
//! holding a `pool` field of its engine's pool type.

use chrono::{DateTime, Utc};
use kernel::grant::SessionGrant;
use uuid::Uuid;

use super::{StoreError, parse_role, parse_tier};
use crate::domain::{RefreshRecord, Session, User, tier_at};

pub(super) const USER_COLUMNS: &str =
    "id, email, display_name, tier, role, created_at, premium_until";

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    tier: String,
    role: String,
    created_at: DateTime<Utc>,
    premium_until: Option<DateTime<Utc>>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        let (tier, premium_until) = tier_at(parse_tier(&row.tier)?, row.premium_until, Utc::now());
        Ok(Self {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            tier,
            role: parse_role(&row.role)?,
            created_at: row.created_at,
            premium_until,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl TryFrom<CredentialsRow> for (User, String) {
    type Error = StoreError;
    fn try_from(row: CredentialsRow) -> Result<Self, StoreError> {
        Ok((row.user.try_into()?, row.password_hash))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct GrantRow {
    session_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    tier: String,
    role: String,
    premium_until: Option<DateTime<Utc>>,
}

impl GrantRow {
    pub(super) fn live_at(self, now: DateTime<Utc>) -> Result<Option<SessionGrant>, StoreError> {
        if self.revoked_at.is_some() || self.expires_at <= now {
            return Ok(None);
        }
        let (tier, premium_until) = tier_at(parse_tier(&self.tier)?, self.premium_until, now);
        Ok(Some(SessionGrant {
            user_id: self.user_id,
            session_id: self.session_id,
            tier,
            role: parse_role(&self.role)?,
            checked_at: now,
            premium_until,
        }))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    id: Uuid,
    user_id: Uuid,
    created_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    user_agent: Option<String>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
            expires_at: row.expires_at,
            user_agent: row.user_agent,
            revoked_at: row.revoked_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RefreshRow {
    session_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    session_revoked_at: Option<DateTime<Utc>>,
    session_expires_at: DateTime<Utc>,
}

impl From<RefreshRow> for RefreshRecord {
    fn from(row: RefreshRow) -> Self {
        Self {
            session_id: row.session_id,
            user_id: row.user_id,
            expires_at: row.expires_at,
            rotated_at: row.rotated_at,
            session_revoked_at: row.session_revoked_at,
            session_expires_at: row.session_expires_at,
        }
    }
}

macro_rules! sql_store {
    ($adapter:ty, $migrations:literal) => {
        use async_trait::async_trait;
        use chrono::{DateTime, Utc};
        use bus::Envelope;
        use kernel::grant::{Role, SessionGrant, Tier};
        use uuid::Uuid;

        use super::{
            AuthStore, SigningKeyRecord, StoreError,
            sql::{
                CredentialsRow, GrantRow, RefreshRow, SessionRow, USER_COLUMNS,
                UserRow,
            },
        };
        use crate::domain::{DisplayName, Email, NewSession, NewUser, RefreshRecord, Session, User};

        #[async_trait]
        impl AuthStore for $adapter {
            async fn migrate(&self) -> Result<(), StoreError> {
                sqlx::migrate!($migrations).run(&self.pool).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn create_user(&self, new: &NewUser, event: &Envelope) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                let user = &new.user;
                sqlx::query(
                    "INSERT INTO users (id, email, password_hash, display_name, tier, role, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(user.id)
                .bind(&user.email)
                .bind(&new.password_hash)
                .bind(&user.display_name)
                .bind(user.tier.as_str())
                .bind(user.role.as_str())
                .bind(user.created_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::conflict_or)?;
                insert_event(&mut *tx, event).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn credentials(&self, email: &Email) -> Result<Option<(User, String)>, StoreError> {
                sqlx::query_as::<_, CredentialsRow>(&format!(
                    "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1"
                ))
                .bind(email.as_str())
                .fetch_optional(&self.pool)
                .await?
                .map(TryInto::try_into)
                .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
                sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(TryInto::try_into)
                    .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn password_hash(&self, id: Uuid) -> Result<Option<String>, StoreError> {
                Ok(sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn rename(
                &self,
                id: Uuid,
                name: &DisplayName,
                now: DateTime<Utc>,
                event: &Envelope,
            ) -> Result<Option<User>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let user: Option<User> = sqlx::query_as::<_, UserRow>(&format!(
                    "UPDATE users SET display_name = $2, updated_at = $3 WHERE id = $1 RETURNING {USER_COLUMNS}"
                ))
                .bind(id)
                .bind(name.as_str())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
                .map(TryInto::try_into)
                .transpose()?;
                if user.is_some() {
                    insert_event(&mut *tx, event).await?;
                }
                tx.commit().await?;
                Ok(user)
            }

            #[tracing::instrument(skip_all)]
            async fn apply_premium(
                &self,
                consumer: &str,
                event_id: Uuid,
                user_id: Uuid,
                premium_until: Option<DateTime<Utc>>,
                revision: u64,
            ) -> Result<Option<Vec<Uuid>>, StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(None);
                }
                // An older revision arriving late changes nothing.
                let updated: Option<Uuid> = sqlx::query_scalar(
                    "UPDATE users SET premium_until = $2, premium_revision = $3
                     WHERE id = $1 AND premium_revision < $3 RETURNING id",
                )
                .bind(user_id)
                .bind(premium_until)
                .bind(i64::try_from(revision).unwrap_or(i64::MAX))
                .fetch_optional(&mut *tx)
                .await?;
                if updated.is_none() {
                    tx.commit().await?;
                    return Ok(None);
                }
                let sessions: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
                )
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(sessions))
            }

            #[tracing::instrument(skip_all)]
            async fn change_password(
                &self,
                id: Uuid,
                password_hash: &str,
                keep: Uuid,
                now: DateTime<Utc>,
            ) -> Result<Vec<Uuid>, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(password_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let revoked: Vec<Uuid> = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $3
                     WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id",
                )
                .bind(id)
                .bind(keep)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(revoked)
            }

            #[tracing::instrument(skip_all)]
            async fn set_access(
                &self,
                email: &Email,
                tier: Option<Tier>,
                role: Option<Role>,
                now: DateTime<Utc>,
            ) -> Result<Option<(User, Vec<Uuid>)>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let user: Option<User> = sqlx::query_as::<_, UserRow>(&format!(
                    "UPDATE users SET tier = COALESCE($2, tier), role = COALESCE($3, role), updated_at = $4
                     WHERE email = $1 RETURNING {USER_COLUMNS}"
                ))
                .bind(email.as_str())
                .bind(tier.map(Tier::as_str))
                .bind(role.map(Role::as_str))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
                .map(TryInto::try_into)
                .transpose()?;
                let Some(user) = user else { return Ok(None) };
                let sessions: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
                )
                .bind(user.id)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some((user, sessions)))
            }

            #[tracing::instrument(skip_all)]
            async fn delete_user(&self, id: Uuid, event: &Envelope) -> Result<Vec<Uuid>, StoreError> {
                let mut tx = self.pool.begin().await?;
                // A write first: on SQLite a transaction that reads first holds a read lock
                // it may not be able to upgrade when another writer got in between.
                let sessions: Vec<Uuid> =
                    sqlx::query_scalar("DELETE FROM sessions WHERE user_id = $1 RETURNING id")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                // Refresh tokens went with their sessions (ON DELETE CASCADE).
                sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
                insert_event(&mut *tx, event).await?;
                tx.commit().await?;
                Ok(sessions)
            }

            #[tracing::instrument(skip_all)]
            async fn create_session(&self, new: &NewSession) -> Result<(), StoreError> {
                let session = &new.session;
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, user_agent)
                     VALUES ($1, $2, $3, $3, $4, $5)",
                )
                .bind(session.id)
                .bind(session.user_id)
                .bind(session.created_at)
                .bind(session.expires_at)
                .bind(&session.user_agent)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(new.refresh.hash())
                .bind(session.id)
                .bind(session.created_at)
                .bind(new.refresh_expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn grant(
                &self,
                session_id: Uuid,
                now: DateTime<Utc>,
            ) -> Result<Option<SessionGrant>, StoreError> {
                let row = sqlx::query_as::<_, GrantRow>(
                    "SELECT s.id AS session_id, s.user_id, s.expires_at, s.revoked_at, u.tier, u.role,
                         u.premium_until
                     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
                )
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(row) => row.live_at(now),
                    None => Ok(None),
                }
            }

            #[tracing::instrument(skip_all)]
            async fn sessions(&self, user_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Session>, StoreError> {
                let rows = sqlx::query_as::<_, SessionRow>(
                    "SELECT id, user_id, created_at, last_seen_at, expires_at, user_agent, revoked_at
                     FROM sessions WHERE user_id = $1 AND revoked_at IS NULL
                     ORDER BY created_at DESC, id DESC",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Session::from).filter(|s| s.expires_at > now).collect())
            }

            #[tracing::instrument(skip_all)]
            async fn revoke_session(
                &self,
                user_id: Uuid,
                session_id: Uuid,
                now: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let result = sqlx::query(
                    "UPDATE sessions SET revoked_at = $3 WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL",
                )
                .bind(user_id)
                .bind(session_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn refresh_record(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
                Ok(sqlx::query_as::<_, RefreshRow>(
                    "SELECT t.session_id, s.user_id, t.expires_at, t.rotated_at,
                            s.revoked_at AS session_revoked_at, s.expires_at AS session_expires_at
                     FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
                     WHERE t.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?
                .map(RefreshRecord::from))
            }

            #[tracing::instrument(skip_all)]
            async fn rotate_refresh(
                &self,
                presented: &str,
                next: &str,
                next_expires_at: DateTime<Utc>,
                session_id: Uuid,
                now: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let retired = sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = $2 WHERE token_hash = $1 AND rotated_at IS NULL",
                )
                .bind(presented)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if retired.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(next)
                .bind(session_id)
                .bind(now)
                .bind(next_expires_at)
                .execute(&mut *tx)
                .await?;
                // Each rotation extends the session as far as its newest refresh token.
                sqlx::query("UPDATE sessions SET last_seen_at = $2, expires_at = $3 WHERE id = $1")
                    .bind(session_id)
                    .bind(now)
                    .bind(next_expires_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            #[tracing::instrument(skip_all)]
            async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
                let rows: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT kid, private_key_pem, public_key, created_at FROM signing_keys
                     ORDER BY created_at DESC, kid DESC",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(kid, private_key_pem, public_key, created_at)| SigningKeyRecord {
                        kid,
                        private_key_pem,
                        public_key,
                        created_at,
                    })
                    .collect())
            }

            #[tracing::instrument(skip_all)]
            async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, private_key_pem, public_key, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (kid) DO NOTHING",
                )
                .bind(&key.kid)
                .bind(&key.private_key_pem)
                .bind(&key.public_key)
                .bind(key.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }

        bus::sql_outbox_store!($adapter);

        async fn insert_event<'c, E>(executor: E, event: &Envelope) -> Result<(), StoreError>
        where
            E: sqlx::Executor<'c, Database = <$adapter as super::sql::Engine>::Database>,
        {
            Ok(bus::outbox::sql::insert(executor, event).await?)
        }
    };
}

pub(super) use sql_store;

/// Names the sqlx database an adapter runs on, for helpers generic over executors.
pub(super) trait Engine {
    type Database: sqlx::Database;
}

impl Engine for super::SqliteAuthStore {
    type Database = sqlx::Sqlite;
}

impl Engine for super::PostgresAuthStore {
    type Database = sqlx::Postgres;
}

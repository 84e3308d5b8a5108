//! Asking the auth service about an account whose `user.registered` has not arrived yet,
//! so that a person can be followed the moment they exist. In one process the app
//! implements [`Accounts`] over the auth service itself; deployed alone, this service uses
//! [`RemoteAccounts`] against auth's internal route.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// An account as the auth service describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub display_name: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// The account, or `None` when there is none. An error means auth could not be asked.
    async fn account(&self, id: Uuid) -> Result<Option<Account>, String>;
    /// The account with this email, or `None`.
    async fn account_by_email(&self, email: &str) -> Result<Option<Account>, String>;
}

/// The auth service across the network.
pub struct RemoteAccounts {
    base_url: String,
    client: reqwest::Client,
    /// Auth's internal routes answer only requests proven with the deployment's secret.
    key: kernel::internal::InternalKey,
}

impl RemoteAccounts {
    pub fn new(base_url: &str, key: kernel::internal::InternalKey) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            // Below the server's keep-alive (75 s): never reuse a connection it is closing.
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { base_url: base_url.trim_end_matches('/').to_owned(), client, key })
    }
}

#[async_trait]
impl Accounts for RemoteAccounts {
    async fn account(&self, id: Uuid) -> Result<Option<Account>, String> {
        self.ask(self.client.get(format!("{}/internal/v1/users/{id}", self.base_url))).await
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<Account>, String> {
        let url = format!("{}/internal/v1/users", self.base_url);
        self.ask(self.client.get(url).query(&[("email", email)])).await
    }
}

impl RemoteAccounts {
    async fn ask(&self, request: reqwest::RequestBuilder) -> Result<Option<Account>, String> {
        let mut headers = axum::http::HeaderMap::new();
        self.key.prove_now(&mut headers);
        let reply = request.headers(headers).send().await.map_err(|error| error.to_string())?;
        match reply.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                reply.json().await.map(Some).map_err(|e| e.to_string())
            }
            status => Err(format!("the auth service answered {status}")),
        }
    }
}

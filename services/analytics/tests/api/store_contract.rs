//! One contract for every `AnalyticsStore` adapter: each case below runs once on SQLite and
//! once on PostgreSQL (`sqlite::*`, `postgres::*`), each time on a fresh database.
//! PostgreSQL must be running (see `testkit`); its cases fail, never skip, when it is
//! unreachable.

use std::sync::Arc;

use analytics::store::AnalyticsStore;
use bus::{Envelope, events::SongPlayed};
use chrono::{DateTime, Utc};
use kernel::db::SqlPool;
use uuid::Uuid;

macro_rules! store_contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            store_contract!(@engine sqlite; $($case),*);
        }

        mod postgres {
            store_contract!(@engine postgres; $($case),*);
        }
    };
    (@engine $engine:ident; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = super::StoreFixture::$engine().await;
                super::$case(&fixture).await;
                fixture.finish().await;
            }
        )*
    };
}

store_contract!(
    plays_are_accepted_once_per_play_id,
    forgetting_a_user_deletes_their_accepted_plays_alone,
);

/// A store on a database of its own, removed again by [`StoreFixture::finish`].
struct StoreFixture {
    store: Arc<dyn AnalyticsStore>,
    database: testkit::TestDatabase,
}

impl StoreFixture {
    async fn sqlite() -> Self {
        Self::open(testkit::TestDatabase::sqlite().await).await
    }

    async fn postgres() -> Self {
        Self::open(testkit::TestDatabase::postgres().await).await
    }

    async fn open(database: testkit::TestDatabase) -> Self {
        let store = analytics::store::open(database.pool().clone())
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the test database: {error}"));
        Self { store, database }
    }

    /// How many accepted plays `user_id` has, read behind the store's back.
    async fn accepted_plays_of(&self, user_id: Uuid) -> i64 {
        let sql = "SELECT COUNT(*) FROM accepted_plays WHERE user_id = $1";
        match self.database.pool() {
            SqlPool::Sqlite(pool) => sqlx::query_scalar(sql).bind(user_id).fetch_one(pool).await,
            SqlPool::Postgres(pool) => sqlx::query_scalar(sql).bind(user_id).fetch_one(pool).await,
        }
        .unwrap_or_else(|error| panic!("cannot count accepted plays: {error}"))
    }

    async fn finish(self) {
        drop(self.store);
        self.database.finish().await;
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

/// `count` plays by `user_id`, each with its `song.played` event.
fn plays(user_id: Uuid, count: usize, at: DateTime<Utc>) -> Vec<(Uuid, Uuid, Envelope)> {
    (0..count)
        .map(|_| {
            let played = SongPlayed {
                play_id: Uuid::now_v7(),
                user_id,
                track_id: Uuid::now_v7(),
                played_ms: 42_000,
                duration_ms: 180_000,
                stream: true,
                started_at: at,
                context: None,
            };
            (played.play_id, user_id, Envelope::new(&played, at))
        })
        .collect()
}

async fn plays_are_accepted_once_per_play_id(fixture: &StoreFixture) {
    let store = &fixture.store;
    let (user, at) = (Uuid::now_v7(), now());
    let first = plays(user, 3, at);
    assert_eq!(store.accept_plays(&first, at).await.unwrap(), 3);
    // A client's retry, with one play it had not sent yet.
    let mut retry = first.clone();
    retry.extend(plays(user, 1, at));
    assert_eq!(store.accept_plays(&retry, at).await.unwrap(), 1);
    assert_eq!(fixture.accepted_plays_of(user).await, 4);
}

async fn forgetting_a_user_deletes_their_accepted_plays_alone(fixture: &StoreFixture) {
    let store = &fixture.store;
    let (ada, bob, at) = (Uuid::now_v7(), Uuid::now_v7(), now());
    assert_eq!(store.accept_plays(&plays(ada, 3, at), at).await.unwrap(), 3);
    assert_eq!(store.accept_plays(&plays(bob, 2, at), at).await.unwrap(), 2);

    assert_eq!(store.forget_user(ada).await.unwrap(), 3);
    assert_eq!(fixture.accepted_plays_of(ada).await, 0);
    assert_eq!(fixture.accepted_plays_of(bob).await, 2);

    // A redelivered `user.deleted` finds nothing left; so does a user with no plays.
    assert_eq!(store.forget_user(ada).await.unwrap(), 0);
    assert_eq!(store.forget_user(Uuid::now_v7()).await.unwrap(), 0);
    assert_eq!(fixture.accepted_plays_of(bob).await, 2);
}

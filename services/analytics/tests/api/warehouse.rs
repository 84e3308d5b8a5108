//! One contract for every `Warehouse` adapter: each case below runs once on the embedded
//! warehouse and once on ClickHouse (`embedded::*`, `clickhouse::*`), each time on a fresh
//! database, and compares the answers with a reference computed here from the facts
//! themselves. ClickHouse must be running (`TONEARM_TEST_CLICKHOUSE_URL`); its cases fail,
//! never skip, when it is unreachable.

use std::{
    any::Any,
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
};

use analytics::{
    domain::{
        ActivePoint, ActivityFact, Bucketing, DAY_MS, HOUR_MS, HistoryEntry, PlayFact, PlayPoint,
        RequestFact, RouteStats, TrackPlays, Window, quantile,
    },
    warehouse::{Warehouse, clickhouse::ClickHouseWarehouse, embedded::EmbeddedWarehouse},
};
use chrono::DateTime;
use uuid::Uuid;

macro_rules! warehouse_contract {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            warehouse_contract!(@engine embedded; $($case),*);
        }

        mod clickhouse {
            warehouse_contract!(@engine clickhouse; $($case),*);
        }
    };
    (@engine $engine:ident; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = super::Fixture::$engine().await;
                super::$case(fixture.warehouse.clone()).await;
            }
        )*
    };
}

warehouse_contract!(
    an_empty_warehouse_answers_nothing,
    answers_match_a_reference_computed_from_the_facts,
    plays_recorded_again_count_once,
    request_batches_count_once_with_exact_percentiles,
    ties_in_top_tracks_go_by_track_id_in_byte_order,
    forgotten_tracks_leave_top_tracks_and_histories,
    forgotten_users_leave_no_history_and_their_counts_stay,
);

/// A warehouse of one test's own, and what must live as long as it (its directory, its
/// ledger database).
struct Fixture {
    warehouse: Arc<dyn Warehouse>,
    _keep: Box<dyn Any + Send>,
}

impl Fixture {
    async fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let warehouse = open_embedded(&dir.path().join("warehouse.db")).await;
        Self { warehouse, _keep: Box::new(dir) }
    }

    async fn clickhouse() -> Self {
        let ledger = testkit::TestDatabase::sqlite().await;
        analytics::store::open(ledger.pool().clone()).await.expect("the ledger migrates");
        let url = format!("{}/tonearm_test_{}", testkit::clickhouse_url(), Uuid::now_v7().simple());
        let warehouse = ClickHouseWarehouse::connect(&url, ledger.pool().clone())
            .await
            .unwrap_or_else(|error| panic!("cannot connect to ClickHouse at {url}: {error}"));
        warehouse.migrate().await.expect("the ClickHouse warehouse migrates");
        Self { warehouse: Arc::new(warehouse), _keep: Box::new(ledger) }
    }
}

async fn open_embedded(path: &Path) -> Arc<dyn Warehouse> {
    let warehouse = EmbeddedWarehouse::open(path, 16).await.expect("the embedded warehouse opens");
    warehouse.migrate().await.expect("the embedded warehouse migrates");
    Arc::new(warehouse)
}

// ---------------------------------------------------------------------------------------
// Facts
// ---------------------------------------------------------------------------------------

/// The clock every case reads: a Tuesday afternoon, 40 days after a January, so the plays
/// span three calendar months and several weeks.
fn now_ms() -> i64 {
    DateTime::parse_from_rfc3339("2026-03-03T14:37:12.345Z").unwrap().timestamp_millis()
}

/// A window that starts on a day, so its every hour comes from the day rollup's view.
fn midnight_window(now: i64) -> i64 {
    Bucketing::Day.start_of(now - 5 * DAY_MS)
}

/// splitmix64: the same facts on every run and every engine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A time in `[from, from + span)`.
    fn time(&mut self, from: i64, span: i64) -> i64 {
        from + i64::try_from(self.below(u64::try_from(span).unwrap())).unwrap()
    }

    /// Skewed towards the front: a few tracks and users account for most plays.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let n = items.len() as u64;
        &items[usize::try_from(self.below(n).min(self.below(n))).unwrap()]
    }

    fn uuid(&mut self) -> Uuid {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.next().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next().to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

struct Dataset {
    now: i64,
    users: Vec<Uuid>,
    plays: Vec<PlayFact>,
    /// Activity other than plays: users who only like or register, and days on which
    /// players did something else.
    activity: Vec<ActivityFact>,
}

fn dataset(seed: u64) -> Dataset {
    let mut rng = Rng(seed);
    let now = now_ms();
    let tracks: Vec<Uuid> = (0..20).map(|_| rng.uuid()).collect();
    let users: Vec<Uuid> = (0..15).map(|_| rng.uuid()).collect();
    let mut plays = Vec::new();
    let mut play = |rng: &mut Rng, user_id: Uuid, played_at_ms: i64| {
        let stream = rng.below(10) < 6;
        let played_ms = if stream { 30_000 + rng.below(210_000) } else { rng.below(30_000) };
        let track_id = *rng.pick(&tracks);
        plays.push(PlayFact {
            play_id: rng.uuid(),
            user_id,
            track_id,
            played_at_ms,
            played_ms,
            stream,
        });
    };

    // Forty days of listening.
    for _ in 0..420 {
        let user = *rng.pick(&users);
        let at = rng.time(now - 40 * DAY_MS, 40 * DAY_MS);
        play(&mut rng, user, at);
    }
    // The last ninety minutes, so the one-hour window ranks several tracks.
    for _ in 0..30 {
        let user = *rng.pick(&users);
        let at = rng.time(now - 90 * 60_000, 90 * 60_000);
        play(&mut rng, user, at);
    }
    // A little ahead of the server's clock, as a client's may run.
    for _ in 0..3 {
        let user = *rng.pick(&users);
        let at = rng.time(now, 4 * 60_000);
        play(&mut rng, user, at);
    }
    // On the first millisecond of each window (and of a window starting at midnight), and
    // on the last one before it.
    let windows = [Window::Hour, Window::Day, Window::Week, Window::Month].map(|w| w.start_ms(now));
    for start in windows.into_iter().chain([midnight_window(now)]) {
        for at in [start, start - 1] {
            let user = *rng.pick(&users);
            play(&mut rng, user, at);
        }
    }
    // Plays by one user in the same millisecond, which history orders by play id.
    for _ in 0..3 {
        play(&mut rng, users[0], now - 3 * DAY_MS - 1_234);
    }
    // Tracks played once early in a day: windows starting later that day leave them out.
    for days_ago in [0, 1] {
        let played_at_ms = Bucketing::Day.start_of(now) - days_ago * DAY_MS + 2 * HOUR_MS + 60_000;
        plays.push(PlayFact {
            play_id: rng.uuid(),
            track_id: rng.uuid(),
            played_at_ms,
            ..plays[0]
        });
    }

    let mut activity = Vec::new();
    let idle: Vec<Uuid> = (0..5).map(|_| rng.uuid()).collect();
    for _ in 0..60 {
        let user_id = if rng.below(2) == 0 { *rng.pick(&idle) } else { *rng.pick(&users) };
        let at_ms = rng.time(now - 50 * DAY_MS, 50 * DAY_MS);
        activity.push(ActivityFact { user_id, at_ms });
        // The same user again that day: still one active user.
        activity.push(ActivityFact { user_id, at_ms: Bucketing::Day.start_of(at_ms) });
    }
    // Either side of midnight.
    let midnight = Bucketing::Day.start_of(now - 10 * DAY_MS);
    activity.push(ActivityFact { user_id: idle[0], at_ms: midnight });
    activity.push(ActivityFact { user_id: idle[1], at_ms: midnight - 1 });

    Dataset { now, users, plays, activity }
}

async fn record(warehouse: &dyn Warehouse, data: &Dataset) {
    let mut new = 0;
    // Batches of uneven sizes, as a consumer's polls deliver them.
    for batch in data.plays.chunks(97) {
        new += warehouse.record_plays(batch).await.unwrap();
    }
    assert_eq!(new, data.plays.len() as u64, "every play was new");
    let (first, second) = data.activity.split_at(data.activity.len() / 2);
    warehouse.record_activity(first).await.unwrap();
    warehouse.record_activity(second).await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The reference: the same questions answered from the facts in plain Rust.
// ---------------------------------------------------------------------------------------

fn reference_top_tracks(plays: &[PlayFact], from_ms: i64) -> Vec<TrackPlays> {
    let mut tracks: BTreeMap<Uuid, (u64, u64, BTreeSet<Uuid>)> = BTreeMap::new();
    for play in plays.iter().filter(|play| play.played_at_ms >= from_ms) {
        let (count, streams, listeners) = tracks.entry(play.track_id).or_default();
        *count += 1;
        *streams += u64::from(play.stream);
        listeners.insert(play.user_id);
    }
    let mut ranked: Vec<TrackPlays> = tracks
        .into_iter()
        .map(|(track_id, (plays, streams, listeners))| TrackPlays {
            track_id,
            plays,
            streams,
            listeners: listeners.len() as u64,
        })
        .collect();
    ranked.sort_by(|a, b| b.plays.cmp(&a.plays).then(a.track_id.cmp(&b.track_id)));
    ranked
}

/// Whether a bucket starting at `start` is one the series asks for.
fn in_series(bucketing: Bucketing, from_ms: i64, to_ms: i64, start: i64) -> bool {
    (bucketing.start_of(from_ms)..=to_ms).contains(&start)
}

fn reference_play_series(
    plays: &[PlayFact],
    bucketing: Bucketing,
    from_ms: i64,
    to_ms: i64,
) -> Vec<PlayPoint> {
    let mut buckets: BTreeMap<i64, (u64, u64, BTreeSet<Uuid>)> = BTreeMap::new();
    for play in plays {
        let start = bucketing.start_of(play.played_at_ms);
        if in_series(bucketing, from_ms, to_ms, start) {
            let (count, streams, listeners) = buckets.entry(start).or_default();
            *count += 1;
            *streams += u64::from(play.stream);
            listeners.insert(play.user_id);
        }
    }
    buckets
        .into_iter()
        .map(|(t_ms, (plays, streams, listeners))| PlayPoint {
            t_ms,
            plays,
            streams,
            listeners: listeners.len() as u64,
        })
        .collect()
}

fn reference_active_users(
    data: &Dataset,
    plays: &[PlayFact],
    bucketing: Bucketing,
    from_ms: i64,
    to_ms: i64,
) -> Vec<ActivePoint> {
    let facts = plays
        .iter()
        .map(|play| (play.user_id, play.played_at_ms))
        .chain(data.activity.iter().map(|fact| (fact.user_id, fact.at_ms)));
    let mut buckets: BTreeMap<i64, BTreeSet<Uuid>> = BTreeMap::new();
    for (user_id, at_ms) in facts {
        let start = bucketing.start_of(at_ms);
        if in_series(bucketing, from_ms, to_ms, start) {
            buckets.entry(start).or_default().insert(user_id);
        }
    }
    buckets
        .into_iter()
        .map(|(t_ms, users)| ActivePoint { t_ms, active_users: users.len() as u64 })
        .collect()
}

fn reference_history(plays: &[PlayFact], user_id: Uuid) -> Vec<HistoryEntry> {
    let mut entries: Vec<HistoryEntry> = plays
        .iter()
        .filter(|play| play.user_id == user_id)
        .map(|play| HistoryEntry {
            play_id: play.play_id,
            track_id: play.track_id,
            played_at_ms: play.played_at_ms,
            played_ms: play.played_ms,
        })
        .collect();
    entries.sort_by(|a, b| b.played_at_ms.cmp(&a.played_at_ms).then(b.play_id.cmp(&a.play_id)));
    entries
}

fn reference_routes(requests: &[RequestFact], from_ms: i64) -> Vec<RouteStats> {
    let mut routes: BTreeMap<(String, String), (Vec<u64>, u64)> = BTreeMap::new();
    for request in requests.iter().filter(|request| request.at_ms >= from_ms) {
        let (durations, errors) =
            routes.entry((request.method.clone(), request.route.clone())).or_default();
        durations.push(request.duration_us);
        *errors += u64::from(request.is_error());
    }
    let mut stats: Vec<RouteStats> = routes
        .into_iter()
        .map(|((method, route), (mut durations, errors))| {
            durations.sort_unstable();
            RouteStats {
                method,
                route,
                requests: durations.len() as u64,
                errors,
                p50_us: quantile(&durations, 0.5),
                p95_us: quantile(&durations, 0.95),
            }
        })
        .collect();
    stats.sort_by(|a, b| {
        b.requests.cmp(&a.requests).then(a.method.cmp(&b.method)).then(a.route.cmp(&b.route))
    });
    stats
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// Every question the service asks, answered as the reference answers it from `plays`
/// (each counted once) and the dataset's other activity.
async fn check_answers(warehouse: &dyn Warehouse, data: &Dataset, plays: &[PlayFact]) {
    let now = data.now;
    for window in [Window::Hour, Window::Day, Window::Week, Window::Month] {
        check_top_tracks(warehouse, plays, window.start_ms(now)).await;
    }
    check_top_tracks(warehouse, plays, midnight_window(now)).await;
    // Windows starting at every hour of the day split into whole days and hours
    // differently.
    for hours in 0..48 {
        let from_ms = Bucketing::Hour.start_of(now) - hours * HOUR_MS;
        let expected = reference_top_tracks(plays, from_ms);
        let answered = warehouse.top_tracks(from_ms, 100, 0).await.unwrap();
        assert_eq!(
            answered,
            (expected.clone(), expected.len() as u64),
            "top tracks from {from_ms}"
        );
    }

    let series = [
        (Bucketing::Hour, now - 3 * DAY_MS + 17 * 60_000, now - 2 * HOUR_MS + 5 * 60_000),
        (Bucketing::Hour, now - 2 * HOUR_MS, now + HOUR_MS),
        // Whole buckets at both ends: the first holds a play before `from`, the last
        // plays after `to`.
        (Bucketing::Hour, Window::Day.start_ms(now) + 30 * 60_000, now - 10 * 60_000),
        (Bucketing::Day, now - 35 * DAY_MS + 3 * HOUR_MS, now - DAY_MS),
        (Bucketing::Day, now - 45 * DAY_MS, now + DAY_MS),
    ];
    for (bucketing, from_ms, to_ms) in series {
        let expected = reference_play_series(plays, bucketing, from_ms, to_ms);
        assert!(expected.len() > 1, "the facts fill several buckets");
        let mut answered = warehouse.play_series(bucketing, from_ms, to_ms).await.unwrap();
        answered.sort_by_key(|point| point.t_ms);
        assert_eq!(answered, expected, "play series by {bucketing:?} over [{from_ms}, {to_ms}]");
    }

    let periods = [
        (Bucketing::Day, now - 55 * DAY_MS, now),
        (Bucketing::Day, now - 20 * DAY_MS + 5 * HOUR_MS, now - 6 * DAY_MS),
        (Bucketing::Week, now - 55 * DAY_MS, now),
        (Bucketing::Week, now - 20 * DAY_MS + 5 * HOUR_MS, now - 6 * DAY_MS),
        (Bucketing::Month, now - 55 * DAY_MS, now),
        (Bucketing::Month, now - 40 * DAY_MS + 5 * HOUR_MS, now - 6 * DAY_MS),
    ];
    for (bucketing, from_ms, to_ms) in periods {
        let expected = reference_active_users(data, plays, bucketing, from_ms, to_ms);
        assert!(expected.len() > 1, "the facts fill several buckets");
        let mut answered = warehouse.active_users(bucketing, from_ms, to_ms).await.unwrap();
        answered.sort_by_key(|point| point.t_ms);
        assert_eq!(answered, expected, "active users by {bucketing:?} over [{from_ms}, {to_ms}]");
    }

    for user_id in [data.users[0], data.users[1], data.users[14], Uuid::now_v7()] {
        check_history(warehouse, plays, user_id).await;
    }
}

async fn check_top_tracks(warehouse: &dyn Warehouse, plays: &[PlayFact], from_ms: i64) {
    let expected = reference_top_tracks(plays, from_ms);
    assert!(expected.len() > 2, "the facts rank several tracks from {from_ms}");
    let total = expected.len() as u64;
    for limit in [7_u32, 100] {
        let mut offset = 0;
        loop {
            let (page, answered_total) =
                warehouse.top_tracks(from_ms, limit, offset).await.unwrap();
            let wanted: Vec<TrackPlays> =
                expected.iter().skip(offset as usize).take(limit as usize).copied().collect();
            assert_eq!(page, wanted, "top tracks from {from_ms}, limit {limit}, offset {offset}");
            assert_eq!(answered_total, total, "tracks played from {from_ms}, offset {offset}");
            // The first empty page is past the end, and still has the total.
            if page.is_empty() {
                break;
            }
            offset += limit;
        }
    }
}

async fn check_history(warehouse: &dyn Warehouse, plays: &[PlayFact], user_id: Uuid) {
    let expected = reference_history(plays, user_id);
    let total = expected.len() as u64;
    let limit = 6_u32;
    let mut offset = 0;
    loop {
        let (page, answered_total) = warehouse.history(user_id, limit, offset).await.unwrap();
        let wanted: Vec<HistoryEntry> =
            expected.iter().skip(offset as usize).take(limit as usize).copied().collect();
        assert_eq!(page, wanted, "history of {user_id}, offset {offset}");
        assert_eq!(answered_total, total, "plays of {user_id}");
        if page.is_empty() {
            break;
        }
        offset += limit;
    }
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

async fn an_empty_warehouse_answers_nothing(warehouse: Arc<dyn Warehouse>) {
    let now = now_ms();
    warehouse.ping().await.unwrap();
    assert_eq!(
        warehouse.top_tracks(Window::Month.start_ms(now), 10, 0).await.unwrap(),
        (vec![], 0)
    );
    assert!(
        warehouse.play_series(Bucketing::Day, now - 30 * DAY_MS, now).await.unwrap().is_empty()
    );
    assert!(
        warehouse.active_users(Bucketing::Month, now - 90 * DAY_MS, now).await.unwrap().is_empty()
    );
    assert!(warehouse.api_routes(now - DAY_MS).await.unwrap().is_empty());
    assert_eq!(warehouse.history(Uuid::now_v7(), 10, 0).await.unwrap(), (vec![], 0));
    assert_eq!(warehouse.record_plays(&[]).await.unwrap(), 0);
}

async fn answers_match_a_reference_computed_from_the_facts(warehouse: Arc<dyn Warehouse>) {
    let data = dataset(7);
    record(&*warehouse, &data).await;
    check_answers(&*warehouse, &data, &data.plays).await;
}

async fn plays_recorded_again_count_once(warehouse: Arc<dyn Warehouse>) {
    let data = dataset(11);
    record(&*warehouse, &data).await;

    // A consumer that saw everything again, in other batches.
    for batch in data.plays.chunks(250) {
        assert_eq!(warehouse.record_plays(batch).await.unwrap(), 0, "nothing was new");
    }
    warehouse.record_activity(&data.activity).await.unwrap();

    // A batch repeating a play inside itself, then one repeating a play of the one before.
    let mut rng = Rng(99);
    let fresh = |rng: &mut Rng, at: i64| PlayFact {
        play_id: rng.uuid(),
        user_id: data.users[2],
        track_id: data.plays[0].track_id,
        played_at_ms: at,
        played_ms: 45_000,
        stream: true,
    };
    let (a, b, c) = (
        fresh(&mut rng, data.now - 20 * 60_000),
        fresh(&mut rng, data.now - 2 * DAY_MS),
        fresh(&mut rng, data.now - 9 * DAY_MS),
    );
    assert_eq!(warehouse.record_plays(&[a, b, a]).await.unwrap(), 2);
    assert_eq!(warehouse.record_plays(&[b, c, c, data.plays[5]]).await.unwrap(), 1);

    let mut plays = data.plays.clone();
    plays.extend([a, b, c]);
    check_answers(&*warehouse, &data, &plays).await;
}

fn request(method: &str, route: &str, status: u16, duration_us: u64, at_ms: i64) -> RequestFact {
    RequestFact { method: method.into(), route: route.into(), status, duration_us, at_ms }
}

async fn request_batches_count_once_with_exact_percentiles(warehouse: Arc<dyn Warehouse>) {
    let now = now_ms();
    let from_ms = now - HOUR_MS;
    let mut rng = Rng(3);
    let track = "/v1/tracks/{id}";

    let mut first = Vec::new();
    for n in 0..40 {
        let status = match n {
            3 => 500,
            17 => 503,
            21 => 404,
            22 => 499,
            _ => 200,
        };
        first.push(request(
            "GET",
            track,
            status,
            100 + rng.below(50_000),
            rng.time(from_ms, HOUR_MS),
        ));
    }
    for _ in 0..10 {
        first.push(request(
            "POST",
            "/v1/me/plays",
            202,
            800 + rng.below(9_000),
            rng.time(from_ms, HOUR_MS),
        ));
    }
    // Before the window: were it counted, the route's errors and p95 would change.
    first.push(request("GET", track, 500, 9_000_000, from_ms - 1));

    let mut second = Vec::new();
    for _ in 0..25 {
        second.push(request(
            "GET",
            track,
            200,
            100 + rng.below(80_000),
            rng.time(from_ms, HOUR_MS),
        ));
    }
    // As many requests as POST /v1/me/plays: ties go by method, then route.
    for _ in 0..9 {
        second.push(request(
            "GET",
            "/v1/search",
            200,
            rng.below(3_000),
            rng.time(from_ms, HOUR_MS),
        ));
    }
    second.push(request("GET", "/v1/search", 502, 12, from_ms));
    for _ in 0..10 {
        second.push(request(
            "GET",
            "/v1/albums/{id}",
            200,
            rng.below(3_000),
            rng.time(from_ms, HOUR_MS),
        ));
    }

    let (first_id, second_id) = (Uuid::now_v7(), Uuid::now_v7());
    assert!(warehouse.record_requests(first_id, &first).await.unwrap());
    assert!(warehouse.record_requests(second_id, &second).await.unwrap());

    let all: Vec<RequestFact> = first.iter().chain(&second).cloned().collect();
    let expected = reference_routes(&all, from_ms);
    let routes: Vec<(&str, &str)> =
        expected.iter().map(|stats| (stats.method.as_str(), stats.route.as_str())).collect();
    assert_eq!(
        routes,
        [
            ("GET", track),
            ("GET", "/v1/albums/{id}"),
            ("GET", "/v1/search"),
            ("POST", "/v1/me/plays")
        ],
        "the reference ranks as the contract says"
    );
    assert_eq!(expected[0].errors, 2);
    assert_eq!(warehouse.api_routes(from_ms).await.unwrap(), expected);

    // A redelivered batch, even one that differs, counts nothing.
    assert!(!warehouse.record_requests(first_id, &first).await.unwrap());
    assert!(!warehouse.record_requests(second_id, &first).await.unwrap());
    assert_eq!(warehouse.api_routes(from_ms).await.unwrap(), expected);
    assert_eq!(
        warehouse.api_routes(from_ms - 1).await.unwrap(),
        reference_routes(&all, from_ms - 1)
    );
}

async fn ties_in_top_tracks_go_by_track_id_in_byte_order(warehouse: Arc<dyn Warehouse>) {
    let now = now_ms();
    // Ids whose byte order differs from the order of their 64-bit halves, either way round.
    let ids = [
        "01000000-0000-0000-0000-000000000000",
        "00000000-0000-0001-0000-000000000000",
        "00000000-0000-0000-ffff-ffffffffffff",
        "ff000000-0000-0000-0000-000000000001",
        "80000000-0000-0000-0000-000000000000",
    ];
    let tracks: Vec<Uuid> = ids.iter().map(|id| Uuid::parse_str(id).unwrap()).collect();
    let user = Uuid::now_v7();
    let mut plays = Vec::new();
    for (n, &track_id) in tracks.iter().enumerate() {
        // The last track has one more play than the rest.
        let count = if n == tracks.len() - 1 { 3 } else { 2 };
        for k in 0..count {
            plays.push(PlayFact {
                play_id: Uuid::now_v7(),
                user_id: user,
                track_id,
                played_at_ms: now - (k + 1) * 60_000,
                played_ms: 1_000,
                stream: false,
            });
        }
    }
    assert_eq!(warehouse.record_plays(&plays).await.unwrap(), plays.len() as u64);

    let from = Window::Day.start_ms(now);
    let (page, total) = warehouse.top_tracks(from, 10, 0).await.unwrap();
    let order: Vec<String> = page.iter().map(|track| track.track_id.to_string()).collect();
    assert_eq!(
        order,
        [
            "80000000-0000-0000-0000-000000000000",
            "00000000-0000-0000-ffff-ffffffffffff",
            "00000000-0000-0001-0000-000000000000",
            "01000000-0000-0000-0000-000000000000",
            "ff000000-0000-0000-0000-000000000001",
        ]
    );
    assert_eq!(total, 5);
    assert_eq!(page, reference_top_tracks(&plays, from));
    let (second, _) = warehouse.top_tracks(from, 2, 2).await.unwrap();
    assert_eq!(second, page[2..4]);
}

/// A play of `track_id` by `user_id` at `played_at_ms`, a stream of 42 s.
fn play_of(user_id: Uuid, track_id: Uuid, played_at_ms: i64) -> PlayFact {
    PlayFact {
        play_id: Uuid::now_v7(),
        user_id,
        track_id,
        played_at_ms,
        played_ms: 42_000,
        stream: true,
    }
}

/// Every page of top tracks from `from_ms` and of the histories of `users` as the
/// reference answers them from `plays`, the totals included.
async fn check_pages(warehouse: &dyn Warehouse, plays: &[PlayFact], from_ms: i64, users: &[Uuid]) {
    let expected = reference_top_tracks(plays, from_ms);
    assert_eq!(
        warehouse.top_tracks(from_ms, 100, 0).await.unwrap(),
        (expected.clone(), expected.len() as u64),
        "top tracks from {from_ms}"
    );
    // A page past the end still has the total.
    let past = u32::try_from(expected.len()).unwrap();
    assert_eq!(
        warehouse.top_tracks(from_ms, 10, past).await.unwrap(),
        (vec![], expected.len() as u64)
    );
    for &user_id in users {
        check_history(warehouse, plays, user_id).await;
    }
}

async fn forgotten_tracks_leave_top_tracks_and_histories(warehouse: Arc<dyn Warehouse>) {
    let now = now_ms();
    let from = Window::Week.start_ms(now);
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (doomed, kept, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // The doomed track is the most played, over whole days and the hours of the first.
    let mut plays = vec![
        play_of(ada, doomed, now - 3 * DAY_MS),
        play_of(ada, kept, now - 2 * HOUR_MS),
        play_of(bob, doomed, from + 60_000),
        play_of(bob, doomed, now - 5 * 60_000),
        play_of(bob, kept, now - DAY_MS),
        play_of(bob, other, now - 4 * DAY_MS),
    ];
    assert_eq!(warehouse.record_plays(&plays).await.unwrap(), 6);
    check_pages(&*warehouse, &plays, from, &[ada, bob]).await;
    let series_before = warehouse.play_series(Bucketing::Day, from, now).await.unwrap();

    warehouse.forget_tracks(&[doomed]).await.unwrap();
    let remaining: Vec<PlayFact> =
        plays.iter().filter(|play| play.track_id != doomed).copied().collect();
    // Items and total agree: one play of Ada's is left, and one play it is.
    let (page, total) = warehouse.history(ada, 10, 0).await.unwrap();
    assert_eq!((page.len(), total), (1, 1));
    assert_eq!(page[0].track_id, kept);
    let (top, tracks) = warehouse.top_tracks(from, 10, 0).await.unwrap();
    assert_eq!(tracks, 2);
    let ranked: Vec<Uuid> = top.iter().map(|track| track.track_id).collect();
    assert_eq!(ranked, [kept, other]);
    check_pages(&*warehouse, &remaining, from, &[ada, bob]).await;

    // Forgetting again, with a duplicate and a track never played, changes nothing.
    warehouse.forget_tracks(&[doomed, doomed, Uuid::now_v7()]).await.unwrap();
    warehouse.forget_tracks(&[]).await.unwrap();
    check_pages(&*warehouse, &remaining, from, &[ada, bob]).await;

    // A play of the track counted after it was forgotten is left out as well.
    let late = play_of(ada, doomed, now - 60_000);
    assert_eq!(warehouse.record_plays(&[late]).await.unwrap(), 1);
    check_pages(&*warehouse, &remaining, from, &[ada, bob]).await;

    // Series still count the listening that happened.
    plays.push(late);
    let mut series = warehouse.play_series(Bucketing::Day, from, now).await.unwrap();
    series.sort_by_key(|point| point.t_ms);
    assert_eq!(series, reference_play_series(&plays, Bucketing::Day, from, now));
    assert_eq!(
        series_before.iter().map(|point| point.plays).sum::<u64>() + 1,
        series.iter().map(|point| point.plays).sum::<u64>()
    );
}

async fn forgotten_users_leave_no_history_and_their_counts_stay(warehouse: Arc<dyn Warehouse>) {
    let now = now_ms();
    let from = Window::Month.start_ms(now);
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    // Ada plays both tracks over several hours and days, twice in one hour; Bob shares
    // some of those hours and days with her.
    let ada_plays = vec![
        play_of(ada, first, now - 10 * DAY_MS),
        play_of(ada, first, now - 2 * HOUR_MS),
        play_of(ada, first, now - 2 * HOUR_MS + 60_000),
        play_of(ada, second, now - 2 * HOUR_MS + 120_000),
        play_of(ada, second, now - DAY_MS),
    ];
    let bob_plays = vec![
        play_of(bob, first, now - 2 * HOUR_MS + 30_000),
        play_of(bob, second, now - DAY_MS - HOUR_MS),
        play_of(bob, second, now - 20 * DAY_MS),
    ];
    let plays: Vec<PlayFact> = ada_plays.iter().chain(&bob_plays).copied().collect();
    assert_eq!(warehouse.record_plays(&plays).await.unwrap(), 8);
    // Days on which Ada only liked something.
    let likes = [
        ActivityFact { user_id: ada, at_ms: now - 15 * DAY_MS },
        ActivityFact { user_id: bob, at_ms: now - 15 * DAY_MS },
        ActivityFact { user_id: ada, at_ms: now - 25 * DAY_MS },
    ];
    warehouse.record_activity(&likes).await.unwrap();

    let top_before = warehouse.top_tracks(from, 10, 0).await.unwrap();
    assert_eq!(top_before, (reference_top_tracks(&plays, from), 2));
    let series = |bucketing: Bucketing, from_ms: i64| {
        let warehouse = warehouse.clone();
        async move {
            let mut points = warehouse.play_series(bucketing, from_ms, now).await.unwrap();
            points.sort_by_key(|point| point.t_ms);
            points
        }
    };
    let hourly_before = series(Bucketing::Hour, now - 2 * DAY_MS).await;
    let daily_before = series(Bucketing::Day, from).await;
    assert_eq!(
        hourly_before,
        reference_play_series(&plays, Bucketing::Hour, now - 2 * DAY_MS, now)
    );
    assert_eq!(daily_before, reference_play_series(&plays, Bucketing::Day, from, now));

    warehouse.forget_user(ada).await.unwrap();
    let check = || async {
        assert_eq!(warehouse.history(ada, 10, 0).await.unwrap(), (vec![], 0), "Ada's history");
        check_history(&*warehouse, &bob_plays, bob).await;
        // What Ada's plays counted stays: plays, streams and listeners alike.
        assert_eq!(warehouse.top_tracks(from, 10, 0).await.unwrap(), top_before);
        assert_eq!(series(Bucketing::Hour, now - 2 * DAY_MS).await, hourly_before);
        assert_eq!(series(Bucketing::Day, from).await, daily_before);
        // The days she was active are gone.
        let mut active =
            warehouse.active_users(Bucketing::Day, now - 30 * DAY_MS, now).await.unwrap();
        active.sort_by_key(|point| point.t_ms);
        let bob_only: Vec<ActivityFact> = bob_plays
            .iter()
            .map(|play| ActivityFact { user_id: bob, at_ms: play.played_at_ms })
            .chain([likes[1]])
            .collect();
        let mut expected: BTreeMap<i64, u64> = BTreeMap::new();
        for fact in bob_only {
            *expected.entry(Bucketing::Day.start_of(fact.at_ms)).or_default() = 1;
        }
        let expected: Vec<ActivePoint> = expected
            .into_iter()
            .filter(|&(t_ms, _)| t_ms >= Bucketing::Day.start_of(now - 30 * DAY_MS))
            .map(|(t_ms, active_users)| ActivePoint { t_ms, active_users })
            .collect();
        assert_eq!(active, expected, "active users without Ada");
    };
    check().await;

    // A redelivered event forgets again, harmlessly; her plays delivered again count
    // nothing and bring no history back.
    warehouse.forget_user(ada).await.unwrap();
    check().await;
    assert_eq!(warehouse.record_plays(&ada_plays).await.unwrap(), 0);
    check().await;
    // A user with nothing to forget.
    warehouse.forget_user(Uuid::now_v7()).await.unwrap();
    check().await;
}

// ---------------------------------------------------------------------------------------
// The embedded warehouse alone
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_warehouse_answers_the_same_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("analytics-warehouse.db");
    let data = dataset(23);
    let now = data.now;
    let requests = vec![
        request("GET", "/v1/me/history", 200, 1_200, now - 60_000),
        request("GET", "/v1/me/history", 500, 8_000, now - 50_000),
    ];
    let batch = Uuid::now_v7();

    let warehouse = open_embedded(&path).await;
    record(&*warehouse, &data).await;
    assert!(warehouse.record_requests(batch, &requests).await.unwrap());
    let routes = warehouse.api_routes(now - HOUR_MS).await.unwrap();
    drop(warehouse);

    let warehouse = open_embedded(&path).await;
    check_answers(&*warehouse, &data, &data.plays).await;
    assert_eq!(warehouse.api_routes(now - HOUR_MS).await.unwrap(), routes);
    // What was counted before the restart is not counted again after it.
    assert_eq!(warehouse.record_plays(&data.plays).await.unwrap(), 0);
    assert!(!warehouse.record_requests(batch, &requests).await.unwrap());
    check_answers(&*warehouse, &data, &data.plays).await;
    assert_eq!(warehouse.api_routes(now - HOUR_MS).await.unwrap(), routes);
}

//! One contract for every `PeopleStore` adapter: each case below runs once on SQLite and
//! once on PostgreSQL (`sqlite::*`, `postgres::*`), each time on a fresh database.
//! PostgreSQL must be running (see `testkit`); its cases fail, never skip, when it is
//! unreachable.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use people::{
    domain::{
        NotificationKind, OutgoingMail, Person,
        billing::{BillingChange, Customer, PaidInvoice},
        mail, mail_id,
    },
    store::{BillingOutcome, PeopleStore, PlaylistRef},
};
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
                super::$case(&*fixture.store).await;
                fixture.finish().await;
            }
        )*
    };
}

store_contract!(
    a_registration_is_projected_and_welcomed_once,
    people_are_found_by_any_word_of_their_name,
    follows_are_idempotent_and_tell_the_followee_once,
    playlists_notify_followers_and_changes_add_up_while_unread,
    each_billing_event_counts_once_and_premium_follows_the_payments,
    mail_is_held_by_one_sender_and_retried_after_a_failure,
    a_deleted_person_takes_what_hangs_on_them,
);

struct StoreFixture {
    store: Arc<dyn PeopleStore>,
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
        let store = people::store::open(database.pool().clone())
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the test database: {error}"));
        Self { store, database }
    }

    async fn finish(self) {
        drop(self.store);
        self.database.finish().await;
    }
}

const CONSUMER: &str = "people.test";

/// Now at millisecond precision, as events carry it.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn person(name: &str) -> Person {
    let id = Uuid::now_v7();
    Person {
        id,
        display_name: name.to_owned(),
        email: format!("{}@example.com", id.simple()),
        registered_at: now(),
        presence_visible: true,
    }
}

fn welcome(person: &Person, event: Uuid) -> OutgoingMail {
    mail::welcome(mail_id("welcome", event), &person.email, &person.display_name, "http://t", now())
}

async fn register(store: &dyn PeopleStore, name: &str) -> Person {
    let person = person(name);
    let event = Uuid::now_v7();
    store.apply_registered(CONSUMER, event, &person, &welcome(&person, event)).await.unwrap();
    person
}

async fn a_registration_is_projected_and_welcomed_once(store: &dyn PeopleStore) {
    let ann = person("Ann");
    let event = Uuid::now_v7();
    store.apply_registered(CONSUMER, event, &ann, &welcome(&ann, event)).await.unwrap();
    // Redelivered: nothing new.
    let renamed = Person { display_name: "Ann (again)".to_owned(), ..ann.clone() };
    store.apply_registered(CONSUMER, event, &renamed, &welcome(&renamed, event)).await.unwrap();
    assert_eq!(store.person(ann.id).await.unwrap(), Some(ann.clone()));
    assert_eq!(store.person_by_email(&ann.email.to_uppercase()).await.unwrap(), Some(ann.clone()));
    let due = store.due_mail(now() + TimeDelta::seconds(1), 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].recipient, ann.email);
    assert_eq!(store.mail_backlog().await.unwrap(), 1);

    store.apply_renamed(CONSUMER, Uuid::now_v7(), ann.id, "Annie").await.unwrap();
    assert_eq!(store.person(ann.id).await.unwrap().unwrap().display_name, "Annie");
    // A person learnt from auth does not overwrite one already known.
    store.remember_person(&Person { display_name: "Other".into(), ..ann.clone() }).await.unwrap();
    assert_eq!(store.person(ann.id).await.unwrap().unwrap().display_name, "Annie");
    assert!(store.set_presence_visible(ann.id, false).await.unwrap());
    assert!(!store.person(ann.id).await.unwrap().unwrap().presence_visible);
    assert!(!store.set_presence_visible(Uuid::now_v7(), false).await.unwrap());
}

async fn people_are_found_by_any_word_of_their_name(store: &dyn PeopleStore) {
    let joni = register(store, "Joni Mitchell").await;
    let mitch = register(store, "Mitch Miller").await;
    register(store, "Nina Simone").await;
    register(store, "100%_Pure").await;
    let (found, total) = store.search_people("mitch", 10, 0).await.unwrap();
    let ids: Vec<Uuid> = found.iter().map(|p| p.id).collect();
    assert_eq!((ids, total), (vec![joni.id, mitch.id], 2), "ordered by name");
    let (found, _) = store.search_people("MIL", 10, 0).await.unwrap();
    assert_eq!(found.len(), 1);
    let (found, total) = store.search_people("mitch", 1, 1).await.unwrap();
    assert_eq!((found.len(), total), (1, 2));
    // Wildcards are literal.
    assert_eq!(store.search_people("%", 10, 0).await.unwrap().1, 0);
    assert_eq!(store.search_people("100%_", 10, 0).await.unwrap().1, 1);
}

async fn follows_are_idempotent_and_tell_the_followee_once(store: &dyn PeopleStore) {
    let ann = register(store, "Ann").await;
    let bob = register(store, "Bob").await;
    let cy = register(store, "Cy").await;
    let at = now();
    let told = store.follow(ann.id, bob.id, at).await.unwrap().expect("a new follow notifies");
    assert_eq!(told.user_id, bob.id);
    assert_eq!(told.kind, NotificationKind::NewFollower);
    assert_eq!((told.actor_id, told.actor_name.as_deref()), (ann.id, Some("Ann")));
    assert!(store.follow(ann.id, bob.id, at + TimeDelta::seconds(5)).await.unwrap().is_none());
    store.follow(cy.id, bob.id, at + TimeDelta::seconds(1)).await.unwrap();
    store.follow(ann.id, cy.id, at + TimeDelta::seconds(2)).await.unwrap();

    let (followers, total) = store.followers(bob.id, 10, 0).await.unwrap();
    let names: Vec<&str> = followers.iter().map(|f| f.person.display_name.as_str()).collect();
    assert_eq!((names, total), (vec!["Cy", "Ann"], 2), "most recent first");
    assert_eq!(followers[1].followed_at, at, "the first follow's time stays");
    let (following, total) = store.following(ann.id, 1, 0).await.unwrap();
    assert_eq!((following[0].person.id, total), (cy.id, 2));
    assert_eq!(store.follow_counts(bob.id).await.unwrap(), (2, 0));
    assert_eq!(store.follow_counts(ann.id).await.unwrap(), (0, 2));
    let mut followees = store.followee_ids(ann.id).await.unwrap();
    followees.sort();
    let mut expected = vec![bob.id, cy.id];
    expected.sort();
    assert_eq!(followees, expected);
    assert!(store.is_following(ann.id, bob.id).await.unwrap());
    assert!(!store.is_following(bob.id, ann.id).await.unwrap());

    assert!(store.unfollow(ann.id, bob.id).await.unwrap());
    assert!(!store.unfollow(ann.id, bob.id).await.unwrap());
    assert_eq!(store.follow_counts(bob.id).await.unwrap(), (1, 0));
    assert_eq!(store.unread_count(bob.id).await.unwrap(), 2, "both follows told Bob");
}

async fn playlists_notify_followers_and_changes_add_up_while_unread(store: &dyn PeopleStore) {
    let owner = register(store, "Owner").await;
    let fan = register(store, "Fan").await;
    let saver = register(store, "Saver").await;
    store.follow(fan.id, owner.id, now()).await.unwrap();
    let playlist = PlaylistRef { id: Uuid::now_v7(), owner_id: owner.id, name: "Road".into() };

    let event = Uuid::now_v7();
    let made = store.apply_playlist_created(CONSUMER, event, &playlist, now()).await.unwrap();
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].user_id, fan.id);
    assert_eq!(made[0].kind, NotificationKind::PlaylistCreated);
    assert_eq!(made[0].playlist, Some((playlist.id, "Road".to_owned())));
    assert!(
        store.apply_playlist_created(CONSUMER, event, &playlist, now()).await.unwrap().is_empty()
    );

    let followed = Uuid::now_v7();
    let told = store
        .apply_playlist_followed(CONSUMER, followed, saver.id, &playlist, now())
        .await
        .unwrap()
        .expect("the owner hears of it");
    assert_eq!((told.user_id, told.kind), (owner.id, NotificationKind::PlaylistFollowed));
    assert!(
        store
            .apply_playlist_followed(CONSUMER, followed, saver.id, &playlist, now())
            .await
            .unwrap()
            .is_none()
    );

    let changed = |name: &str| PlaylistRef { name: name.to_owned(), ..playlist.clone() };
    let first = store
        .apply_playlist_changed(CONSUMER, Uuid::now_v7(), &changed("Road"), now())
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].user_id, first[0].count), (saver.id, 1));
    let later = now() + TimeDelta::seconds(1);
    let second = store
        .apply_playlist_changed(CONSUMER, Uuid::now_v7(), &changed("Road trip"), later)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, first[0].id, "one unread line per playlist");
    assert_eq!(second[0].count, 2);
    assert_eq!(second[0].playlist, Some((playlist.id, "Road trip".to_owned())));

    let page = store.notifications(saver.id, 10, 0, false).await.unwrap();
    assert_eq!((page.total, page.unread), (1, 1));
    assert_eq!(
        store.mark_read(saver.id, Some(&[first[0].id, Uuid::now_v7()]), now()).await.unwrap(),
        0
    );
    let third = store
        .apply_playlist_changed(CONSUMER, Uuid::now_v7(), &playlist, later + TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_ne!(third[0].id, first[0].id, "a read one is not reopened");
    let page = store.notifications(saver.id, 10, 0, false).await.unwrap();
    assert_eq!((page.total, page.unread), (2, 1));
    assert_eq!(page.items[0].id, third[0].id, "most recently updated first");
    let unread = store.notifications(saver.id, 10, 0, true).await.unwrap();
    assert_eq!((unread.items.len(), unread.total), (1, 1));

    // Marking someone else's notification changes nothing.
    // (The owner's own two, a follower and a save, stay unread too.)
    assert_eq!(store.mark_read(owner.id, Some(&[third[0].id]), now()).await.unwrap(), 2);
    assert_eq!(store.unread_count(saver.id).await.unwrap(), 1);
    assert_eq!(store.mark_read(saver.id, None, now()).await.unwrap(), 0);

    store.apply_playlist_unfollowed(CONSUMER, Uuid::now_v7(), saver.id, playlist.id).await.unwrap();
    assert!(
        store
            .apply_playlist_changed(CONSUMER, Uuid::now_v7(), &playlist, now())
            .await
            .unwrap()
            .is_empty()
    );
}

fn paid(user: &Person, invoice: &str, end: DateTime<Utc>) -> BillingChange {
    BillingChange::Paid {
        customer: Customer::Id(user.id),
        invoice: PaidInvoice {
            invoice_id: invoice.to_owned(),
            amount_cents: 999,
            currency: "eur".into(),
            period_end: end,
        },
    }
}

async fn each_billing_event_counts_once_and_premium_follows_the_payments(store: &dyn PeopleStore) {
    let ann = register(store, "Ann").await;
    let before = store.pending(100).await.unwrap().len();
    let at = now();
    let month = at + TimeDelta::days(30);
    let invoice = format!("in_{}", Uuid::now_v7().simple());
    let applied = store
        .apply_billing("evt_1", "invoice.paid", &paid(&ann, &invoice, month), Some(ann.id), at)
        .await
        .unwrap();
    let BillingOutcome::Applied(state) = applied else { panic!("applied: {applied:?}") };
    assert_eq!((state.premium_until, state.revision), (Some(month), 1));
    let events = store.pending(100).await.unwrap();
    assert_eq!(events.len(), before + 1);
    let announced = events.last().unwrap();
    assert_eq!(announced.event_type, "payment.completed");
    assert_eq!(
        announced.payload["premium_until"].as_str().map(|t| t.parse::<DateTime<Utc>>().unwrap()),
        Some(month)
    );

    // The same event again, or another event for the same invoice: nothing.
    for id in ["evt_1", "evt_2"] {
        let again = store
            .apply_billing(id, "invoice.paid", &paid(&ann, &invoice, month), Some(ann.id), at)
            .await
            .unwrap();
        assert_eq!(again, BillingOutcome::Duplicate);
    }
    assert_eq!(store.pending(100).await.unwrap().len(), before + 1);
    let ignored = store
        .apply_billing("evt_3", "customer.created", &BillingChange::Ignored, None, at)
        .await
        .unwrap();
    assert_eq!(ignored, BillingOutcome::Ignored);

    let refund = BillingChange::Refunded { invoice_id: invoice.clone() };
    let refunded =
        store.apply_billing("evt_4", "charge.refunded", &refund, None, at).await.unwrap();
    assert_eq!(
        refunded,
        BillingOutcome::Applied(people::domain::billing::SubscriptionState {
            user_id: ann.id,
            premium_until: None,
            revision: 2
        })
    );
    let unknown = BillingChange::Refunded { invoice_id: "in_unknown".into() };
    assert_eq!(
        store.apply_billing("evt_5", "charge.refunded", &unknown, None, at).await.unwrap(),
        BillingOutcome::Ignored
    );

    let renewed = format!("in_{}", Uuid::now_v7().simple());
    let later = at + TimeDelta::seconds(1);
    store
        .apply_billing("evt_6", "invoice.paid", &paid(&ann, &renewed, month), Some(ann.id), later)
        .await
        .unwrap();
    let cancel = BillingChange::Cancelled { customer: Customer::Id(ann.id) };
    let cancelled = store
        .apply_billing(
            "evt_7",
            "customer.subscription.deleted",
            &cancel,
            Some(ann.id),
            later + TimeDelta::seconds(1),
        )
        .await
        .unwrap();
    let BillingOutcome::Applied(state) = cancelled else { panic!("{cancelled:?}") };
    assert_eq!((state.premium_until, state.revision), (None, 4));
    assert_eq!(store.subscription(ann.id).await.unwrap(), Some(state));
    let last = store.pending(100).await.unwrap();
    assert_eq!(last.last().unwrap().event_type, "subscription.changed");
}

async fn mail_is_held_by_one_sender_and_retried_after_a_failure(store: &dyn PeopleStore) {
    let ann = register(store, "Ann").await;
    let bob = register(store, "Bob").await;
    let at = now() + TimeDelta::seconds(1);
    let due = store.due_mail(at, 10).await.unwrap();
    let ids: Vec<Uuid> = due.iter().map(|mail| mail.id).collect();
    let recipients: Vec<&str> = due.iter().map(|mail| mail.recipient.as_str()).collect();
    assert_eq!(recipients, [ann.email.as_str(), bob.email.as_str()], "oldest first");

    let hold = at + TimeDelta::seconds(60);
    assert!(store.claim_mail(ids[0], at, hold).await.unwrap());
    assert!(!store.claim_mail(ids[0], at, hold).await.unwrap(), "held by the first sender");
    assert_eq!(store.due_mail(at, 10).await.unwrap().len(), 1, "a held message is not due");
    assert!(
        store
            .claim_mail(ids[0], hold + TimeDelta::seconds(1), hold + TimeDelta::seconds(61))
            .await
            .unwrap(),
        "a lapsed hold can be taken"
    );

    store.mail_failed(ids[0], at + TimeDelta::seconds(30), "451 try later").await.unwrap();
    let due = store.due_mail(at, 10).await.unwrap();
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1]]);
    let retried = store.due_mail(at + TimeDelta::seconds(30), 10).await.unwrap();
    let retried = retried.iter().find(|mail| mail.id == ids[0]).expect("due again");
    assert_eq!(retried.attempts, 1);

    assert!(store.claim_mail(ids[1], at, hold).await.unwrap());
    store.mail_sent(ids[1], at).await.unwrap();
    assert!(
        !store
            .claim_mail(ids[1], hold + TimeDelta::seconds(1), hold + TimeDelta::seconds(2))
            .await
            .unwrap(),
        "a sent message is never taken"
    );
    assert_eq!(store.mail_backlog().await.unwrap(), 1);

    assert!(store.claim_mail(ids[0], at + TimeDelta::seconds(30), hold).await.unwrap());
    assert_eq!(store.release_mail_claims().await.unwrap(), 1);
    assert_eq!(store.due_mail(at + TimeDelta::seconds(30), 10).await.unwrap().len(), 1);
}

async fn a_deleted_person_takes_what_hangs_on_them(store: &dyn PeopleStore) {
    let ann = register(store, "Ann").await;
    let bob = register(store, "Bob").await;
    store.follow(ann.id, bob.id, now()).await.unwrap();
    store.follow(bob.id, ann.id, now()).await.unwrap();
    let playlist = PlaylistRef { id: Uuid::now_v7(), owner_id: bob.id, name: "Mix".into() };
    store
        .apply_playlist_followed(CONSUMER, Uuid::now_v7(), ann.id, &playlist, now())
        .await
        .unwrap();
    let event = Uuid::now_v7();
    store.forget_user(CONSUMER, event, ann.id).await.unwrap();
    store.forget_user(CONSUMER, event, ann.id).await.unwrap();
    assert_eq!(store.person(ann.id).await.unwrap(), None);
    assert_eq!(store.follow_counts(bob.id).await.unwrap(), (0, 0));
    assert_eq!(store.unread_count(bob.id).await.unwrap(), 0, "what Ann caused went with her");
    assert_eq!(store.unread_count(ann.id).await.unwrap(), 0);
    let due = store.due_mail(now() + TimeDelta::seconds(1), 10).await.unwrap();
    assert!(due.iter().all(|mail| mail.recipient != ann.email), "unsent mail to Ann is dropped");
    assert!(
        store
            .apply_playlist_changed(CONSUMER, Uuid::now_v7(), &playlist, now())
            .await
            .unwrap()
            .is_empty()
    );
}

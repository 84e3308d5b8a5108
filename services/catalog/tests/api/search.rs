//! Search through `CatalogService` on SQLite and PostgreSQL: which tracks a query finds,
//! in which order, and how many.

use catalog::{CatalogConfig, CatalogService, domain::Track, service::Sections};

use crate::store_contract::{StoreFixture, new_track, stored};

#[tokio::test]
async fn sqlite_ranks_matches_best_first() {
    ranks_matches_best_first(StoreFixture::sqlite().await).await;
}

#[tokio::test]
async fn postgres_ranks_matches_best_first() {
    ranks_matches_best_first(StoreFixture::postgres().await).await;
}

async fn ranks_matches_best_first(fixture: StoreFixture) {
    let store = fixture.store();
    let media = tempfile::tempdir().unwrap();
    let objects =
        objects::Objects::connect(&objects::StorageConfig::default(), media.path()).await.unwrap();
    let service = CatalogService::new(store.clone(), objects, CatalogConfig::default());
    for (title, artist, album) in [
        ("Loe and Behold", "Someone", "Something"),
        ("Lover Man", "Billie Holiday", "Lady Day"),
        ("Glove Box", "Various", "Love Songs"),
        ("Night Train", "Love", "Forever Changes"),
        ("Lovely Day", "Bill Withers", "Menagerie"),
        ("Love Me Do", "The Beatles", "Lovely Album"),
    ] {
        let track = stored(&*store, new_track(title, artist, album)).await;
        service.reindex(&track).await.unwrap();
    }
    let titles = |tracks: &[Track]| tracks.iter().map(|t| t.title.clone()).collect::<Vec<_>>();

    let love = service.search("love", Sections::ALL, 20, 0).await.unwrap();
    assert_eq!(
        titles(&love.tracks.items),
        [
            "Love Me Do",     // the word in a title (its album's "lovely" does not count twice)
            "Night Train",    // the word as the artist
            "Lovely Day",     // a completion in a title, "lovely" before "lover"
            "Lover Man",      // a completion in a title
            "Glove Box",      // the word in an album, which ties with a near miss in a title
            "Loe and Behold", // a near miss in a title
        ],
        "created in reverse, so no order of insertion explains this one"
    );
    assert_eq!(love.tracks.total, 6);
    // Albums and artists are found by their own names, never padded with those of the
    // tracks found.
    let names = |found: &[(uuid::Uuid, String, catalog::domain::Artist)]| {
        found.iter().map(|(_, title, _)| title.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&love.albums.items), ["Love Songs", "Lovely Album"]);
    assert_eq!(love.albums.total, 2);
    let artists: Vec<String> = love.artists.items.iter().map(|a| a.name.clone()).collect();
    assert_eq!(artists, ["Love"]);
    let second_page = service.search("love", Sections::ALL, 2, 2).await.unwrap();
    assert_eq!(titles(&second_page.tracks.items), ["Lovely Day", "Lover Man"]);
    assert_eq!(second_page.tracks.total, 6, "the total does not depend on the page");
    assert!(service.search("love", Sections::ALL, 20, 2).await.unwrap().albums.items.is_empty());
    let best_two = service.search("love", Sections::ALL, 2, 0).await.unwrap();
    assert_eq!(titles(&best_two.tracks.items), ["Love Me Do", "Night Train"]);
    let best = service.search("love", Sections::ALL, 1, 0).await.unwrap();
    assert_eq!(titles(&best.tracks.items), ["Love Me Do"]);

    let both = service.search("love beatles", Sections::ALL, 20, 0).await.unwrap();
    assert_eq!(titles(&both.tracks.items), ["Love Me Do"], "every word must match");
    assert!(both.albums.items.is_empty(), "no album is called both");
    let songs = service.search("love songs", Sections::ALL, 20, 0).await.unwrap();
    assert_eq!(names(&songs.albums.items), ["Love Songs"]);
    let night = service.search("nigt lov", Sections::ALL, 20, 0).await.unwrap();
    assert_eq!(titles(&night.tracks.items), ["Night Train"], "a near miss and a prefix together");
    assert!(
        service
            .search("love zeppelin", Sections::ALL, 20, 0)
            .await
            .unwrap()
            .tracks
            .items
            .is_empty()
    );
    fixture.finish().await;
}

//! Two hubs on one real Redis, as two replicas would be: a message published through one
//! reaches a stream held by the other, and only streams on its channel.

use std::time::Duration;

use kernel::engine::EngineUrl;
use people::live::{LiveHub, LiveMessage};

async fn hub() -> std::sync::Arc<LiveHub> {
    LiveHub::redis(&EngineUrl::new(testkit::redis_url()), 16).await.unwrap()
}

#[tokio::test]
async fn a_message_published_by_one_replica_reaches_streams_held_by_another() {
    let (here, there) = (hub().await, hub().await);
    let channel = format!("user:{}", uuid::Uuid::now_v7());
    let other = format!("user:{}", uuid::Uuid::now_v7());
    let mut listening = here.subscribe([channel.clone()]);
    let mut elsewhere = here.subscribe([other]);
    // The subscription reaches Redis asynchronously: publish until it is heard.
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            there.publish(&channel, LiveMessage::new("hello", &1)).await;
            if let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(100), listening.next()).await
            {
                return message;
            }
        }
    })
    .await
    .expect("the message crossed Redis");
    assert_eq!((heard.event.as_str(), heard.data.as_str()), ("hello", "1"));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), elsewhere.next()).await.is_err(),
        "another channel's stream hears nothing"
    );
}

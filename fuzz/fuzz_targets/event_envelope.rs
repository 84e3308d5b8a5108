//! An event as it arrives from the bus: any bytes decode to an envelope or an error, an
//! envelope survives a round trip, and its payload decodes as its type or an error.
#![no_main]

use bus::{Envelope, events::*};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::from_bytes(data) else { return };
    let again = Envelope::from_bytes(&envelope.to_bytes()).expect("an envelope re-encodes");
    assert_eq!(again.id, envelope.id);
    assert_eq!(again.event_type, envelope.event_type);
    assert_eq!(again.payload, envelope.payload);
    let _ = envelope.decode::<UserRegistered>();
    let _ = envelope.decode::<UserDeleted>();
    let _ = envelope.decode::<SongPlayed>();
    let _ = envelope.decode::<SongLiked>();
    let _ = envelope.decode::<PlaylistChanged>();
    let _ = envelope.decode::<TrackUploaded>();
    let _ = envelope.decode::<TrackTranscoded>();
    let _ = envelope.decode::<ApiRequest>();
    let _ = envelope.decode::<PaymentCompleted>();
    let _ = envelope.decode::<SubscriptionChanged>();
});

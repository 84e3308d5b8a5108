//! Track embeddings on the real sentence encoder: tracks of one kind lie together, and a
//! text's embedding does not depend on the texts batched with it (padding is masked out).

use ai::recommend::{
    als::dot,
    embed::{Embedder, track_text},
    similar::SimilarIndex,
};
use candle_core::Device;

use crate::models_dir;

fn embedder() -> Embedder {
    Embedder::load(&models_dir().join(ai::models::MINILM.dir), &Device::Cpu).unwrap()
}

const METAL: [(&str, &str, &str); 4] = [
    ("Iron Anvil", "Steelgrave", "Forged in Fire"),
    ("Blackened Skies", "Hellhammer Rising", "Doom Engine"),
    ("Thunder of the Damned", "Voidcrusher", "Riffs of Wrath"),
    ("Molten Chains", "Grim Fortress", "Hammerfall Nights"),
];
const JAZZ: [(&str, &str, &str); 4] = [
    ("Blue Evening", "The Quiet Quartet", "Late Set at the Vanguard"),
    ("Smoke and Brass", "Lena Moreau Trio", "Swing Street"),
    ("Autumn Changes", "Oscar Bellweather", "Standards Vol. 2"),
    ("Midnight Bebop", "Charlie Fenwick", "Blue Note Sessions"),
];

fn texts(tracks: &[(&str, &str, &str)], genre: &str) -> Vec<String> {
    tracks
        .iter()
        .map(|(title, artist, album)| track_text(title, artist, album, Some(genre)))
        .collect()
}

#[test]
fn tracks_of_a_genre_are_mostly_each_others_nearest() {
    let embedder = embedder();
    let mut all = texts(&METAL, "heavy metal");
    all.extend(texts(&JAZZ, "jazz"));
    let vectors = embedder.embed(&all).unwrap();
    assert!(vectors.iter().all(|v| v.len() == embedder.dim()));
    assert!(vectors.iter().all(|v| (dot(v, v) - 1.0).abs() < 1e-4), "unit length");
    let mut index = SimilarIndex::new(vectors.len());
    for (id, vector) in vectors.iter().enumerate() {
        index.insert(id, vector);
    }
    let mut same_kind = 0;
    for (id, vector) in vectors.iter().enumerate() {
        // Its three nearest others: at least two of them of its kind.
        let nearest = &index.nearest(vector, 4)[1..];
        let alike = nearest.iter().filter(|(other, _)| (*other < 4) == (id < 4)).count();
        assert!(alike >= 2, "{}: nearest {nearest:?}", all[id]);
        same_kind += alike;
    }
    assert!(same_kind >= 22, "{same_kind} of 24 neighbours of the same kind");
}

#[test]
fn a_texts_embedding_is_the_same_alone_and_in_a_batch() {
    let embedder = embedder();
    let short = "So What by Miles Davis, from Kind of Blue; jazz".to_owned();
    let long = track_text(
        "A Very Long Title That Goes On and On Through Several Movements",
        "The Extended Ensemble of the Northern Lights Orchestra",
        "Collected Recordings, Remastered, Deluxe Anniversary Edition",
        Some("classical"),
    );
    let alone = embedder.embed(std::slice::from_ref(&short)).unwrap().remove(0);
    let batched = embedder.embed(&[long, short]).unwrap().remove(1);
    let difference = alone.iter().zip(&batched).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(difference < 1e-4, "differs by {difference}");
}

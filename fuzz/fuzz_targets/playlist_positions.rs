//! A reorder, insert or removal request against a playlist of any length: never a panic,
//! and every accepted change leaves the positions' keys distinct and in the order the
//! request asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use playlist::domain::positions::{insert, removal, renumbered, reorder};

fuzz_target!(|data: &[u8]| {
    let [len, start, length, before, rest @ ..] = data else { return };
    let len = usize::from(*len);
    // Keys as a long-lived playlist has them: ascending, with uneven gaps.
    let mut keys = renumbered(len);
    for (key, gap) in keys.iter_mut().zip(rest.iter().cycle()) {
        *key -= i64::from(*gap);
    }
    keys.sort_unstable();
    keys.dedup();
    let len = keys.len();
    let (start, length, before) = (usize::from(*start), usize::from(*length), usize::from(*before));

    if let Ok(change) = reorder(&keys, start, length, before) {
        let mut moved = keys.clone();
        for (index, key) in &change.moves {
            moved[*index] = *key;
        }
        let mut order: Vec<usize> = (0..len).collect();
        order.sort_by_key(|&i| moved[i]);
        let mut expected: Vec<usize> = (0..len).filter(|i| !(start..start + length).contains(i)).collect();
        let at = if before > start { before.saturating_sub(length) } else { before };
        if !(start..=start + length).contains(&before) {
            expected.splice(at..at, start..start + length);
            assert_eq!(order, expected, "the range lands before entry {before}");
        }
        let mut distinct = moved.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), len, "keys stay distinct");
    }
    if let Ok(placement) = insert(&keys, Some(start), length) {
        let base = placement.renumbered.clone().unwrap_or_else(|| keys.clone());
        let mut all = base[..start].to_vec();
        all.extend(&placement.keys);
        all.extend(&base[start..]);
        assert!(all.windows(2).all(|pair| pair[0] < pair[1]), "inserted in order: {all:?}");
    }
    let positions: Vec<usize> = rest.iter().map(|&p| usize::from(p)).collect();
    if let Ok(removed) = removal(len, &positions) {
        assert!(removed.iter().all(|&p| p < len));
    }
});

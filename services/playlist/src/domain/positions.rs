//! Where entries sit in a playlist. Every entry has a sort key; the keys' order is the
//! playlist's order and positions (0..n-1) are ranks, never stored. Keys leave gaps, so
//! an insert or a move writes only the rows it adds or moves; when a gap is used up the
//! playlist is renumbered, which is rare.

/// The space left between neighbouring keys when they are (re)numbered or appended.
pub const GAP: i64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("position {position} is past the end of the playlist ({len} tracks)")]
    PastEnd { position: usize, len: usize },
    #[error("the range {start}..{end} is not within the playlist ({len} tracks)")]
    RangeOutside { start: usize, end: usize, len: usize },
    #[error("positions must not be empty")]
    Empty,
}

/// Keys for entries being placed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// New keys for every existing entry, in their order, when the gap had run out.
    pub renumbered: Option<Vec<i64>>,
    /// Keys of the placed entries.
    pub keys: Vec<i64>,
}

/// `count` keys strictly between `before` and `after` (either end open), evenly spread;
/// `None` when they do not fit.
pub fn keys_between(before: Option<i64>, after: Option<i64>, count: usize) -> Option<Vec<i64>> {
    let count_i = i64::try_from(count).ok()?;
    let keys: Vec<i64> = match (before, after) {
        (None, None) => (1..=count_i).map(|i| i.checked_mul(GAP)).collect::<Option<_>>()?,
        (Some(low), None) => {
            (1..=count_i).map(|i| low.checked_add(i.checked_mul(GAP)?)).collect::<Option<_>>()?
        }
        (None, Some(high)) => (0..count_i)
            .map(|i| high.checked_sub((count_i - i).checked_mul(GAP)?))
            .collect::<Option<_>>()?,
        (Some(low), Some(high)) => {
            let step = high.checked_sub(low)?.checked_div(count_i.checked_add(1)?)?;
            if step < 1 {
                return None;
            }
            (1..=count_i).map(|i| low + step * i).collect()
        }
    };
    Some(keys)
}

/// Evenly spaced keys for `len` entries.
pub fn renumbered(len: usize) -> Vec<i64> {
    (1..=len as i64).map(|i| i * GAP).collect()
}

/// Keys for `count` entries inserted at `position` (the end when `None`) among entries
/// with `keys` (ascending).
pub fn insert(
    keys: &[i64],
    position: Option<usize>,
    count: usize,
) -> Result<Placement, PositionError> {
    let len = keys.len();
    let at = position.unwrap_or(len);
    if at > len {
        return Err(PositionError::PastEnd { position: at, len });
    }
    let before = at.checked_sub(1).map(|i| keys[i]);
    let after = keys.get(at).copied();
    if let Some(placed) = keys_between(before, after, count) {
        return Ok(Placement { renumbered: None, keys: placed });
    }
    // Renumber the whole list with the new entries in their place.
    let all = renumbered(len + count);
    let mut existing = all[..at].to_vec();
    existing.extend_from_slice(&all[at + count..]);
    Ok(Placement { renumbered: Some(existing), keys: all[at..at + count].to_vec() })
}

/// Checks positions to remove: each within the playlist; duplicates collapse.
pub fn removal(len: usize, positions: &[usize]) -> Result<Vec<usize>, PositionError> {
    if positions.is_empty() {
        return Err(PositionError::Empty);
    }
    let mut sorted = positions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    match sorted.last() {
        Some(&last) if last >= len => Err(PositionError::PastEnd { position: last, len }),
        _ => Ok(sorted),
    }
}

/// What a reorder writes: `(index of an existing entry, its new key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reorder {
    pub moves: Vec<(usize, i64)>,
}

/// Moves `range_length` entries starting at `range_start` to just before the entry now at
/// `insert_before` (the end when it equals the length), as Spotify's reorder does.
pub fn reorder(
    keys: &[i64],
    range_start: usize,
    range_length: usize,
    insert_before: usize,
) -> Result<Reorder, PositionError> {
    let len = keys.len();
    let end = range_start.saturating_add(range_length);
    if range_length == 0 || end > len {
        return Err(PositionError::RangeOutside { start: range_start, end, len });
    }
    if insert_before > len {
        return Err(PositionError::PastEnd { position: insert_before, len });
    }
    if (range_start..=end).contains(&insert_before) {
        return Ok(Reorder { moves: Vec::new() });
    }
    let before = insert_before.checked_sub(1).map(|i| keys[i]);
    let after = keys.get(insert_before).copied();
    if let Some(placed) = keys_between(before, after, range_length) {
        return Ok(Reorder { moves: (range_start..end).zip(placed).collect() });
    }
    // Renumber everything in the new order.
    let mut order: Vec<usize> = (0..len).filter(|i| !(range_start..end).contains(i)).collect();
    let at = if insert_before > range_start { insert_before - range_length } else { insert_before };
    order.splice(at..at, range_start..end);
    let fresh = renumbered(len);
    Ok(Reorder { moves: order.into_iter().zip(fresh).collect() })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A playlist as keys and the ids they order, kept sorted by key.
    #[derive(Debug, Clone)]
    struct Keyed(Vec<(i64, u32)>);

    impl Keyed {
        fn keys(&self) -> Vec<i64> {
            self.0.iter().map(|(key, _)| *key).collect()
        }

        fn ids(&self) -> Vec<u32> {
            self.0.iter().map(|(_, id)| *id).collect()
        }

        fn settle(&mut self) {
            self.0.sort_by_key(|(key, _)| *key);
            let keys = self.keys();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys stay distinct: {keys:?}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert { position: Option<usize>, count: usize },
        Remove(Vec<usize>),
        Reorder { start: usize, length: usize, before: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (proptest::option::of(0..40_usize), 1..5_usize)
                .prop_map(|(position, count)| Op::Insert { position, count }),
            proptest::collection::vec(0..40_usize, 1..4).prop_map(Op::Remove),
            (0..40_usize, 1..6_usize, 0..45_usize)
                .prop_map(|(start, length, before)| Op::Reorder { start, length, before }),
        ]
    }

    proptest! {
        /// Every operation leaves the keyed list in the order a plain Vec reaches, or fails
        /// exactly when the Vec operation would be out of bounds.
        #[test]
        fn keys_order_entries_as_a_vec_would(ops in proptest::collection::vec(op(), 1..60)) {
            let mut model: Vec<u32> = Vec::new();
            let mut keyed = Keyed(Vec::new());
            let mut next_id = 0_u32;
            for op in ops {
                match op {
                    Op::Insert { position, count } => {
                        let at = position.unwrap_or(model.len());
                        let placed = insert(&keyed.keys(), position, count);
                        if at > model.len() {
                            prop_assert!(placed.is_err());
                            continue;
                        }
                        let placed = placed.unwrap();
                        let ids: Vec<u32> = (next_id..next_id + count as u32).collect();
                        next_id += count as u32;
                        model.splice(at..at, ids.iter().copied());
                        if let Some(renumbered) = placed.renumbered {
                            for (entry, key) in keyed.0.iter_mut().zip(renumbered) {
                                entry.0 = key;
                            }
                        }
                        keyed.0.extend(placed.keys.into_iter().zip(ids));
                    }
                    Op::Remove(positions) => {
                        let checked = removal(model.len(), &positions);
                        if positions.iter().any(|p| *p >= model.len()) {
                            prop_assert!(checked.is_err());
                            continue;
                        }
                        for index in checked.unwrap().into_iter().rev() {
                            model.remove(index);
                            keyed.0.remove(index);
                        }
                    }
                    Op::Reorder { start, length, before } => {
                        let planned = reorder(&keyed.keys(), start, length, before);
                        if start + length > model.len() || before > model.len() {
                            prop_assert!(planned.is_err());
                            continue;
                        }
                        let moved: Vec<u32> = model.drain(start..start + length).collect();
                        let at = if before > start + length { before - length }
                            else if before >= start { start } else { before };
                        model.splice(at..at, moved);
                        let updates = planned.unwrap().moves;
                        let current = keyed.0.clone();
                        for (index, key) in updates {
                            keyed.0[index] = (key, current[index].1);
                        }
                    }
                }
                keyed.settle();
                prop_assert_eq!(keyed.ids(), model.clone());
            }
        }
    }

    #[test]
    fn appends_and_moves_write_only_what_they_place() {
        let keys = renumbered(10_000);
        let appended = insert(&keys, None, 3).unwrap();
        assert_eq!(appended.renumbered, None);
        assert_eq!(appended.keys, [10_001 * GAP, 10_002 * GAP, 10_003 * GAP]);
        let moved = reorder(&keys, 9_000, 5, 10).unwrap();
        assert_eq!(moved.moves.len(), 5, "a move of 5 writes 5 rows, not 10,000");
        assert!(moved.moves.iter().all(|(_, key)| (keys[9]..keys[10]).contains(key)));
    }

    #[test]
    fn a_used_up_gap_renumbers() {
        let keys = vec![1, 2];
        let placed = insert(&keys, Some(1), 1).unwrap();
        assert_eq!(placed.renumbered, Some(vec![GAP, 3 * GAP]));
        assert_eq!(placed.keys, [2 * GAP]);
    }

    #[test]
    fn out_of_range_requests_are_refused() {
        let keys = renumbered(3);
        assert_eq!(insert(&keys, Some(4), 1), Err(PositionError::PastEnd { position: 4, len: 3 }));
        assert!(reorder(&keys, 2, 2, 0).is_err());
        assert!(reorder(&keys, 0, 1, 4).is_err());
        assert!(reorder(&keys, 0, 0, 2).is_err());
        assert_eq!(removal(3, &[]), Err(PositionError::Empty));
        assert_eq!(removal(3, &[2, 0, 2]), Ok(vec![0, 2]));
        assert!(removal(3, &[3]).is_err());
        assert_eq!(reorder(&keys, 1, 1, 2).unwrap().moves, [], "before itself: nothing moves");
    }
}

//! What the process keeps in memory on purpose, as `/metrics` shows it: each in-process
//! cache registers itself under a name and reports its entries and bytes, beside the
//! process's resident memory. Every such cache is bounded by configuration; these gauges
//! let an operator see how full each one is and what the rest of the memory is.

use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

/// How much a cache holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    pub entries: u64,
    pub bytes: u64,
}

/// A cache that can say how much it holds.
#[async_trait::async_trait]
pub trait Holder: Send + Sync {
    async fn holding(&self) -> Holding;
}

type Holders = Vec<(&'static str, Weak<dyn Holder>)>;

static HOLDERS: LazyLock<Mutex<Holders>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// Reports `holder` under `name` for as long as it lives; several holders of one name
/// (one per service of a process) are added up.
pub fn watch(name: &'static str, holder: &Arc<dyn Holder>) {
    HOLDERS.lock().unwrap_or_else(PoisonError::into_inner).push((name, Arc::downgrade(holder)));
}

/// What every living holder holds, by name, in name order; forgets those that are gone.
pub async fn holdings() -> Vec<(&'static str, Holding)> {
    let living: Vec<(&'static str, Arc<dyn Holder>)> = {
        let mut holders = HOLDERS.lock().unwrap_or_else(PoisonError::into_inner);
        holders.retain(|(_, holder)| holder.strong_count() > 0);
        holders.iter().filter_map(|(name, holder)| Some((*name, holder.upgrade()?))).collect()
    };
    let mut by_name: std::collections::BTreeMap<&'static str, Holding> = Default::default();
    for (name, holder) in living {
        {
            let holding = holder.holding().await;
            let total = by_name.entry(name).or_default();
            total.entries += holding.entries;
            total.bytes += holding.bytes;
        }
    }
    by_name.into_iter().collect()
}

/// Sets the memory gauges: `memory_cache_entries` and `memory_cache_bytes` by cache, and
/// `process_resident_memory_bytes`.
pub async fn record() {
    for (name, holding) in holdings().await {
        metrics::gauge!("memory_cache_entries", "cache" => name).set(holding.entries as f64);
        metrics::gauge!("memory_cache_bytes", "cache" => name).set(holding.bytes as f64);
    }
    if let Some(resident) = resident_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(resident as f64);
    }
}

/// The process's resident set size, where the system tells it (Linux).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 =
        line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

#[async_trait::async_trait]
impl<K, V, S> Holder for moka::sync::Cache<K, V, S>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
{
    async fn holding(&self) -> Holding {
        // The counts trail the last writes until pending maintenance has run.
        self.run_pending_tasks();
        Holding { entries: self.entry_count(), bytes: self.weighted_size() }
    }
}

#[async_trait::async_trait]
impl<K, V, S> Holder for moka::future::Cache<K, V, S>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
{
    async fn holding(&self) -> Holding {
        self.run_pending_tasks().await;
        Holding { entries: self.entry_count(), bytes: self.weighted_size() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);

    #[async_trait::async_trait]
    impl Holder for Fixed {
        async fn holding(&self) -> Holding {
            Holding { entries: self.0, bytes: self.0 * 10 }
        }
    }

    #[tokio::test]
    async fn holders_of_one_name_add_up_and_are_forgotten_when_gone() {
        let one: Arc<dyn Holder> = Arc::new(Fixed(1));
        let two: Arc<dyn Holder> = Arc::new(Fixed(2));
        watch("memory-test", &one);
        watch("memory-test", &two);
        let held = || async {
            holdings().await.into_iter().find(|(n, _)| *n == "memory-test").map(|(_, h)| h)
        };
        assert_eq!(held().await, Some(Holding { entries: 3, bytes: 30 }));
        drop(two);
        assert_eq!(held().await, Some(Holding { entries: 1, bytes: 10 }));
        drop(one);
        assert_eq!(held().await, None);
        assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
    }
}

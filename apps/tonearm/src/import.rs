//! `tonearm import <folder>`: files every audio file under a folder into the catalog,
//! several at a time. Content already in the catalog is recognised by its hash, so running
//! it again imports nothing twice.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::Arc,
};

use catalog::{CatalogService, domain::CatalogError, service::Uploaded};
use indicatif::{ProgressBar, ProgressStyle};
use kernel::{
    caller::Caller,
    grant::{Role, Tier},
};
use tokio::sync::Semaphore;
use uuid::Uuid;

#[derive(Debug, Default)]
pub struct ImportSummary {
    pub imported: usize,
    pub already_there: usize,
    pub not_audio: usize,
    pub failed: Vec<(PathBuf, String)>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {}, already in the catalog {}, not audio {}, failed {}",
            self.imported,
            self.already_there,
            self.not_audio,
            self.failed.len()
        )
    }
}

/// Files under `folder`, depth first, in name order; links are not followed.
fn files_under(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(folder)?.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files.extend(files_under(&entry.path())?);
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(files)
}

/// Imports a folder as `owner` (the operator's library, `Uuid::nil()`, when none is named).
pub async fn import(
    catalog: Arc<CatalogService>,
    folder: &Path,
    owner: Uuid,
    jobs: usize,
) -> anyhow::Result<ImportSummary> {
    let files = files_under(folder)?;
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::new(files.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let caller =
        Caller { user_id: owner, session_id: Uuid::nil(), tier: Tier::Free, role: Role::Admin };
    let permits = Arc::new(Semaphore::new(jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for path in files {
        let permit = permits.clone().acquire_owned().await?;
        let catalog = catalog.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let outcome = catalog.import_file(&caller, &path).await;
            progress.set_message(path.display().to_string());
            progress.inc(1);
            drop(permit);
            (path, outcome)
        });
    }
    let mut summary = ImportSummary::default();
    while let Some(joined) = tasks.join_next().await {
        let (path, outcome) = joined?;
        match outcome {
            Ok(Uploaded::Created(_)) => summary.imported += 1,
            Ok(Uploaded::Duplicate(_)) => summary.already_there += 1,
            Err(CatalogError::UnsupportedFormat | CatalogError::Invalid { .. }) => {
                summary.not_audio += 1
            }
            Err(error) => summary.failed.push((path, error.to_string())),
        }
    }
    progress.finish_and_clear();
    Ok(summary)
}

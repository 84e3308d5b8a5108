//! Local scratch space for transcode attempts.
//!
//! Each attempt works in a directory of its own, `<work_dir>/<track>/<attempt>`. A process
//! killed mid-transcode leaves its ffmpeg running, and ffmpeg goes on writing segments by
//! path until it ends. Were the next attempt to reuse those paths, the leftover would write
//! into its files and race its clean-up. So every attempt has new paths, and old
//! directories are renamed away before they are deleted: ffmpeg creates its output
//! directories only when it starts, so a leftover's next write fails and it stops.

use std::{
    io,
    path::{Path, PathBuf},
};

use uuid::Uuid;

/// Names of directories being deleted; a process stopped mid-way leaves them for the next.
const RETIRED_PREFIX: &str = ".retired-";

#[derive(Debug, Clone)]
pub struct Scratch {
    work_dir: PathBuf,
    track: PathBuf,
    attempt: PathBuf,
}

impl Scratch {
    /// The scratch space of one attempt; `owner` names the worker, unique to its process.
    pub fn new(work_dir: &Path, track_id: Uuid, owner: &str, attempt: u32) -> Self {
        let track = work_dir.join(track_id.to_string());
        let attempt = track.join(format!("{owner}-{attempt}"));
        Self { work_dir: work_dir.to_owned(), track, attempt }
    }

    /// Clears whatever earlier attempts at the track left, then makes this attempt's
    /// directory and returns it.
    pub async fn prepare(&self) -> io::Result<&Path> {
        self.clear_track().await?;
        tokio::fs::create_dir_all(&self.attempt).await?;
        Ok(&self.attempt)
    }

    /// Deletes this attempt's files, and the track's directory once nothing else is in it
    /// (a worker that reclaimed the job may be using it).
    pub async fn clear(&self) {
        if let Err(error) = retire(&self.attempt, &self.work_dir).await {
            tracing::warn!(dir = %self.attempt.display(), %error, "cannot move transcode scratch files away");
        }
        let _ = tokio::fs::remove_dir(&self.track).await;
    }

    /// Deletes whatever any attempt at the track left. Only moving it away must succeed:
    /// what cannot be deleted now (a file still held open on some network filesystems)
    /// is left to [`sweep_retired`] at the next start.
    pub async fn clear_track(&self) -> io::Result<()> {
        retire(&self.track, &self.work_dir).await
    }
}

/// Deletes directories that a stopped process was deleting when it stopped.
pub async fn sweep_retired(work_dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(work_dir).await else { return };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry.file_name().to_string_lossy().starts_with(RETIRED_PREFIX) {
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        }
    }
}

/// Deletes `dir`, first renaming it away in one step so that nothing writing by its path
/// can add to it meanwhile. An error means it could not be moved away; once moved, what
/// cannot be deleted yet waits for [`sweep_retired`].
async fn retire(dir: &Path, work_dir: &Path) -> io::Result<()> {
    let retired = work_dir.join(format!("{RETIRED_PREFIX}{}", Uuid::new_v4().simple()));
    match tokio::fs::rename(dir, &retired).await {
        Ok(()) => {
            if let Err(error) = tokio::fs::remove_dir_all(&retired).await {
                tracing::warn!(dir = %retired.display(), %error, "cannot delete transcode scratch files yet");
            }
            Ok(())
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                found.extend(files_under(&entry.path()));
            } else {
                found.push(entry.path());
            }
        }
        found
    }

    /// A work directory and one track's attempts in it.
    struct Track {
        work: tempfile::TempDir,
        id: Uuid,
    }

    impl Track {
        fn new() -> Self {
            Self { work: tempfile::TempDir::new().unwrap(), id: Uuid::new_v4() }
        }

        fn scratch(&self, owner: &str, attempt: u32) -> Scratch {
            Scratch::new(self.work.path(), self.id, owner, attempt)
        }

        /// Starts an attempt that has fetched its original.
        async fn started(&self, owner: &str, attempt: u32) -> (Scratch, PathBuf) {
            let scratch = self.scratch(owner, attempt);
            let dir = scratch.prepare().await.unwrap().to_owned();
            std::fs::write(dir.join("source.mp3"), b"input").unwrap();
            (scratch, dir)
        }

        fn files(&self) -> Vec<PathBuf> {
            files_under(self.work.path())
        }
    }

    #[tokio::test]
    async fn each_attempt_has_its_own_paths_and_clears_what_came_before() {
        let track = Track::new();
        let (_, first_dir) = track.started("worker-a", 1).await;
        std::fs::create_dir_all(first_dir.join("out/256k")).unwrap();
        std::fs::write(first_dir.join("out/256k/seg000.m4s"), b"left behind").unwrap();

        let (second, second_dir) = track.started("worker-b", 2).await;
        assert_ne!(first_dir, second_dir);
        assert!(!first_dir.exists(), "the killed attempt's files are gone");
        // What a leftover ffmpeg of the first attempt would do next: write by its old path.
        assert!(std::fs::write(first_dir.join("out/256k/seg001.m4s"), b"late").is_err());

        second.clear().await;
        assert!(!track.work.path().join(track.id.to_string()).exists());
        assert!(track.files().is_empty(), "{:?}", track.files());
    }

    #[tokio::test]
    async fn clearing_leaves_a_reclaiming_workers_directory_alone() {
        let track = Track::new();
        let lapsed = track.scratch("worker-a", 1);
        lapsed.prepare().await.unwrap();
        let (_, current) = track.started("worker-b", 2).await;

        lapsed.clear().await;
        assert!(current.join("source.mp3").exists());
    }

    #[tokio::test]
    async fn giving_up_on_a_track_clears_every_attempt() {
        let track = Track::new();
        track.started("worker-a", 5).await;

        track.scratch("worker-b", 6).clear_track().await.unwrap();
        assert!(track.files().is_empty(), "{:?}", track.files());
    }

    #[tokio::test]
    async fn directories_a_stopped_process_was_deleting_are_swept() {
        let work = tempfile::TempDir::new().unwrap();
        let retired = work.path().join(format!("{RETIRED_PREFIX}abc"));
        std::fs::create_dir_all(retired.join("out")).unwrap();
        std::fs::write(retired.join("out/seg.m4s"), b"x").unwrap();
        let kept = work.path().join(Uuid::new_v4().to_string());
        std::fs::create_dir_all(&kept).unwrap();

        sweep_retired(work.path()).await;
        assert!(!retired.exists());
        assert!(kept.exists());
    }
}

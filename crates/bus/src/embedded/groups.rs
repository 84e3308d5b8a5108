//! Consumer-group positions: per group and topic, the next offset to read in each
//! partition, in `groups/<group>/<topic>.json`, replaced atomically on every commit.
//! A reset asked for by another process (`tonearm events replay`) is left beside it as
//! `<topic>.reset.json`, and the group's consumer adopts it on its next poll.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
};

pub type Offsets = BTreeMap<u32, u64>;

#[derive(Debug, Clone)]
pub struct Groups {
    dir: PathBuf,
}

impl Groups {
    pub fn new(root: &Path) -> Self {
        Self { dir: root.join("groups") }
    }

    fn path(&self, group: &str, topic: &str, suffix: &str) -> PathBuf {
        self.dir.join(group).join(format!("{topic}{suffix}"))
    }

    pub fn load(&self, group: &str, topic: &str) -> io::Result<Offsets> {
        read_offsets(&self.path(group, topic, ".json")).map(Option::unwrap_or_default)
    }

    pub fn save(&self, group: &str, topic: &str, offsets: &Offsets) -> io::Result<()> {
        write_atomically(&self.path(group, topic, ".json"), offsets)
    }

    pub fn request_reset(&self, group: &str, topic: &str, offsets: &Offsets) -> io::Result<()> {
        self.save(group, topic, offsets)?;
        write_atomically(&self.path(group, topic, ".reset.json"), offsets)
    }

    /// A pending reset for the group, removed as it is taken.
    pub fn take_reset(&self, group: &str, topic: &str) -> io::Result<Option<Offsets>> {
        let path = self.path(group, topic, ".reset.json");
        let offsets = read_offsets(&path)?;
        if offsets.is_some() {
            fs::remove_file(&path)?;
        }
        Ok(offsets)
    }
}

fn read_offsets(path: &Path) -> io::Result<Option<Offsets>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Write to a temporary file, fsync, rename over: a crash leaves the old or the new
/// positions, never half of them.
fn write_atomically(path: &Path, offsets: &Offsets) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(&serde_json::to_vec(offsets).map_err(io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    File::open(dir)?.sync_all()
}

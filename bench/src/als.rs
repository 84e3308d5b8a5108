//! Recommendation training: ALS on generated listening data the size of a mid-sized
//! service (100k users × 50k tracks × about 5M interactions; 64 factors, 15 iterations),
//! with the Python `implicit` library trained on the same matrix in the same run.

use std::{io::Write as _, path::PathBuf, time::Instant};

use ai::recommend::{
    als::{AlsConfig, Sparse, train},
    eval::PlantedTastes,
};
use anyhow::{Context as _, bail};

pub struct AlsArgs {
    pub users: usize,
    pub items: usize,
    /// Interactions per user, on average.
    pub per_user: usize,
    /// A Python with `implicit` installed, to train on the same matrix for comparison.
    pub reference: Option<PathBuf>,
}

pub async fn run(args: AlsArgs) -> anyhow::Result<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = AlsConfig::default();
    let mut lines = vec![format!(
        "ALS benchmark, {threads} cores: {} factors, {} iterations, {} conjugate-gradient steps",
        config.factors, config.iterations, config.cg_steps
    )];
    let dataset = tokio::task::spawn_blocking(move || {
        PlantedTastes {
            users: args.users,
            items: args.items,
            clusters: 20,
            per_user: args.per_user,
            ..Default::default()
        }
        .generate()
    })
    .await?;
    lines.push(format!(
        "data: {} users × {} tracks, {} interactions",
        dataset.users,
        dataset.items,
        dataset.feedback.len()
    ));
    let dir = tempfile::tempdir()?;
    let write = |name: &str, bytes: Vec<u8>| -> anyhow::Result<()> {
        std::fs::File::create(dir.path().join(name))?.write_all(&bytes)?;
        Ok(())
    };
    write("users.u32", dataset.feedback.iter().flat_map(|(u, _, _)| u.to_le_bytes()).collect())?;
    write("items.u32", dataset.feedback.iter().flat_map(|(_, i, _)| i.to_le_bytes()).collect())?;
    write(
        "confidences.f32",
        dataset.feedback.iter().flat_map(|(_, _, c)| c.to_le_bytes()).collect(),
    )?;

    let (users, items) = (dataset.users, dataset.items);
    let took = tokio::task::spawn_blocking(move || {
        let matrix = Sparse::from_triples(users, items, &dataset.feedback);
        let started = Instant::now();
        let factors = train(&matrix, &config);
        let took = started.elapsed().as_secs_f64();
        std::hint::black_box(factors);
        took
    })
    .await?;
    lines.push(format!("Tonearm: {took:.2} s"));

    if let Some(python) = &args.reference {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("als_reference.py");
        let output = std::process::Command::new(python)
            .arg(&script)
            .arg(dir.path())
            .args([users, items, config.factors, config.iterations, threads].map(|n| n.to_string()))
            // `implicit` asks for single-threaded BLAS; it parallelises itself.
            .env("OPENBLAS_NUM_THREADS", "1")
            .env("MKL_NUM_THREADS", "1")
            .output()
            .context("running the implicit reference")?;
        if !output.status.success() {
            bail!("the reference failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        lines.extend(String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned));
    }
    Ok(lines.join("\n"))
}

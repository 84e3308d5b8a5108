//! Recommendation training: ALS on generated listening data the size of a mid-sized
//! service (100k users × 50k tracks × about 5M interactions; 64 factors, 15 iterations),
//! with the Python `implicit` library trained on the same matrix in the same run.

use std::{io::Write as _, path::PathBuf, time::Instant};

use ai::recommend::{
    als::{AlsConfig, Sparse, train},
    eval::PlantedTastes,
    recommender::{Feedback, Recommender},
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
    let serving = tokio::task::spawn_blocking(move || {
        let matrix = Sparse::from_triples(users, items, &dataset.feedback);
        let started = Instant::now();
        let factors = train(&matrix, &config);
        let took = started.elapsed().as_secs_f64();
        let mut lines = vec![format!("Tonearm: {took:.2} s")];
        lines.extend(serve(&dataset, &matrix, factors));
        lines
    })
    .await?;
    lines.extend(serving);

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

/// The latency of answering from the trained model, in process: a listener's
/// recommendations (their vector folded in from their feedback, blended with their
/// content profile) and a track's similar tracks, over 384-dimensional embeddings that
/// know each track's cluster, as metadata would.
fn serve(
    dataset: &ai::recommend::eval::Dataset,
    matrix: &Sparse,
    factors: ai::recommend::als::Factors,
) -> Vec<String> {
    use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
    const DIM: usize = 384;
    const QUERIES: usize = 2_000;
    let mut rng = StdRng::seed_from_u64(3);
    let embeddings: Vec<Option<Vec<f32>>> = dataset
        .cluster_of_item
        .iter()
        .map(|cluster| {
            let mut v: Vec<f32> = (0..DIM).map(|_| rng.r#gen::<f32>() * 0.1).collect();
            v[*cluster as usize % DIM] += 1.0;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            Some(v.into_iter().map(|x| x / norm).collect())
        })
        .collect();
    let mut popularity = vec![0f32; dataset.items];
    for (_, item, _) in &dataset.feedback {
        popularity[*item as usize] += 1.0;
    }
    let started = Instant::now();
    let mut recommender = Recommender::new(&embeddings, DIM, Some(factors), popularity);
    recommender.build_index();
    let built = started.elapsed().as_secs_f64();
    let percentiles = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)] * 1e3;
        format!("p50 {:.2} ms, p99 {:.2} ms", at(0.5), at(0.99))
    };
    let mut recommend = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        let user = rng.gen_range(0..matrix.rows);
        let (tracks, confidences) = matrix.row(user);
        let feedback: Vec<Feedback> = tracks
            .iter()
            .zip(confidences)
            .map(|(track, confidence)| Feedback {
                track: *track,
                confidence: *confidence,
                liked: false,
                recent: true,
            })
            .collect();
        let started = Instant::now();
        std::hint::black_box(recommender.recommend(&feedback, 20, false));
        recommend.push(started.elapsed().as_secs_f64());
    }
    let mut similar = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        let track = rng.gen_range(0..dataset.items as u32);
        let started = Instant::now();
        std::hint::black_box(recommender.similar(track, 20));
        similar.push(started.elapsed().as_secs_f64());
    }
    vec![
        format!(
            "serving index built in {built:.2} s ({} tracks, {DIM}-dimensional embeddings)",
            dataset.items
        ),
        format!("recommendations (20, from a listener's feedback): {}", percentiles(recommend)),
        format!("similar tracks (20): {}", percentiles(similar)),
    ]
}

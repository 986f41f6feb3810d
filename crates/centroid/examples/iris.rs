//! Trains K-means on the bundled iris data set (150 flowers, 4 measurements)
//! and prints the centres and the score.
//!
//!     cargo run --release -p centroid --example iris [-- path/to/iris.csv]

use centroid::{Dense, InitialClusters, Input, KMeansClustering, KMeansParams, Mode, TrainArgs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/iris.csv").into());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let row: Result<Vec<f32>, _> = line.split(',').map(str::parse).collect();
        rows.push(row.map_err(|e| format!("{path}:{}: {e}", i + 1))?);
    }
    let data = Dense::from_rows(&rows)?;

    let params = KMeansParams::new(3)
        .initial_clusters(InitialClusters::KMeansPlusPlus)
        .mode(Mode::FullBatch)
        .relative_tolerance(Some(1e-6));
    let model_dir = std::env::temp_dir().join("centroid-iris-example");
    let _ = std::fs::remove_dir_all(&model_dir);
    let mut kmeans = KMeansClustering::new(params.check()?, Some(model_dir.clone()), None)?;

    let input_fn = || Ok(Input::constant(data.clone()));
    kmeans.train(
        input_fn,
        TrainArgs {
            steps: Some(100),
            ..Default::default()
        },
    )?;

    let centres = kmeans.cluster_centers()?;
    let values = centres.to_type::<f32>();
    println!("centres (sepal length, sepal width, petal length, petal width):");
    for row in values.chunks(centres.cols()) {
        println!("  {row:?}");
    }
    println!(
        "score (sum of squared distances): {:.4}",
        kmeans.score(input_fn)?
    );
    println!(
        "checkpoint: {}",
        kmeans
            .latest_checkpoint()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    Ok(())
}

//! `centroid inspect`: a model's parameters, variables and checkpoints, as
//! text or JSON.

use centroid::Result;
use serde_json::json;

use crate::cli::InspectArgs;
use crate::saved;

pub fn run(a: InspectArgs) -> Result<()> {
    let loaded = saved::require(&a.model_dir)?;
    let sig = &loaded.signature;
    let variables: Vec<serde_json::Value> = saved::variables(&loaded)
        .into_iter()
        .map(|v| json!({"name": v.name, "shape": v.shape, "dtype": v.dtype}))
        .collect();
    let checkpoints: Vec<serde_json::Value> = saved::checkpoints(&a.model_dir)
        .into_iter()
        .map(|c| {
            json!({"path": c.path, "global_step": c.global_step, "bytes": c.bytes, "damaged": c.damaged})
        })
        .collect();
    let losses = saved::read_train_losses(&a.model_dir).unwrap_or_default();
    let params = json!({
        "num_clusters": sig.num_clusters,
        "num_features": sig.num_features,
        "dtype": sig.dtype,
        "distance_metric": sig.distance_metric.name(),
        "use_mini_batch": sig.mode.use_mini_batch(),
        "mini_batch_steps_per_iteration": sig.mode.steps_per_iteration(),
        "initial_clusters": sig.initial_clusters.to_string(),
        "random_seed": sig.random_seed,
        "kmeans_plus_plus_num_retries": sig.kmeans_plus_plus_num_retries.to_i64(),
        "relative_tolerance": sig.relative_tolerance,
        "feature_columns": sig.feature_columns,
    });
    let global_step = loaded.state.global_step();
    if a.json {
        let out = json!({
            "model_dir": a.model_dir,
            "global_step": global_step,
            "latest_checkpoint": loaded.path,
            "parameters": params,
            "variables": variables,
            "checkpoints": checkpoints,
            "recorded_train_losses": losses.len(),
            "last_train_loss": losses.last().map(|l| l.1),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("model directory: {}", a.model_dir.display());
    println!("global step:     {global_step}");
    println!("latest checkpoint: {}", loaded.path.display());
    println!("parameters:");
    if let Some(map) = params.as_object() {
        for (k, v) in map {
            println!("  {k:<32} {v}");
        }
    }
    println!("variables:");
    for v in &variables {
        println!(
            "  {:<20} {:<8} {}",
            v["name"].as_str().unwrap_or(""),
            v["dtype"].as_str().unwrap_or(""),
            v["shape"]
        );
    }
    println!("checkpoints:");
    for c in &checkpoints {
        let damaged = match c["damaged"].as_str() {
            Some(reason) => format!(" DAMAGED: {reason}"),
            None => String::new(),
        };
        println!(
            "  step {:<10} {} ({} bytes){damaged}",
            c["global_step"],
            c["path"].as_str().unwrap_or(""),
            c["bytes"]
        );
    }
    if let Some((s, l)) = losses.last() {
        println!(
            "training losses recorded: {} (last: step {s}, loss {l:.6e})",
            losses.len()
        );
    }
    Ok(())
}

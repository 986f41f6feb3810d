//! `centroid evaluate`: the model's loss on a data set, as JSON.

use centroid::{Error, EvalArgs, Features, Input, Result};
use serde_json::json;

use super::{epoch_batches, open_for_model};
use crate::cli::EvaluateArgs;
use crate::readers::{self, Source};
use crate::saved;

pub fn run(a: EvaluateArgs) -> Result<()> {
    let m = &a.model;
    let loaded = match &m.checkpoint {
        Some(p) => saved::load_checkpoint(p)?,
        None => saved::require(&m.model_dir)?,
    };
    let source = open_for_model(&a.data, &m.model_dir, &loaded)?;
    let est = saved::estimator(&m.model_dir, &loaded, m.threads)?;
    let args = EvalArgs {
        checkpoint_path: m.checkpoint.clone(),
        name: a.name.clone(),
        ..Default::default()
    };
    let result = match a.batch_size {
        Some(0) => {
            return Err(Error::InvalidArgument(
                "--batch-size must be at least 1".into(),
            ))
        }
        Some(bs) => {
            let src: &dyn Source = &*source;
            est.evaluate(|| Ok(Input::batches(epoch_batches(src, bs, Some(1)))), args)?
        }
        None => {
            let all = source.read_all()?;
            est.evaluate(
                || {
                    Ok(Input::batches(std::iter::once(Ok(Features::Dense(
                        readers::borrow(&all),
                    )))))
                },
                args,
            )?
        }
    };
    println!(
        "{}",
        json!({"score": result.score, "loss": result.loss, "global_step": result.global_step})
    );
    Ok(())
}

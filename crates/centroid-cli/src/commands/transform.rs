//! `centroid transform`: the distance of every row to every centre, an
//! n x k table (2-D in NPY even for k = 1).

use centroid::Result;

use super::predict::write_predictions;
use crate::cli::{PredictKey, TransformArgs};

pub fn run(a: TransformArgs) -> Result<()> {
    write_predictions(&a.input, Some(&a.output), &[PredictKey::AllDistances], true)
}

//! Ready-made input functions.

use std::sync::Arc;

use rand::seq::SliceRandom;

use crate::error::{Error, Result};
use crate::input::{Data, Dense, Features, Input};
use crate::seeding::rng_from_seed;

/// How [`numpy_input_fn`] slices an in-memory array into batches.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayInputOptions {
    /// Rows per batch.
    pub batch_size: usize,
    /// Passes over the data; `None` repeats without end.
    pub num_epochs: Option<u64>,
    /// Shuffle the rows anew for every epoch.
    pub shuffle: bool,
    /// Seed of the shuffle; every call of the input function replays the
    /// same order.
    pub seed: u64,
}

impl Default for ArrayInputOptions {
    fn default() -> Self {
        Self {
            batch_size: 128,
            num_epochs: Some(1),
            shuffle: true,
            seed: 0,
        }
    }
}

/// An input function over an in-memory matrix: each call yields the batches
/// of `num_epochs` passes, `batch_size` rows each (the last batch of an epoch
/// may be smaller). Without shuffling, batches borrow the caller's rows; with
/// it, each batch gathers its rows.
pub fn numpy_input_fn<'a>(
    x: Dense<'a>,
    options: ArrayInputOptions,
) -> Result<impl FnMut() -> Result<Input<'a>> + Clone + 'a> {
    if options.batch_size == 0 {
        return Err(Error::arg("batch_size must be at least 1"));
    }
    if options.num_epochs == Some(0) {
        return Err(Error::arg(
            "num_epochs must be at least 1 (or None for no end)",
        ));
    }
    if x.rows() == 0 {
        return Err(Error::data("numpy_input_fn: the array has no rows"));
    }
    let x = Arc::new(x);
    Ok(move || {
        let x = Arc::clone(&x);
        let opts = options.clone();
        let n = x.rows();
        let per_epoch = n.div_ceil(opts.batch_size);
        let mut rng = rng_from_seed(opts.seed);
        let mut order: Vec<usize> = (0..n).collect();
        let mut epoch = 0u64;
        let mut b = per_epoch; // forces a new epoch on the first call
        Ok(Input::batches(std::iter::from_fn(move || {
            if b == per_epoch {
                if opts.num_epochs.is_some_and(|e| epoch >= e) {
                    return None;
                }
                epoch += 1;
                b = 0;
                if opts.shuffle {
                    order.shuffle(&mut rng);
                }
            }
            let (start, end) = (b * opts.batch_size, ((b + 1) * opts.batch_size).min(n));
            b += 1;
            Some(batch_of(&x, &order[start..end], opts.shuffle).map(Features::Dense))
        })))
    })
}

fn batch_of<'a>(x: &Dense<'a>, rows: &[usize], shuffled: bool) -> Result<Dense<'a>> {
    let d = x.cols();
    let contiguous = !shuffled;
    match x.data() {
        Data::F32(v) => Dense::new(Data::F32(gather(v, rows, d, contiguous)), rows.len(), d),
        Data::F64(v) => Dense::new(Data::F64(gather(v, rows, d, contiguous)), rows.len(), d),
    }
}

fn gather<'a, T: Copy>(
    v: &std::borrow::Cow<'a, [T]>,
    rows: &[usize],
    d: usize,
    contiguous: bool,
) -> std::borrow::Cow<'a, [T]>
where
    [T]: ToOwned<Owned = Vec<T>>,
{
    use std::borrow::Cow;
    if contiguous {
        let (s, e) = (rows[0] * d, (rows[rows.len() - 1] + 1) * d);
        return match v {
            // Borrowed data stays borrowed: no copy of the caller's rows.
            Cow::Borrowed(b) => Cow::Borrowed(&b[s..e]),
            Cow::Owned(o) => Cow::Owned(o[s..e].to_vec()),
        };
    }
    let mut out = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        out.extend_from_slice(&v[r * d..(r + 1) * d]);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: &mut impl FnMut() -> Result<Input<'static>>) -> Vec<Vec<f32>> {
        match f().unwrap() {
            Input::Batches(it) => it
                .map(|b| match b.unwrap() {
                    Features::Dense(d) => d.to_type::<f32>().into_owned(),
                    _ => unreachable!(),
                })
                .collect(),
            Input::Constant(_) => unreachable!(),
        }
    }

    #[test]
    fn batches_cover_each_epoch_once() {
        let x = Dense::new((0..10).map(|i| i as f32).collect::<Vec<_>>(), 5, 2).unwrap();
        let opts = ArrayInputOptions {
            batch_size: 2,
            num_epochs: Some(2),
            shuffle: false,
            seed: 0,
        };
        let mut f = numpy_input_fn(x.clone(), opts).unwrap();
        let b = collect(&mut f);
        assert_eq!(
            b,
            vec![
                vec![0., 1., 2., 3.],
                vec![4., 5., 6., 7.],
                vec![8., 9.],
                vec![0., 1., 2., 3.],
                vec![4., 5., 6., 7.],
                vec![8., 9.]
            ]
        );

        let opts = ArrayInputOptions {
            batch_size: 2,
            num_epochs: Some(3),
            shuffle: true,
            seed: 4,
        };
        let mut f = numpy_input_fn(x, opts).unwrap();
        let b = collect(&mut f);
        assert_eq!(b.len(), 9);
        for epoch in b.chunks(3) {
            let mut firsts: Vec<i32> = epoch
                .iter()
                .flat_map(|bt| bt.chunks(2).map(|r| r[0] as i32))
                .collect();
            firsts.sort();
            assert_eq!(firsts, vec![0, 2, 4, 6, 8]);
        }
        // Every call replays the same order.
        assert_eq!(collect(&mut f), b);
    }

    #[test]
    fn bad_options_are_refused() {
        let x = Dense::new(vec![1.0f32], 1, 1).unwrap();
        assert!(numpy_input_fn(
            x.clone(),
            ArrayInputOptions {
                batch_size: 0,
                ..Default::default()
            }
        )
        .is_err());
        assert!(numpy_input_fn(
            x,
            ArrayInputOptions {
                num_epochs: Some(0),
                ..Default::default()
            }
        )
        .is_err());
    }
}

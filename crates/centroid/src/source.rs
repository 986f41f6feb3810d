//! Turning what `input_fn` returned into validated batches, one per step.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::float::DType;
use crate::input::{Batch, Input};

/// The batches of one `input_fn()` call.
pub(crate) struct BatchSource<'a> {
    kind: Kind<'a>,
    feature_columns: Option<Vec<String>>,
    /// Batches handed out so far (names batches in messages).
    served: usize,
    /// The largest squared row norm accepted (squared Euclidean models).
    sq_norm_limit: Option<f64>,
}

enum Kind<'a> {
    /// One batch for every step; validated on first use.
    Constant {
        batch: Batch<'a>,
        /// The checks it passed: width and norm limit.
        validated: Option<(usize, Option<f64>)>,
        one_pass: bool,
    },
    Iter {
        it: Box<dyn Iterator<Item = Result<crate::input::Features<'a>>> + 'a>,
        pending: Option<Batch<'a>>,
    },
}

impl<'a> BatchSource<'a> {
    /// `one_pass`: a constant batch is served once (evaluation, prediction)
    /// rather than for every step (training).
    pub(crate) fn new(
        input: Input<'a>,
        feature_columns: Option<&[String]>,
        one_pass: bool,
    ) -> Result<Self> {
        let kind = match input {
            Input::Constant(f) => Kind::Constant {
                batch: f.into_batch(feature_columns)?,
                validated: None,
                one_pass,
            },
            Input::Batches(it) => Kind::Iter { it, pending: None },
        };
        Ok(Self {
            kind,
            feature_columns: feature_columns.map(<[String]>::to_vec),
            served: 0,
            sq_norm_limit: None,
        })
    }

    /// Refuse rows whose squared norm exceeds `limit` from now on.
    pub(crate) fn set_sq_norm_limit(&mut self, limit: Option<f64>) {
        self.sq_norm_limit = limit;
    }

    /// Whether every step sees the same batch.
    pub(crate) fn is_constant(&self) -> bool {
        matches!(self.kind, Kind::Constant { .. })
    }

    /// How messages name the batch that `next` hands out next.
    pub(crate) fn next_label(&self) -> String {
        match self.kind {
            Kind::Constant { .. } => "the input batch".to_string(),
            Kind::Iter { .. } => format!("input batch {}", self.served),
        }
    }

    /// The element type and width of the next batch, without consuming it.
    pub(crate) fn peek(&mut self) -> Result<Option<(DType, usize)>> {
        match &mut self.kind {
            Kind::Constant {
                batch, one_pass, ..
            } => {
                if *one_pass && self.served > 0 {
                    return Ok(None);
                }
                Ok(Some((batch.dtype(), batch.cols())))
            }
            Kind::Iter { it, pending } => {
                if pending.is_none() {
                    match it.next() {
                        None => return Ok(None),
                        Some(f) => *pending = Some(f?.into_batch(self.feature_columns.as_deref())?),
                    }
                }
                Ok(pending.as_ref().map(|b| (b.dtype(), b.cols())))
            }
        }
    }

    /// The next batch, validated (non-empty, finite, `width` columns when
    /// given); `None` when the input is exhausted.
    pub(crate) fn next(&mut self, width: Option<usize>) -> Result<Option<Cow<'_, Batch<'a>>>> {
        let label = self.next_label();
        match &mut self.kind {
            Kind::Constant {
                batch,
                validated,
                one_pass,
            } => {
                if *one_pass && self.served > 0 {
                    return Ok(None);
                }
                let passed = validated.is_some_and(|(w, l)| {
                    width.is_none_or(|want| want == w) && l == self.sq_norm_limit
                });
                if !passed {
                    batch.validate_with_norms(width, self.sq_norm_limit, &label)?;
                    *validated = Some((batch.cols(), self.sq_norm_limit));
                }
                self.served += 1;
                Ok(Some(Cow::Borrowed(batch)))
            }
            Kind::Iter { it, pending } => {
                let batch = match pending.take() {
                    Some(b) => b,
                    None => match it.next() {
                        None => return Ok(None),
                        Some(f) => f?.into_batch(self.feature_columns.as_deref())?,
                    },
                };
                batch.validate_with_norms(width, self.sq_norm_limit, &label)?;
                self.served += 1;
                Ok(Some(Cow::Owned(batch)))
            }
        }
    }
}

/// The error for an input that ended before initialisation could finish.
pub(crate) fn ended_early(have: usize, k: usize) -> Error {
    Error::data(format!(
        "the input ended after {have} of num_clusters = {k} initial centres: it needs at least {k} rows"
    ))
}

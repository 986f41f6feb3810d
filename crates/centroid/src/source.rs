//! Turning what `input_fn` returned into validated dense batches, one per step.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::float::DType;
use crate::input::{Dense, Input};

/// The batches of one `input_fn()` call.
pub(crate) struct BatchSource<'a> {
    kind: Kind<'a>,
    feature_columns: Option<Vec<String>>,
    /// Batches handed out so far (names batches in messages).
    served: usize,
}

enum Kind<'a> {
    /// One batch for every step; validated on first use.
    Constant {
        batch: Dense<'a>,
        validated_width: Option<usize>,
        one_pass: bool,
    },
    Iter {
        it: Box<dyn Iterator<Item = Result<crate::input::Features<'a>>> + 'a>,
        pending: Option<Dense<'a>>,
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
                batch: f.into_dense(feature_columns)?,
                validated_width: None,
                one_pass,
            },
            Input::Batches(it) => Kind::Iter { it, pending: None },
        };
        Ok(Self {
            kind,
            feature_columns: feature_columns.map(<[String]>::to_vec),
            served: 0,
        })
    }

    /// Whether every step sees the same batch.
    pub(crate) fn is_constant(&self) -> bool {
        matches!(self.kind, Kind::Constant { .. })
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
                        Some(f) => *pending = Some(f?.into_dense(self.feature_columns.as_deref())?),
                    }
                }
                Ok(pending.as_ref().map(|b| (b.dtype(), b.cols())))
            }
        }
    }

    /// The next batch, validated (non-empty, finite, `width` columns when
    /// given); `None` when the input is exhausted.
    pub(crate) fn next(&mut self, width: Option<usize>) -> Result<Option<Cow<'_, Dense<'a>>>> {
        let label = format!("input batch {}", self.served);
        match &mut self.kind {
            Kind::Constant {
                batch,
                validated_width,
                one_pass,
            } => {
                if *one_pass && self.served > 0 {
                    return Ok(None);
                }
                if validated_width.is_none() || (width.is_some() && *validated_width != width) {
                    batch.validate(width, "the input batch")?;
                    *validated_width = Some(batch.cols());
                }
                self.served += 1;
                Ok(Some(Cow::Borrowed(batch)))
            }
            Kind::Iter { it, pending } => {
                let batch = match pending.take() {
                    Some(b) => b,
                    None => match it.next() {
                        None => return Ok(None),
                        Some(f) => f?.into_dense(self.feature_columns.as_deref())?,
                    },
                };
                batch.validate(width, &label)?;
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

//! The model: its state (the variables) and what one step does to it.
//!
//! [`ModelFn`] is the model bound to its parameters, the object the
//! Estimator's training, evaluation and prediction loops drive. It is usable
//! on its own: give it centres and batches, and it applies the update rules
//! of full-batch Lloyd, Sculley's mini-batch, or the asynchronous full batch.

use std::any::Any;

use crate::batch::{self, LloydPasses, Pruning, Unpruned};
use crate::error::{Error, Result};
use crate::float::{DType, Float};
use crate::input::{Dense, Rows};
use crate::kernels::sparse::{self, SparseCentres};
use crate::kernels::{self, ClusterStats, Metric, PreparedCentres};
use crate::matrix::{MatRef, Matrix};
use crate::params::{Mode, ValidKMeansParams};

/// The variables of one model, in one element type.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelState<T> {
    /// The master centres C, `k x d`.
    pub clusters: Matrix<T>,
    /// Whether the centres were chosen (always true in a checkpoint).
    pub initialized: bool,
    /// Training steps run so far.
    pub global_step: i64,
    /// Points seen per cluster: mini-batch only.
    pub cluster_counts: Option<Vec<i64>>,
    /// The working copy C' of the asynchronous mode (S > 1).
    pub clusters_updated: Option<Matrix<T>>,
    /// Steps left before C' is published into C (S > 1).
    pub update_in_steps: Option<i64>,
}

impl<T: Float> ModelState<T> {
    /// k, the number of centres.
    pub fn k(&self) -> usize {
        self.clusters.rows()
    }
    /// d, the number of features.
    pub fn d(&self) -> usize {
        self.clusters.cols()
    }

    /// The first non-finite value among the centres (master, then working
    /// copy), as (variable, row, column).
    pub fn first_non_finite(&self) -> Option<(&'static str, usize, usize)> {
        let d = self.d().max(1);
        let find = |m: &Matrix<T>| m.as_slice().iter().position(|v| !v.is_finite());
        if let Some(i) = find(&self.clusters) {
            return Some(("clusters", i / d, i % d));
        }
        let i = self.clusters_updated.as_ref().and_then(find)?;
        Some(("clusters_updated", i / d, i % d))
    }
}

/// A model state of either element type.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyState {
    /// A float32 model.
    F32(ModelState<f32>),
    /// A float64 model.
    F64(ModelState<f64>),
}

/// Runs `$body` with `$s` bound to the typed state and `$T` to its type.
macro_rules! with_state {
    ($state:expr, $s:ident, $T:ident => $body:expr) => {
        match $state {
            $crate::model::AnyState::F32($s) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::model::AnyState::F64($s) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
        }
    };
}
pub(crate) use with_state;

impl AnyState {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            AnyState::F32(_) => DType::F32,
            AnyState::F64(_) => DType::F64,
        }
    }
    /// Training steps run so far.
    pub fn global_step(&self) -> i64 {
        with_state!(self, s, T => s.global_step)
    }
    /// k, the number of centres.
    pub fn k(&self) -> usize {
        with_state!(self, s, T => s.k())
    }
    /// d, the number of features.
    pub fn d(&self) -> usize {
        with_state!(self, s, T => s.d())
    }
    /// The master centres as an owned batch.
    pub fn clusters(&self) -> Dense<'static> {
        with_state!(self, s, T => dense_from(&s.clusters))
    }
}

pub(crate) fn dense_from<T: Float>(m: &Matrix<T>) -> Dense<'static>
where
    crate::input::Data<'static>: From<Vec<T>>,
{
    Dense::new(m.as_slice().to_vec(), m.rows(), m.cols()).expect("matrix shape is consistent")
}

/// What the caller wants from a prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PredictKeys {
    /// The nearest centre of each row.
    pub cluster_index: bool,
    /// The distance of each row to every centre.
    pub all_distances: bool,
}

impl PredictKeys {
    /// Both outputs (the default).
    pub const ALL: PredictKeys = PredictKeys {
        cluster_index: true,
        all_distances: true,
    };
    /// The nearest centre only.
    pub const CLUSTER_INDEX: PredictKeys = PredictKeys {
        cluster_index: true,
        all_distances: false,
    };
    /// The distances only.
    pub const ALL_DISTANCES: PredictKeys = PredictKeys {
        cluster_index: false,
        all_distances: true,
    };

    /// Parses the reference's key names (`"cluster_index"`,
    /// `"all_distances"`); an empty list or an unknown name is refused.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> crate::error::Result<PredictKeys> {
        use crate::error::ParamError;
        use crate::params::{ALL_DISTANCES, CLUSTER_INDEX};
        let mut out = PredictKeys {
            cluster_index: false,
            all_distances: false,
        };
        for name in names {
            match name.as_ref() {
                CLUSTER_INDEX => out.cluster_index = true,
                ALL_DISTANCES => out.all_distances = true,
                other => return Err(ParamError::UnknownPredictKey(other.to_string()).into()),
            }
        }
        if names.is_empty() {
            return Err(ParamError::NoPredictKeys.into());
        }
        Ok(out)
    }
}

/// Predictions for one batch, in input row order.
#[derive(Clone, Debug)]
pub struct PredictionBatch {
    /// The nearest centre of each row.
    pub cluster_index: Option<Vec<i64>>,
    /// The distance of each row to every centre, `n x k`.
    pub all_distances: Option<Dense<'static>>,
}

impl PredictionBatch {
    /// The number of rows predicted.
    pub fn rows(&self) -> usize {
        match (&self.cluster_index, &self.all_distances) {
            (Some(i), _) => i.len(),
            (None, Some(d)) => d.rows(),
            (None, None) => 0,
        }
    }
}

/// What the full-batch steps of one Estimator `train()` call on a constant
/// input carry from step to step: the rows' labels and pruning bounds
/// ([`LloydPasses`]), made on the first step. Empty for any other input; a
/// new call starts afresh.
#[derive(Default)]
pub(crate) struct StepCarry {
    /// A `LloydPasses<T>` for the model's element type.
    passes: Option<Box<dyn Any + Send>>,
}

impl StepCarry {
    /// The passes over `x` with `k` centres: those of the steps before, or
    /// new ones when there were none (or they were for other rows).
    fn passes<T: Float>(&mut self, x: MatRef<'_, T>, k: usize) -> &mut LloydPasses<T> {
        let fits = self
            .passes
            .as_ref()
            .and_then(|p| p.downcast_ref::<LloydPasses<T>>())
            .is_some_and(|p| p.labels.len() == x.rows());
        if !fits {
            let passes = LloydPasses::<T>::new(x, k, Pruning::Auto, Unpruned::Labelled, true);
            self.passes = Some(Box::new(passes));
        }
        self.passes
            .as_mut()
            .and_then(|p| p.downcast_mut::<LloydPasses<T>>())
            .expect("passes of this element type were just made")
    }
}

/// The model bound to its parameters.
#[derive(Clone, Debug)]
pub struct ModelFn {
    params: ValidKMeansParams,
}

impl ModelFn {
    /// The model for these (checked) parameters.
    pub fn new(params: ValidKMeansParams) -> Self {
        Self { params }
    }

    /// The parameters the model is bound to.
    pub fn params(&self) -> &ValidKMeansParams {
        &self.params
    }

    /// The distance the model clusters by.
    pub fn metric(&self) -> Metric {
        self.params.distance_metric()
    }

    /// S, as the int64 `update_in_steps` counts it (checked to fit).
    fn steps_per_iteration(&self) -> i64 {
        i64::try_from(self.params.mode().steps_per_iteration()).unwrap_or(i64::MAX)
    }

    /// The state of a freshly initialised model with these centres (which
    /// are normalised under cosine).
    pub fn new_state<T: Float>(&self, mut centres: Matrix<T>) -> ModelState<T> {
        if self.metric() == Metric::Cosine {
            for j in 0..centres.rows() {
                kernels::normalize_in_place(centres.row_mut(j));
            }
        }
        let k = centres.rows();
        let s = self.steps_per_iteration();
        let (cluster_counts, clusters_updated, update_in_steps) = match self.params.mode() {
            Mode::FullBatch => (None, None, None),
            // Sculley: the initial centre weighs as one point.
            Mode::MiniBatch => (Some(vec![1; k]), None, None),
            // Asynchronous: the working copy starts from C with no points.
            Mode::Async { .. } => (Some(vec![0; k]), Some(centres.clone()), Some(s)),
        };
        ModelState {
            clusters: centres,
            initialized: true,
            global_step: 0,
            cluster_counts,
            clusters_updated,
            update_in_steps,
        }
    }

    /// One training step on one batch (dense or CSR rows): returns the
    /// batch's loss, computed with the centres as they were before the
    /// update, and advances `global_step`. The batch must already be
    /// validated against the model.
    pub fn train_step<'r, T: Float>(
        &self,
        state: &mut ModelState<T>,
        x: impl Into<Rows<'r, T>>,
    ) -> f64 {
        self.train_step_carrying(state, x.into(), None)
    }

    /// [`train_step`](Self::train_step), where `carry` (when given) holds
    /// what the previous full-batch steps on these very rows left: their
    /// labels and the bounds that let this step skip the rows whose label
    /// cannot change (`crate::pruning`). The result is the same bits with or
    /// without it, so that resuming from a checkpoint, which starts afresh,
    /// reproduces an uninterrupted run: a dense squared-Euclidean full-batch
    /// step labels its rows (the kernels' labels, pruned or not), sums them
    /// in row order, or moves the rows whose label changed where every sum
    /// is exact, and takes the loss from those exact sums where the rows
    /// allow (pixels), else from each row's f64 squared distance added in
    /// row order ([`LloydPasses::pass`]); a mini-batch step sums and adds
    /// the losses in row order ([`batch::plain_pass`]).
    pub(crate) fn train_step_carrying<T: Float>(
        &self,
        state: &mut ModelState<T>,
        x: Rows<'_, T>,
        carry: Option<&mut StepCarry>,
    ) -> f64 {
        let (k, d) = (state.k(), state.d());
        let mut stats = ClusterStats::new(k, d);
        self.publish_if_due(state);
        match x {
            Rows::Dense(x) if self.metric() == Metric::SquaredEuclidean => {
                let prepared =
                    PreparedCentres::new(state.clusters.view(), Metric::SquaredEuclidean);
                if self.params.mode() == Mode::FullBatch {
                    // A step without a carry is a first pass of its own,
                    // with no bounds to start for later passes.
                    let mut own;
                    let passes = match carry {
                        Some(carry) => carry.passes(x, k),
                        None => {
                            own = LloydPasses::new(x, k, Pruning::Off, Unpruned::Labelled, true);
                            &mut own
                        }
                    };
                    let rows = passes.pass(x, None, &prepared, &mut stats, true);
                    passes.end_pass(x, rows);
                } else {
                    let mut labels = vec![0u32; x.rows()];
                    // One pass per call: nothing to keep its partials for.
                    batch::plain_pass(
                        x,
                        None,
                        &prepared,
                        &mut labels,
                        &mut stats,
                        true,
                        &mut kernels::Partials::default(),
                    );
                }
            }
            x => self.assign_accumulate(state.clusters.view(), x, &mut stats),
        }
        self.apply_update(state, &stats);
        stats.loss
    }

    /// The kernels' assign-and-sum pass over dense or sparse rows. The
    /// sparse kernels compute squared Euclidean distances only, so under
    /// cosine CSR rows are densified first.
    fn assign_accumulate<T: Float>(
        &self,
        centres: MatRef<'_, T>,
        x: Rows<'_, T>,
        stats: &mut ClusterStats,
    ) {
        match x {
            Rows::Dense(x) => {
                let prepared = PreparedCentres::new(centres, self.metric());
                kernels::assign_accumulate(x, None, &prepared, None, stats);
            }
            Rows::Csr(x) if self.metric() == Metric::SquaredEuclidean => {
                let prepared = SparseCentres::new(centres);
                sparse::assign_accumulate(x, None, &prepared, None, stats);
            }
            Rows::Csr(x) => {
                self.assign_accumulate(centres, Rows::Dense(x.to_dense().view()), stats)
            }
        }
    }

    /// Each row's nearest centre and its distance, in f64.
    fn nearest<T: Float>(&self, centres: MatRef<'_, T>, x: Rows<'_, T>) -> (Vec<u32>, Vec<f64>) {
        let n = x.rows();
        let mut labels = vec![0u32; n];
        match x {
            Rows::Dense(x) => {
                let prepared = PreparedCentres::new(centres, self.metric());
                let mut scores = vec![T::zero(); n];
                kernels::assign(x, &prepared, &mut labels, &mut scores);
                (labels, scores.iter().map(|s| s.to_f64_exact()).collect())
            }
            Rows::Csr(x) if self.metric() == Metric::SquaredEuclidean => {
                let mut scores = vec![0.0; n];
                sparse::assign(x, &SparseCentres::new(centres), &mut labels, &mut scores);
                (labels, scores)
            }
            Rows::Csr(x) => self.nearest(centres, Rows::Dense(x.to_dense().view())),
        }
    }

    /// The `n x k` distance matrix.
    fn distances<T: Float>(&self, centres: MatRef<'_, T>, x: Rows<'_, T>) -> Vec<T> {
        let mut out = vec![T::zero(); x.rows() * centres.rows()];
        match x {
            Rows::Dense(x) => {
                let prepared = PreparedCentres::new(centres, self.metric());
                kernels::distances(x, &prepared, &mut out);
            }
            Rows::Csr(x) if self.metric() == Metric::SquaredEuclidean => {
                sparse::distances(x, &SparseCentres::new(centres), &mut out);
            }
            Rows::Csr(x) => return self.distances(centres, Rows::Dense(x.to_dense().view())),
        }
        out
    }

    /// The centres the next training step assigns rows to: the master
    /// centres, or the working copy when the asynchronous mode publishes it
    /// at the start of that step. A caller that computes a step's
    /// statistics elsewhere (on partitions of a cluster) assigns to these.
    pub fn step_centres<T: Float>(&self, state: &ModelState<T>) -> Matrix<T> {
        let mut next = state.clone();
        self.publish_if_due(&mut next);
        next.clusters
    }

    /// One training step from statistics computed elsewhere against
    /// [`step_centres`](Self::step_centres) (for full batch: merged over
    /// every partition of the data): applies the same update rule as
    /// [`train_step`](Self::train_step) and returns the statistics' loss.
    pub fn train_step_with_statistics<T: Float>(
        &self,
        state: &mut ModelState<T>,
        stats: &ClusterStats,
    ) -> Result<f64> {
        let (k, d) = (state.k(), state.d());
        if (stats.k, stats.d) != (k, d)
            || stats.sums.len() != k * d
            || stats.weights.len() != k
            || stats.counts.len() != k
        {
            return Err(Error::InvalidShape(format!(
                "the step's statistics are for {} clusters x {} features but the model has {k} x {d}",
                stats.k, stats.d
            )));
        }
        self.publish_if_due(state);
        self.apply_update(state, stats);
        Ok(stats.loss)
    }

    /// Asynchronous mode: publishes the working copy at the start of steps
    /// S+1, 2S+1, ...
    fn publish_if_due<T: Float>(&self, state: &mut ModelState<T>) {
        let k = state.k();
        if let (Some(remaining), Some(working)) = (state.update_in_steps, &state.clusters_updated) {
            if remaining <= 0 {
                state.clusters = working.clone();
                if self.metric() == Metric::Cosine {
                    for j in 0..k {
                        kernels::normalize_in_place(state.clusters.row_mut(j));
                    }
                }
                if let Some(c) = state.cluster_counts.as_mut() {
                    c.fill(0);
                }
                state.update_in_steps = Some(self.steps_per_iteration());
            }
        }
    }

    /// The update rule on one step's statistics, and `global_step + 1`.
    fn apply_update<T: Float>(&self, state: &mut ModelState<T>, stats: &ClusterStats) {
        let k = state.k();
        if self.params.mode() == Mode::FullBatch {
            lloyd_update(&mut state.clusters, stats, self.metric());
        } else {
            let counts = state.cluster_counts.get_or_insert_with(|| vec![0; k]);
            let target = match state.clusters_updated.as_mut() {
                Some(working) => working,
                None => &mut state.clusters,
            };
            sculley_update(target, counts, stats);
            if let Some(r) = state.update_in_steps.as_mut() {
                *r = r.saturating_sub(1);
            }
        }
        // The Estimator refuses to step past i64::MAX; on its own the model
        // stays there rather than wrapping.
        state.global_step = state.global_step.saturating_add(1);
    }

    /// The loss of a batch (sum of each row's distance to its nearest
    /// centre) under the state's master centres.
    pub fn loss<'r, T: Float>(&self, state: &ModelState<T>, x: impl Into<Rows<'r, T>>) -> f64 {
        let (_, scores) = self.nearest(state.clusters.view(), x.into());
        scores.iter().sum()
    }

    /// Cluster indices and/or all distances for a batch.
    pub fn predict<'r, T: Float>(
        &self,
        state: &ModelState<T>,
        x: impl Into<Rows<'r, T>>,
        keys: PredictKeys,
    ) -> PredictionBatch
    where
        crate::input::Data<'static>: From<Vec<T>>,
    {
        let x = x.into();
        let centres = state.clusters.view();
        let n = x.rows();
        let cluster_index = keys.cluster_index.then(|| {
            let (labels, _) = self.nearest(centres, x);
            labels.into_iter().map(i64::from).collect()
        });
        let all_distances = keys.all_distances.then(|| {
            let out = self.distances(centres, x);
            Dense::new(out, n, centres.rows()).expect("n x k distances")
        });
        PredictionBatch {
            cluster_index,
            all_distances,
        }
    }
}

/// Lloyd: each centre becomes the mean of its points; an empty cluster keeps
/// its centre. Under cosine the mean is normalised.
fn lloyd_update<T: Float>(clusters: &mut Matrix<T>, stats: &ClusterStats, metric: Metric) {
    let d = stats.d;
    for j in 0..stats.k {
        let w = stats.weights[j];
        if w <= 0.0 {
            continue;
        }
        let row = clusters.row_mut(j);
        for (c, s) in row.iter_mut().zip(&stats.sums[j * d..(j + 1) * d]) {
            *c = T::from_f64_lossy(s / w);
        }
        if metric == Metric::Cosine {
            kernels::normalize_in_place(row);
        }
    }
}

/// Sculley's rule: `C_j += (s_j - m_j C_j) / (n_j + m_j)`, `n_j += m_j`, for
/// the clusters that received points. A cluster with no previous points
/// (`n_j = 0`) takes the batch mean.
fn sculley_update<T: Float>(centres: &mut Matrix<T>, counts: &mut [i64], stats: &ClusterStats) {
    let d = stats.d;
    #[allow(clippy::needless_range_loop)] // j indexes counts, stats and centre rows alike
    for j in 0..stats.k {
        let m = stats.counts[j] as i64;
        if m == 0 {
            continue;
        }
        // Counts are >= 0 (checked when a checkpoint is read), so the
        // denominator is at least m >= 1.
        let n_j = counts[j].max(0).saturating_add(m);
        let denom = n_j as f64;
        let mf = m as f64;
        let row = centres.row_mut(j);
        for (c, s) in row.iter_mut().zip(&stats.sums[j * d..(j + 1) * d]) {
            let cur = c.to_f64_exact();
            *c = T::from_f64_lossy(cur + (s - mf * cur) / denom);
        }
        counts[j] = n_j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::KMeansParams;

    // Four points on a line: 0, 2 near centre A = 1; 10, 14 near centre B = 11.
    const X: [f64; 4] = [0.0, 2.0, 10.0, 14.0];

    fn x() -> MatRef<'static, f64> {
        MatRef::new(&X, 4, 1).unwrap()
    }

    fn centres(a: f64, b: f64) -> Matrix<f64> {
        Matrix::new(vec![a, b], 2, 1).unwrap()
    }

    fn model(mini: bool, s: u64) -> ModelFn {
        let mode = Mode::from_flags(mini, s).unwrap();
        ModelFn::new(KMeansParams::new(2).mode(mode).check().unwrap())
    }

    #[test]
    fn lloyd_step_by_hand() {
        // Centres 3 and 9: 0, 2 -> 3 (d = 9, 1); 10, 14 -> 9 (d = 1, 25).
        let m = model(false, 1);
        let mut st = m.new_state(centres(3.0, 9.0));
        let loss = m.train_step(&mut st, x());
        assert_eq!(loss, 9.0 + 1.0 + 1.0 + 25.0);
        assert_eq!(st.clusters.as_slice(), &[1.0, 12.0]);
        assert_eq!(st.global_step, 1);
        assert_eq!(st.cluster_counts, None);
    }

    #[test]
    fn lloyd_keeps_an_empty_cluster() {
        let m = model(false, 1);
        let mut st = m.new_state(centres(5.0, 100.0));
        m.train_step(&mut st, x());
        assert_eq!(st.clusters.as_slice(), &[6.5, 100.0]);
    }

    #[test]
    fn sculley_step_by_hand() {
        // Counts start at 1. Cluster 0 gets {0, 2}: C = 3 + (2 - 2*3)/(1+2) = 3 - 4/3.
        // Cluster 1 gets {10, 14}: C = 9 + (24 - 2*9)/3 = 11.
        let m = model(true, 1);
        let mut st = m.new_state(centres(3.0, 9.0));
        let loss = m.train_step(&mut st, x());
        assert_eq!(loss, 36.0);
        let c = st.clusters.as_slice();
        assert!((c[0] - (3.0 - 4.0 / 3.0)).abs() < 1e-12);
        assert!((c[1] - 11.0).abs() < 1e-12);
        assert_eq!(st.cluster_counts, Some(vec![3, 3]));
        // Second step: centres 5/3 and 11; 0, 2 -> 0; 10, 14 -> 1.
        // C0 = 5/3 + (2 - 2*5/3)/5 = 5/3 - 4/15 = 1.4; C1 = 11 + (24 - 22)/5 = 11.4.
        m.train_step(&mut st, x());
        let c = st.clusters.as_slice();
        assert!((c[0] - 1.4).abs() < 1e-12, "{c:?}");
        assert!((c[1] - 11.4).abs() < 1e-12, "{c:?}");
        assert_eq!(st.cluster_counts, Some(vec![5, 5]));
    }

    #[test]
    fn async_publishes_after_s_steps() {
        // S = 2: steps 1 and 2 update only the working copy; step 3 publishes
        // first, then assigns with the published centres.
        let m = model(true, 2);
        let mut st = m.new_state(centres(3.0, 9.0));
        let first = [0.0, 2.0, 10.0, 14.0];
        let second = [4.0, 12.0];
        let l1 = m.train_step(&mut st, MatRef::new(&first, 4, 1).unwrap());
        assert_eq!(l1, 36.0);
        // Counts start at 0: the working copy takes the batch means 1 and 12.
        assert_eq!(st.clusters.as_slice(), &[3.0, 9.0]);
        assert_eq!(
            st.clusters_updated.as_ref().unwrap().as_slice(),
            &[1.0, 12.0]
        );
        // Step 2 still assigns with C = (3, 9): 4 -> 0, 12 -> 1.
        let l2 = m.train_step(&mut st, MatRef::new(&second, 2, 1).unwrap());
        assert_eq!(l2, 1.0 + 9.0);
        // Working copy: C'0 = 1 + (4 - 1)/3 = 2; C'1 = 12 + (12 - 12)/3 = 12.
        assert_eq!(
            st.clusters_updated.as_ref().unwrap().as_slice(),
            &[2.0, 12.0]
        );
        assert_eq!(st.clusters.as_slice(), &[3.0, 9.0]);
        // Step 3 publishes C = (2, 12) and assigns with it: loss on {0, 2, 10, 14}
        // is 4 + 0 + 4 + 4.
        let l3 = m.train_step(&mut st, MatRef::new(&first, 4, 1).unwrap());
        assert_eq!(l3, 12.0);
        assert_eq!(st.global_step, 3);
        // After the publish the counts restarted at 0: C' = batch means 1 and 12.
        assert_eq!(
            st.clusters_updated.as_ref().unwrap().as_slice(),
            &[1.0, 12.0]
        );
        assert_eq!(st.cluster_counts, Some(vec![2, 2]));
    }

    #[test]
    fn cosine_lloyd_step_by_hand() {
        // Unit directions at 0 and 90 degrees; points at 10 and 80 degrees
        // (various lengths) go to the first and second centre.
        let deg = |a: f64| (a.to_radians().cos(), a.to_radians().sin());
        let (c1, s1) = deg(10.0);
        let (c2, s2) = deg(80.0);
        let data = vec![5.0 * c1, 5.0 * s1, 0.5 * c1, -0.5 * s1, 3.0 * c2, 3.0 * s2];
        let x = MatRef::new(&data, 3, 2).unwrap();
        let p = KMeansParams::new(2)
            .mode(Mode::FullBatch)
            .distance_metric(Metric::Cosine);
        let m = ModelFn::new(p.check().unwrap());
        let mut st = m.new_state(Matrix::new(vec![2.0, 0.0, 0.0, 1.0], 2, 2).unwrap());
        assert_eq!(st.clusters.as_slice(), &[1.0, 0.0, 0.0, 1.0]);
        let loss = m.train_step(&mut st, x);
        let expected = 3.0 - (c1 + c1 + s2);
        assert!((loss - expected).abs() < 1e-12, "{loss} vs {expected}");
        // Centre 0: mean of unit vectors at +10 and -10 degrees -> (1, 0).
        let c = st.clusters.as_slice();
        assert!((c[0] - 1.0).abs() < 1e-12 && c[1].abs() < 1e-12, "{c:?}");
        assert!(
            (c[2] - c2).abs() < 1e-12 && (c[3] - s2).abs() < 1e-12,
            "{c:?}"
        );
    }

    #[test]
    fn ties_go_to_the_lowest_index() {
        // The point 5 is equally far from 3 and 7, and from the duplicate 3.
        let m = model(false, 1);
        let st = m.new_state(Matrix::new(vec![7.0, 3.0, 3.0], 3, 1).unwrap());
        let p = m.predict(
            &st,
            MatRef::new(&[5.0, 3.0], 2, 1).unwrap(),
            PredictKeys {
                cluster_index: true,
                all_distances: true,
            },
        );
        assert_eq!(p.cluster_index.unwrap(), vec![0, 1]);
        assert_eq!(
            p.all_distances.unwrap().to_type::<f64>().as_ref(),
            &[4.0, 4.0, 4.0, 16.0, 0.0, 0.0]
        );
    }

    /// Rows around `k` centres in `d` dimensions, with exact duplicates and
    /// rows half-way between two centres (near ties whose label the
    /// rounding decides), far enough from the origin that the kernels'
    /// scores round.
    fn clustered<T: Float>(n: usize, d: usize, k: usize) -> Vec<T> {
        // A splitmix64 hash of (j, p) mapped to [0, 1): centres with no
        // pattern among them.
        let unit = |a: usize, b: usize| {
            let mut z = (a as u64) << 32 ^ b as u64;
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as f64 / 2f64.powi(64)
        };
        let centre = |j: usize, p: usize| 40.0 + 60.0 * unit(j, p);
        let mut x: Vec<T> = Vec::with_capacity(n * d);
        for i in 0..n {
            let (a, b) = (i % k, (i / 7 + 1) % k);
            for p in 0..d {
                let noise = (unit(i + 1000, p) - 0.5) * 28.0;
                let v = match i % 50 {
                    0 => 0.5 * (centre(a, p) + centre(b, p)),
                    1 if i > 0 => x[(i - 1) * d + p].to_f64_exact(),
                    _ => centre(a, p) + noise,
                };
                x.push(T::from_f64_lossy(v));
            }
        }
        x
    }

    /// [`clustered`] rounded to whole numbers, as pixels are: every sum
    /// of the rows and of their squares is exact in f64.
    fn whole<T: Float>(n: usize, d: usize, k: usize) -> Vec<T> {
        let x = clustered::<T>(n, d, k);
        x.iter()
            .map(|v| T::from_f64_lossy(v.to_f64_exact().round()))
            .collect()
    }

    /// `steps` full-batch steps from `init` on `x` in a pool of `threads`,
    /// carrying labels and bounds from step to step or starting each
    /// afresh: the final state, each step's loss (its bits) and the carry.
    fn run_steps<T: Float>(
        m: &ModelFn,
        init: &Matrix<T>,
        x: MatRef<'_, T>,
        steps: usize,
        threads: usize,
        carry: bool,
    ) -> (ModelState<T>, Vec<u64>, StepCarry) {
        crate::in_pool(threads, || {
            let mut st = m.new_state(init.clone());
            let mut c = StepCarry::default();
            let losses = (0..steps)
                .map(|_| {
                    m.train_step_carrying(&mut st, Rows::Dense(x), carry.then_some(&mut c))
                        .to_bits()
                })
                .collect();
            (st, losses, c)
        })
    }

    /// The passes a carry holds.
    fn carried_passes<T: Float>(c: &StepCarry) -> Option<&LloydPasses<T>> {
        c.passes
            .as_ref()
            .map(|p| p.downcast_ref::<LloydPasses<T>>().unwrap())
    }

    /// Steps that carry labels and bounds give the bits of steps that
    /// start afresh every time (labels, centres, losses), at 1 and 2
    /// threads, while most rows of the later steps skip the kernels; on
    /// whole numbers the loss comes from the exact sums, elsewhere from
    /// the rows.
    fn carried_steps_match_fresh_steps<T: Float>() {
        let shapes = [(5000, 32, 40), (5000, 160, 8)];
        for ((n, d, k), pixels) in shapes.into_iter().flat_map(|s| [(s, false), (s, true)]) {
            let x = if pixels {
                whole::<T>(n, d, k)
            } else {
                clustered::<T>(n, d, k)
            };
            let xm = MatRef::new(&x, n, d).unwrap();
            let m = ModelFn::new(KMeansParams::new(k).mode(Mode::FullBatch).check().unwrap());
            let init = Matrix::new(x[..k * d].to_vec(), k, d).unwrap();
            let run = |threads: usize, carry: bool| {
                let (st, losses, c) = run_steps(&m, &init, xm, 15, threads, carry);
                let (rows, from_sums) = match carried_passes::<T>(&c) {
                    Some(p) => (p.kernel_rows.clone(), p.loss_from_sums()),
                    None => (Vec::new(), None),
                };
                (st, losses, rows, from_sums)
            };
            let (fresh, fresh_losses, _, _) = run(1, false);
            for threads in [1, 2] {
                let (carried, losses, rows, from_sums) = run(threads, true);
                let what = format!("{n}x{d} k={k}, whole numbers {pixels}, {threads} threads");
                assert_eq!(carried, fresh, "{what}");
                assert_eq!(losses, fresh_losses, "{what}");
                assert_eq!(from_sums, Some(pixels), "{what}");
                assert_eq!(rows.len(), 15);
                assert!(
                    rows[10..].iter().all(|&r| r * 10 < n),
                    "{n}x{d} k={k}: rows through the kernels per step {rows:?}"
                );
            }
        }
    }

    #[test]
    fn carried_steps_match_fresh_steps_f32() {
        carried_steps_match_fresh_steps::<f32>();
    }

    #[test]
    fn carried_steps_match_fresh_steps_f64() {
        carried_steps_match_fresh_steps::<f64>();
    }

    /// Whole numbers whose clusters are each one point repeated: the loss
    /// is 0, which the exact sums' terms cancel to, so their compensated
    /// sum cannot be bounded within 1e-12 of it and every step sums the
    /// rows again for its loss (`LloydPasses::sum_labelled_rows`). The loss
    /// is still exactly 0, and carried steps give the bits of fresh ones at
    /// 1 and 2 threads.
    fn steps_whose_sums_cancel_read_the_rows<T: Float>() {
        let (n, d, k) = (2000, 24, 5);
        let point = |j: usize, p: usize| T::from_f64_lossy(((j * 37 + p * 11) % 200) as f64 + 1e4);
        // Row i is point i % k: the first k rows, the initial centres, are
        // the k points, and each row is its own centre.
        let x: Vec<T> = (0..n)
            .flat_map(|i| (0..d).map(move |p| point(i % k, p)))
            .collect();
        let xm = MatRef::new(&x, n, d).unwrap();
        let m = ModelFn::new(KMeansParams::new(k).mode(Mode::FullBatch).check().unwrap());
        let init = Matrix::new(x[..k * d].to_vec(), k, d).unwrap();
        let run = |threads: usize, carry: bool| {
            let (st, losses, c) = run_steps(&m, &init, xm, 4, threads, carry);
            let passes = carried_passes::<T>(&c).map(|p| (p.loss_from_sums(), p.resummed_passes));
            (st, losses, passes)
        };
        let (fresh, fresh_losses, _) = run(1, false);
        assert!(fresh_losses.iter().all(|&l| l == 0), "{fresh_losses:?}");
        for threads in [1, 2] {
            let (carried, losses, passes) = run(threads, true);
            assert_eq!(carried, fresh, "{threads} threads");
            assert_eq!(losses, fresh_losses, "{threads} threads");
            assert_eq!(passes, Some((Some(true), 4)), "{threads} threads");
        }
    }

    #[test]
    fn steps_whose_sums_cancel_read_the_rows_f32() {
        steps_whose_sums_cancel_read_the_rows::<f32>();
    }

    #[test]
    fn steps_whose_sums_cancel_read_the_rows_f64() {
        steps_whose_sums_cancel_read_the_rows::<f64>();
    }

    /// A dense squared-Euclidean step's loss is the sum of each row's
    /// squared distance to its nearest centre before the update, to 1e-12
    /// of it: added row by row in f64, or (whole numbers) from the exact
    /// sums.
    #[test]
    fn full_batch_loss_is_the_f64_sum_of_squared_distances() {
        let (n, d, k) = (3000, 20, 6);
        for x in [clustered::<f32>(n, d, k), whole::<f32>(n, d, k)] {
            full_batch_loss_is_the_sum_of_squared_distances(&x, n, d, k);
        }
    }

    fn full_batch_loss_is_the_sum_of_squared_distances(x: &[f32], n: usize, d: usize, k: usize) {
        let xm = MatRef::new(x, n, d).unwrap();
        let m = ModelFn::new(KMeansParams::new(k).mode(Mode::FullBatch).check().unwrap());
        let mut st = m.new_state(Matrix::new(x[..k * d].to_vec(), k, d).unwrap());
        for _ in 0..3 {
            let c: Vec<f64> = st.clusters.as_slice().iter().map(|&v| v as f64).collect();
            let expected: f64 = x
                .chunks(d)
                .map(|r| {
                    c.chunks(d)
                        .map(|cj| {
                            r.iter()
                                .zip(cj)
                                .map(|(&a, &b)| (a as f64 - b).powi(2))
                                .sum::<f64>()
                        })
                        .fold(f64::INFINITY, f64::min)
                })
                .sum();
            let loss = m.train_step(&mut st, xm);
            assert!(
                (loss - expected).abs() <= 1e-12 * expected,
                "{loss} vs {expected}"
            );
        }
    }
}

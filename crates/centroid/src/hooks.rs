//! Hooks around training steps and listeners around checkpoint saves.
//!
//! Every method has an empty default, so an implementation overrides only
//! what it needs. An error returned from a hook aborts the call it is in;
//! checkpoints already written stay.

use crate::error::Result;
use crate::input::Dense;

/// What a hook may do to the loop it runs in.
#[derive(Debug, Default)]
pub struct RunContext {
    stop_requested: bool,
    global_step: i64,
    clusters_requested: bool,
    clusters: Option<Dense<'static>>,
    checkpoint_requested: bool,
}

impl RunContext {
    pub(crate) fn new(global_step: i64) -> Self {
        Self {
            global_step,
            ..Self::default()
        }
    }
    /// Asks, in `before_run`, for the centres after this step to be
    /// available to `after_run` through [`RunContext::clusters`] (as a
    /// TensorFlow hook fetches the `clusters` variable). Training only.
    pub fn request_clusters(&mut self) {
        self.clusters_requested = true;
    }
    /// Asks the training loop to write a checkpoint after this step (as a
    /// TensorFlow `CheckpointSaverHook` does on its own schedule).
    pub fn request_checkpoint(&mut self) {
        self.checkpoint_requested = true;
    }
    pub(crate) fn checkpoint_requested(&self) -> bool {
        self.checkpoint_requested
    }
    /// The centres after the step, when a hook asked for them.
    pub fn clusters(&self) -> Option<&Dense<'static>> {
        self.clusters.as_ref()
    }
    pub(crate) fn clusters_requested(&self) -> bool {
        self.clusters_requested
    }
    pub(crate) fn set_clusters(&mut self, clusters: Option<Dense<'static>>) {
        self.clusters = clusters;
    }
    /// Forgets the previous step's requests and centres.
    pub(crate) fn reset_fetches(&mut self) {
        self.clusters_requested = false;
        self.clusters = None;
        self.checkpoint_requested = false;
    }
    /// Asks the loop to stop after the current step.
    pub fn request_stop(&mut self) {
        self.stop_requested = true;
    }
    /// Whether a hook asked the loop to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop_requested
    }
    /// The global step before the step this context belongs to runs.
    pub fn global_step(&self) -> i64 {
        self.global_step
    }
    pub(crate) fn set_global_step(&mut self, step: i64) {
        self.global_step = step;
    }
}

/// What one step produced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunValues {
    /// The global step after the step.
    pub global_step: i64,
    /// The batch's loss, with the centres as they were before the step.
    pub loss: f64,
}

/// Called around each training (or evaluation/prediction) step.
///
/// The argument structs own their hooks (`Box<dyn SessionRunHook + 'h>`);
/// a caller who wants to look at a hook afterwards passes `Box::new(&mut
/// hook)`, which the blanket implementation for `&mut H` allows.
pub trait SessionRunHook {
    /// Once, before the first step.
    fn begin(&mut self) -> Result<()> {
        Ok(())
    }
    /// Before every step.
    fn before_run(&mut self, _ctx: &mut RunContext) -> Result<()> {
        Ok(())
    }
    /// After every step, with what it produced.
    fn after_run(&mut self, _ctx: &mut RunContext, _values: &RunValues) -> Result<()> {
        Ok(())
    }
    /// Once, after the last step of a call that did not fail.
    fn end(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<H: SessionRunHook + ?Sized> SessionRunHook for &mut H {
    fn begin(&mut self) -> Result<()> {
        (**self).begin()
    }
    fn before_run(&mut self, ctx: &mut RunContext) -> Result<()> {
        (**self).before_run(ctx)
    }
    fn after_run(&mut self, ctx: &mut RunContext, values: &RunValues) -> Result<()> {
        (**self).after_run(ctx, values)
    }
    fn end(&mut self) -> Result<()> {
        (**self).end()
    }
}

/// Called around every checkpoint a `train()` call writes. Owned by
/// [`TrainArgs`](crate::TrainArgs) like hooks; `Box::new(&mut listener)`
/// lends one instead.
pub trait CheckpointSaverListener {
    /// Once, before training starts.
    fn begin(&mut self) -> Result<()> {
        Ok(())
    }
    /// Before a checkpoint of `global_step` is written.
    fn before_save(&mut self, _global_step: i64) -> Result<()> {
        Ok(())
    }
    /// After a checkpoint of `global_step` is written.
    fn after_save(&mut self, _global_step: i64) -> Result<()> {
        Ok(())
    }
    /// Once, after the last checkpoint of a call that did not fail.
    fn end(&mut self, _global_step: i64) -> Result<()> {
        Ok(())
    }
}

impl<L: CheckpointSaverListener + ?Sized> CheckpointSaverListener for &mut L {
    fn begin(&mut self) -> Result<()> {
        (**self).begin()
    }
    fn before_save(&mut self, global_step: i64) -> Result<()> {
        (**self).before_save(global_step)
    }
    fn after_save(&mut self, global_step: i64) -> Result<()> {
        (**self).after_save(global_step)
    }
    fn end(&mut self, global_step: i64) -> Result<()> {
        (**self).end(global_step)
    }
}

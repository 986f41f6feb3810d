//! Hooks around training steps and listeners around checkpoint saves.
//!
//! Every method has an empty default, so an implementation overrides only
//! what it needs. An error returned from a hook aborts the call it is in;
//! checkpoints already written stay.

use crate::error::Result;

/// What a hook may do to the loop it runs in.
#[derive(Debug, Default)]
pub struct RunContext {
    stop_requested: bool,
    global_step: i64,
}

impl RunContext {
    pub(crate) fn new(global_step: i64) -> Self {
        Self {
            stop_requested: false,
            global_step,
        }
    }
    /// Asks the loop to stop after the current step.
    pub fn request_stop(&mut self) {
        self.stop_requested = true;
    }
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
pub trait SessionRunHook {
    fn begin(&mut self) -> Result<()> {
        Ok(())
    }
    fn before_run(&mut self, _ctx: &mut RunContext) -> Result<()> {
        Ok(())
    }
    fn after_run(&mut self, _ctx: &mut RunContext, _values: &RunValues) -> Result<()> {
        Ok(())
    }
    fn end(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Called around every checkpoint a `train()` call writes.
pub trait CheckpointSaverListener {
    fn begin(&mut self) -> Result<()> {
        Ok(())
    }
    fn before_save(&mut self, _global_step: i64) -> Result<()> {
        Ok(())
    }
    fn after_save(&mut self, _global_step: i64) -> Result<()> {
        Ok(())
    }
    fn end(&mut self, _global_step: i64) -> Result<()> {
        Ok(())
    }
}

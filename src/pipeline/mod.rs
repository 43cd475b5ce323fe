//! Group commit: requests hand their signals to a bounded queue; a few writer tasks take
//! everything waiting (up to a size or a short linger time), write it in one transaction and
//! answer every request of the batch after the commit.

mod batcher;
mod job;
mod rate;
mod writer;

pub use crate::config::PipelineSettings;
pub use batcher::{Pipeline, QueueDepth};
pub use job::{JobOutcome, SubmitError};

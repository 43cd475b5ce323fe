//! The analysis queue: Celery task messages on Redis, guarded by the per-trace Redis lock, fed
//! from the outbox by the dispatcher. Ingestion never talks to Redis.

pub mod celery;
pub mod dispatcher;
pub mod redis_queue;

pub use dispatcher::{DispatchSettings, Dispatcher, StepOutcome};
pub use redis_queue::{AnalysisQueue, Delivery, QueueError};

//! A consumer of the analysis queue that reads what a Celery worker reads: `BRPOP` on the
//! queue's list, the message envelope, the base64 body `[args, kwargs, embed]`, the task name
//! and its one argument, a trace id. It drains the queue (as the worker would) and counts the
//! messages a worker would refuse.

use base64::Engine;
use redis::AsyncCommands;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::sample::{lock, Shared};
use crate::BoxError;

/// Whether `message` is an `analyze_trace` task a Celery 5 worker runs.
fn well_formed(message: &str) -> bool {
    let Ok(envelope) = serde_json::from_str::<Value>(message) else { return false };
    let properties = &envelope["properties"];
    let Some(body) = envelope["body"].as_str() else { return false };
    let Ok(body) = base64::engine::general_purpose::STANDARD.decode(body) else { return false };
    let Ok(Value::Array(parts)) = serde_json::from_slice::<Value>(&body) else { return false };
    envelope["headers"]["task"] == "analyze_trace"
        && envelope["headers"]["id"].is_string()
        && envelope["content-type"] == "application/json"
        && properties["body_encoding"] == "base64"
        && properties["delivery_tag"].is_string()
        && properties["delivery_info"]["routing_key"].is_string()
        && parts.len() == 3
        && parts[0].as_array().is_some_and(|args| args.len() == 1 && args[0].is_string())
}

pub async fn drain(
    redis_url: String,
    queue: String,
    window: Shared,
    stop: CancellationToken,
) -> Result<(), BoxError> {
    let client = redis::Client::open(redis_url)?;
    // A blocking pop waits longer than the default response timeout: none.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut connection = client.get_multiplexed_async_connection_with_config(&config).await?;
    loop {
        let popped: Option<(String, String)> = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            popped = connection.brpop(&queue, 1.0) => popped?,
        };
        if let Some((_, message)) = popped {
            let mut w = lock(&window);
            if well_formed(&message) {
                w.analyses_consumed += 1;
            } else {
                w.malformed_tasks += 1;
            }
        }
    }
}

//! How a client should react to a failure, whatever the transport. Only this module decides
//! the HTTP status and gRPC code of an ingestion failure.

use axum::http::StatusCode;
use tonic::Code;

use crate::ingest::IngestError;
use crate::pipeline::SubmitError;

/// The client-facing class of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The request can never succeed as sent: do not retry.
    Malformed,
    /// The request is larger than we accept: do not retry as is.
    TooLarge,
    /// Nothing was stored; the same request may succeed later.
    RetryLater,
    /// Our fault; details are in our logs, never in the answer.
    Internal,
}

impl Reject {
    pub fn http_status(self) -> StatusCode {
        match self {
            Reject::Malformed => StatusCode::BAD_REQUEST,
            Reject::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::RetryLater => StatusCode::SERVICE_UNAVAILABLE,
            Reject::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OTLP clients retry UNAVAILABLE, and RESOURCE_EXHAUSTED only with RetryInfo, which an
    /// oversized message never carries.
    pub fn grpc_code(self) -> Code {
        match self {
            Reject::Malformed => Code::InvalidArgument,
            Reject::TooLarge => Code::ResourceExhausted,
            Reject::RetryLater => Code::Unavailable,
            Reject::Internal => Code::Internal,
        }
    }
}

/// What the client is told about an ingestion failure: the class, and which of the retryable
/// causes it was, so an operator reading a client's log knows whether to look at load, at the
/// database or at a deploy. Nothing internal is leaked.
pub fn client_message(error: &IngestError) -> &'static str {
    match error {
        IngestError::Pipeline(SubmitError::Saturated) => {
            "ingest queue full (the database is not keeping up), retry later"
        }
        IngestError::Pipeline(SubmitError::ShuttingDown) => "shutting down, retry later",
        IngestError::TimedOut(_) => "storage did not confirm in time (INGEST_TIMEOUT_MS), retry later",
        error if error.is_transient() => "storage temporarily unavailable, retry later",
        IngestError::Pipeline(SubmitError::Storage(_)) => "internal error",
    }
}

impl From<&IngestError> for Reject {
    fn from(error: &IngestError) -> Self {
        if error.is_transient() {
            Reject::RetryLater
        } else {
            Reject::Internal
        }
    }
}

/// Seconds a client is asked to wait before retrying a 503 or UNAVAILABLE.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// `outer: inner: innermost`, for one-line logs: every layer's own words, causes kept.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::store::StoreError;

    #[test]
    fn each_class_has_its_http_status_and_grpc_code() {
        let expected = [
            (Reject::Malformed, StatusCode::BAD_REQUEST, Code::InvalidArgument),
            (Reject::TooLarge, StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted),
            (Reject::RetryLater, StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
            (Reject::Internal, StatusCode::INTERNAL_SERVER_ERROR, Code::Internal),
        ];
        for (reject, status, code) in expected {
            assert_eq!((reject.http_status(), reject.grpc_code()), (status, code));
        }
    }

    #[test]
    fn unavailable_or_slow_storage_is_retryable() {
        let unreachable: Box<dyn std::error::Error + Send + Sync> = "connection refused".into();
        let down = IngestError::from(SubmitError::Storage(Arc::new(StoreError::Unavailable(unreachable))));
        assert_eq!(Reject::from(&down), Reject::RetryLater);
        assert_eq!(client_message(&down), "storage temporarily unavailable, retry later");
        let full = IngestError::from(SubmitError::Saturated);
        assert_eq!(Reject::from(&full), Reject::RetryLater);
        let slow = IngestError::TimedOut(std::time::Duration::from_secs(3));
        assert_eq!(Reject::from(&slow), Reject::RetryLater);
    }

    #[test]
    fn the_chain_keeps_every_cause() {
        let unreachable: Box<dyn std::error::Error + Send + Sync> = "connection refused".into();
        let down = IngestError::from(SubmitError::Storage(Arc::new(StoreError::Unavailable(unreachable))));
        assert_eq!(
            error_chain(&down),
            "not stored: batch not committed: database unavailable: connection refused"
        );
    }
}

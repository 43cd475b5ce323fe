//! How a client should react to a failure, whatever the transport. Only this module decides
//! the HTTP status and gRPC code of an ingestion failure.

use axum::http::StatusCode;
use tonic::Code;

use crate::ingest::IngestError;

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
    use crate::pipeline::Refused;
    match error {
        IngestError::Refused(Refused::Saturated) => {
            "ingest queue full (the database is not keeping up), retry later"
        }
        IngestError::Refused(Refused::ShuttingDown) => "shutting down, retry later",
        IngestError::TimedOut(_) => "storage did not confirm in time (INGEST_TIMEOUT_MS), retry later",
        IngestError::Batch(failed) if failed.transient => "storage temporarily unavailable, retry later",
        IngestError::Batch(_) => "internal error",
    }
}

impl From<&IngestError> for Reject {
    fn from(error: &IngestError) -> Self {
        match error {
            IngestError::Refused(_) | IngestError::TimedOut(_) => Reject::RetryLater,
            IngestError::Batch(failed) if failed.transient => Reject::RetryLater,
            IngestError::Batch(_) => Reject::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{BatchFailed, Refused};

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
        let down = IngestError::Batch(BatchFailed { transient: true, message: "refused".into() });
        assert_eq!(Reject::from(&down), Reject::RetryLater);
        let full = IngestError::Refused(Refused::Saturated);
        assert_eq!(Reject::from(&full), Reject::RetryLater);
        let bug = IngestError::Batch(BatchFailed { transient: false, message: "bad parameter".into() });
        assert_eq!(Reject::from(&bug), Reject::Internal);
        let slow = IngestError::TimedOut(std::time::Duration::from_secs(3));
        assert_eq!(Reject::from(&slow), Reject::RetryLater);
    }
}

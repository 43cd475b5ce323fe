//! How a client should react to a failure, whatever the transport, and how a failure is
//! written in a log line. Only this module decides the HTTP status and gRPC code of a class of
//! failure; `ingest` says which class each ingestion failure is. Imports nothing of ours.

use axum::http::StatusCode;
use tonic::Code;

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
    fn the_chain_keeps_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("innermost"));
        assert_eq!(error_chain(&error), "outer: innermost");
    }
}

//! How a client should react to a failure, whatever the transport. Only this module decides
//! status codes for ingestion failures.

use axum::http::StatusCode;

use crate::ingest::IngestError;

/// The client-facing class of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The request can never succeed as sent.
    Malformed,
    /// Nothing was stored; the same request may succeed later.
    RetryLater,
    /// Our fault; details are in our logs, never in the answer.
    Internal,
}

impl Reject {
    pub fn http_status(self) -> StatusCode {
        match self {
            Reject::Malformed => StatusCode::BAD_REQUEST,
            Reject::RetryLater => StatusCode::SERVICE_UNAVAILABLE,
            Reject::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<&IngestError> for Reject {
    fn from(error: &IngestError) -> Self {
        match error {
            IngestError::Unavailable(_) => Reject::RetryLater,
            IngestError::Failed(_) => Reject::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_http_status() {
        assert_eq!(Reject::Malformed.http_status(), StatusCode::BAD_REQUEST);
        assert_eq!(Reject::RetryLater.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Reject::Internal.http_status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn unavailable_storage_is_retryable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = IngestError::Unavailable(crate::store::StoreError::Unavailable(Box::new(io)));
        assert_eq!(Reject::from(&error), Reject::RetryLater);
    }
}

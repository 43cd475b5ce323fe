//! OTLP/HTTP answers: export responses and `google.rpc.Status` errors, in the request's
//! encoding (protobuf or JSON), as the spec requires for success and failure alike.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde_json::json;

use crate::error::Reject;
use crate::error::RETRY_AFTER_SECONDS;
use crate::receivers::otlp_export::{ExportRequest, Rejected};

/// `google.rpc.Status`, without details (clients read `message`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The request's encoding, which the answer uses too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From `Content-Type`: media type compared case-insensitively, parameters ignored.
    pub fn from_content_type(value: Option<&HeaderValue>) -> Option<Encoding> {
        let text = value?.to_str().ok()?;
        let essence = text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// A failed request: its HTTP status, gRPC-equivalent code and English message.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub code: tonic::Code,
    pub message: String,
}

impl Failure {
    pub fn from_reject(reject: Reject, message: impl Into<String>) -> Failure {
        Failure { status: reject.http_status(), code: reject.grpc_code(), message: message.into() }
    }

    pub fn malformed(message: impl Into<String>) -> Failure {
        Failure::from_reject(Reject::Malformed, message)
    }

    pub fn too_large(limit: usize) -> Failure {
        Failure::from_reject(
            Reject::TooLarge,
            format!("request exceeds {limit} bytes (OTLP_MAX_MESSAGE_BYTES)"),
        )
    }

    pub fn with_status(status: StatusCode, code: tonic::Code, message: impl Into<String>) -> Failure {
        Failure { status, code, message: message.into() }
    }

    /// The `google.rpc.Status` answer; 503s carry `Retry-After`.
    pub fn into_response(self, encoding: Encoding) -> Response {
        let status = RpcStatus { code: self.code as i32, message: self.message };
        let body = match encoding {
            Encoding::Protobuf => status.encode_to_vec(),
            Encoding::Json => {
                json!({"code": status.code, "message": status.message}).to_string().into_bytes()
            }
        };
        let mut response =
            (self.status, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// A 200 export response: the `Export*ServiceResponse` the gRPC service would answer, in
/// the request's encoding.
pub fn success<R: ExportRequest>(encoding: Encoding, rejected: Option<Rejected>) -> Response {
    let body = match (encoding, rejected) {
        (Encoding::Protobuf, rejected) => R::response(rejected).encode_to_vec(),
        // Full success is `{}` exactly; int64 counts are strings in proto3 JSON.
        (Encoding::Json, None) => b"{}".to_vec(),
        (Encoding::Json, Some(Rejected { count, message })) => json!({"partialSuccess": {
            R::REJECTED_JSON_FIELD: count.to_string(), "errorMessage": message}})
        .to_string()
        .into_bytes(),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_is_matched_case_insensitively_without_parameters() {
        let encoding = |text: &str| Encoding::from_content_type(Some(&HeaderValue::from_str(text).unwrap()));
        assert_eq!(encoding("application/json; charset=utf-8"), Some(Encoding::Json));
        assert_eq!(encoding("APPLICATION/JSON"), Some(Encoding::Json));
        assert_eq!(encoding("application/x-protobuf; proto=x"), Some(Encoding::Protobuf));
        assert_eq!(encoding("text/plain"), None);
        assert_eq!(Encoding::from_content_type(None), None);
    }
}

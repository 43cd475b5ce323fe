//! Optional bearer tokens (`INGEST_TOKENS` for everything that writes, `QUERY_TOKENS` for the
//! query API), as configured and as checked on a request. No tokens configured means open, as the original backend was. Tokens are
//! compared in constant time, and a refusal says nothing about why.

use std::fmt;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};

/// The accepted tokens of one kind; cheap to clone, never printed.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Vec<Vec<u8>>>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    /// A comma-separated list; empty means no authentication.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens = Vec::new();
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.len() < 16 || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(
                    "each token must be at least 16 printable ASCII characters without spaces".to_owned()
                );
            }
            tokens.push(token.as_bytes().to_vec());
        }
        Ok(Tokens(Arc::new(tokens)))
    }

    /// No token configured: everyone may call.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `authorization` (`Bearer <token>`) carries one of the tokens.
    pub fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(presented) = authorization.and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")) else {
            return false;
        };
        // Every configured token is compared, whichever matches, so timing says nothing.
        self.0.iter().fold(false, |found, token| found | constant_time_eq(token, presented))
    }

    /// [`Self::allows`] on a request's headers.
    pub fn allows_headers(&self, headers: &HeaderMap) -> bool {
        self.allows(headers.get(header::AUTHORIZATION))
    }
}

/// Equal length and bytes, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cr3t-token-0123456789";

    #[test]
    fn no_tokens_means_open() {
        let open = Tokens::parse("").unwrap();
        assert!(open.is_open());
        assert!(open.allows(None));
    }

    #[test]
    fn only_a_listed_bearer_token_is_allowed() {
        let tokens = Tokens::parse(&format!("{TOKEN}, another-token-abcdefgh")).unwrap();
        let header = |text: &str| HeaderValue::from_str(text).unwrap();
        assert!(tokens.allows(Some(&header(&format!("Bearer {TOKEN}")))));
        assert!(tokens.allows(Some(&header("Bearer another-token-abcdefgh"))));
        assert!(!tokens.allows(None));
        assert!(!tokens.allows(Some(&header(TOKEN))), "the Bearer scheme is required");
        assert!(!tokens.allows(Some(&header("Bearer s3cr3t-token-012345678"))));
        assert!(!tokens.allows(Some(&header(&format!("Bearer {TOKEN}x")))));
    }

    #[test]
    fn weak_tokens_are_refused_and_tokens_are_never_printed() {
        assert!(Tokens::parse("short").is_err());
        assert!(Tokens::parse("has a space in it, really").is_err());
        let tokens = Tokens::parse(TOKEN).unwrap();
        assert!(!format!("{tokens:?}").contains("s3cr3t"));
    }
}

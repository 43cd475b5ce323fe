//! `TRACE_VIEWER_URL`: where an incident's trace is drawn (a Jaeger UI, Grafana's Explore), as a
//! link template with `{trace_id}`.

/// A link template holding `{trace_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceViewerUrl(String);

impl TraceViewerUrl {
    /// `None` for an empty setting (no links).
    pub fn parse(text: &str) -> Result<Option<TraceViewerUrl>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if !(text.starts_with("http://") || text.starts_with("https://")) {
            return Err(format!("{text:?} is not an http:// or https:// URL"));
        }
        if !text.contains("{trace_id}") {
            return Err(format!(
                "{text:?} has no {{trace_id}} where the trace id goes, e.g. http://jaeger-ui:16686/trace/{{trace_id}}"
            ));
        }
        Ok(Some(TraceViewerUrl(text.to_owned())))
    }

    /// The link to `trace_id`, percent-encoded (correlation keys hold `:`; a legacy id any text).
    pub fn for_trace(&self, trace_id: &str) -> String {
        let mut encoded = String::with_capacity(trace_id.len());
        for byte in trace_id.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                encoded.push(char::from(byte));
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        self.0.replace("{trace_id}", &encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_goes_where_the_template_says_encoded() {
        let url = TraceViewerUrl::parse("http://jaeger:16686/trace/{trace_id}?uiEmbed=v0").unwrap().unwrap();
        assert_eq!(
            url.for_trace("0af7651916cd43dd"),
            "http://jaeger:16686/trace/0af7651916cd43dd?uiEmbed=v0"
        );
        assert_eq!(url.for_trace("svc:a b:2026"), "http://jaeger:16686/trace/svc%3Aa%20b%3A2026?uiEmbed=v0");
        assert_eq!(TraceViewerUrl::parse(" ").unwrap(), None);
        assert!(TraceViewerUrl::parse("jaeger:16686/trace/{trace_id}").is_err());
        assert!(TraceViewerUrl::parse("http://jaeger:16686/trace/").unwrap_err().contains("{trace_id}"));
    }
}

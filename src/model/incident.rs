//! Incidents and analysis results as the dashboard sees them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// Lifecycle of an incident. The database stores upper-case labels (`incidentstatus`,
/// SQLAlchemy stores enum member names); the API shows lower-case values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Open,
    Investigating,
    Resolved,
    Closed,
}

/// How bad an incident is; ordered, so `max` raises severity. Database labels are upper-case
/// (`incidentseverity`), API values lower-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentSeverity {
    Low,
    Medium,
    High,
    Critical,
}

macro_rules! labelled_enum {
    ($ty:ident { $($variant:ident => $db:literal, $api:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The label stored in PostgreSQL.
            pub fn db_label(self) -> &'static str {
                match self { $($ty::$variant => $db),+ }
            }

            /// The value shown by the HTTP API.
            pub fn api_value(self) -> &'static str {
                match self { $($ty::$variant => $api),+ }
            }

            /// Reads a database label back.
            pub fn from_db_label(label: &str) -> Option<$ty> {
                Self::ALL.iter().copied().find(|v| v.db_label() == label)
            }

            /// Reads an API value, ignoring case (`high` and `HIGH` both name the same level).
            pub fn from_api_value(value: &str) -> Option<$ty> {
                Self::ALL.iter().copied().find(|v| v.api_value().eq_ignore_ascii_case(value))
            }
        }
    };
}

labelled_enum!(IncidentStatus {
    Open => "OPEN", "open",
    Investigating => "INVESTIGATING", "investigating",
    Resolved => "RESOLVED", "resolved",
    Closed => "CLOSED", "closed",
});

impl IncidentStatus {
    /// Where an incident may move from here: forward along open → investigating → resolved →
    /// closed (straight from open to resolved too), and a resolved incident may be reopened.
    /// Closed is final: a new fault in the same trace is the same incident, already closed.
    pub fn next_allowed(self) -> &'static [IncidentStatus] {
        use IncidentStatus::*;
        match self {
            Open => &[Investigating, Resolved],
            Investigating => &[Resolved],
            Resolved => &[Closed, Open],
            Closed => &[],
        }
    }

    pub fn may_move_to(self, next: IncidentStatus) -> bool {
        self.next_allowed().contains(&next)
    }
}

labelled_enum!(IncidentSeverity {
    Low => "LOW", "low",
    Medium => "MEDIUM", "medium",
    High => "HIGH", "high",
    Critical => "CRITICAL", "critical",
});

/// One incident row, in the dashboard's shape (docs/contracts.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Incident {
    pub id: Uuid,
    pub trace_id: String,
    pub status: IncidentStatus,
    pub severity: IncidentSeverity,
    #[serde(serialize_with = "crate::model::time::serialize_option")]
    pub detected_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::model::time::serialize_option")]
    pub resolved_at: Option<DateTime<Utc>>,
    pub affected_services: Vec<String>,
    pub error_count: Option<f64>,
    /// The problem (error fingerprint) this incident was first grouped under, if any.
    pub problem_id: Option<Uuid>,
    /// The trace in a viewer, when `TRACE_VIEWER_URL` is set (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<String>,
}

/// A fault seen across traces: the incidents whose errors share one fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub id: Uuid,
    pub fingerprint: String,
    /// `service: ExceptionType`, `service: span NAME failed`, or the normalised message.
    pub title: String,
    #[serde(serialize_with = "crate::model::time::serialize")]
    pub first_seen: DateTime<Utc>,
    #[serde(serialize_with = "crate::model::time::serialize")]
    pub last_seen: DateTime<Utc>,
    /// Incidents (traces) it was seen in.
    pub trace_count: i64,
    pub signal_count: i64,
    pub services: Vec<String>,
    pub severity: IncidentSeverity,
    /// The trace whose `analyze_trace` stands for the problem's analysis.
    pub representative_trace_id: Option<String>,
    #[serde(serialize_with = "crate::model::time::serialize_option")]
    pub analysis_requested_at: Option<DateTime<Utc>>,
}

/// One analysis written by the pipeline (docs/contracts.md §1 `analysis_results`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AnalysisResult {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub root_cause: String,
    pub confidence_score: f64,
    pub evidence_signals: Vec<Uuid>,
    #[schema(value_type = Object)]
    pub ai_explanation: Value,
    #[serde(serialize_with = "crate::model::time::serialize_option")]
    pub generated_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_moves_forward_and_only_resolved_reopens() {
        use IncidentStatus::*;
        let allowed = [
            (Open, Investigating),
            (Open, Resolved),
            (Investigating, Resolved),
            (Resolved, Closed),
            (Resolved, Open),
        ];
        for from in IncidentStatus::ALL {
            for to in IncidentStatus::ALL {
                assert_eq!(from.may_move_to(*to), allowed.contains(&(*from, *to)), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn database_labels_are_upper_case_and_api_values_lower_case() {
        for s in IncidentStatus::ALL {
            assert_eq!(s.db_label(), s.api_value().to_uppercase());
            assert_eq!(IncidentStatus::from_db_label(s.db_label()), Some(*s));
        }
        for s in IncidentSeverity::ALL {
            assert_eq!(s.db_label(), s.api_value().to_uppercase());
            assert_eq!(IncidentSeverity::from_api_value(s.db_label()), Some(*s));
        }
        assert_eq!(IncidentSeverity::from_db_label("high"), None);
    }

    #[test]
    fn severities_are_ordered_from_low_to_critical() {
        assert!(IncidentSeverity::Low < IncidentSeverity::Medium);
        assert!(IncidentSeverity::High < IncidentSeverity::Critical);
        assert_eq!(IncidentSeverity::High.max(IncidentSeverity::Low), IncidentSeverity::High);
    }

    #[test]
    fn incident_serialises_lower_case_labels() {
        let json = serde_json::to_value(IncidentStatus::Investigating).unwrap();
        assert_eq!(json, "investigating");
        let json = serde_json::to_value(IncidentSeverity::Critical).unwrap();
        assert_eq!(json, "critical");
    }
}

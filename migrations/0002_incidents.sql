-- Incidents and analysis results, shared with the analysis worker (CONTRACTS §1). The worker
-- stores Python enum member names, hence the upper-case labels.

CREATE TYPE incidentstatus AS ENUM ('OPEN', 'INVESTIGATING', 'RESOLVED', 'CLOSED');
CREATE TYPE incidentseverity AS ENUM ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL');

CREATE TABLE incidents (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trace_id          varchar NOT NULL,
    status            incidentstatus NOT NULL DEFAULT 'OPEN',
    severity          incidentseverity NOT NULL DEFAULT 'LOW',
    detected_at       timestamptz DEFAULT now(),
    resolved_at       timestamptz,
    affected_services varchar[] NOT NULL DEFAULT '{}',
    error_count       double precision DEFAULT 0
);

-- The worker looks incidents up by trace; the dashboard lists them newest first, filtered.
CREATE INDEX incidents_trace_id_idx ON incidents (trace_id);
CREATE INDEX incidents_detected_at_idx ON incidents (detected_at DESC, id DESC);
CREATE INDEX incidents_status_detected_at_idx ON incidents (status, detected_at DESC);
CREATE INDEX incidents_severity_detected_at_idx ON incidents (severity, detected_at DESC);

CREATE TABLE analysis_results (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    incident_id      uuid NOT NULL REFERENCES incidents (id),
    root_cause       text NOT NULL,
    confidence_score double precision NOT NULL,
    evidence_signals uuid[] NOT NULL,
    ai_explanation   json NOT NULL,
    generated_at     timestamptz DEFAULT now()
);

-- /query/incidents/{id}/analysis: the newest analysis of an incident.
CREATE INDEX analysis_results_incident_id_generated_at_idx
    ON analysis_results (incident_id, generated_at DESC);

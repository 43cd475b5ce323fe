-- Problems (issue 8): one row per error fingerprint, grouping one fault's many traces, so that a
-- fault failing a thousand requests is one problem and one analysis, not a thousand.
-- Written by the batch statement with the signals; the analysis worker does not read it.

CREATE TABLE problems (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fingerprint             text NOT NULL UNIQUE,     -- incidents::fingerprint key
    title                   text NOT NULL,
    first_seen              timestamptz NOT NULL DEFAULT now(),
    last_seen               timestamptz NOT NULL DEFAULT now(),
    signal_count            bigint NOT NULL DEFAULT 0,
    services                varchar[] NOT NULL DEFAULT '{}',
    severity                incidentseverity NOT NULL DEFAULT 'LOW',
    -- The trace whose analysis stands for the problem's (analyze_trace keeps its per-trace
    -- contract); replaced when a new window's analysis is requested.
    representative_trace_id varchar,
    analysis_requested_at   timestamptz
);

-- /query/problems: newest first, by last sighting.
CREATE INDEX problems_last_seen_idx ON problems (last_seen DESC, id DESC);

-- Which incidents (traces) each problem was seen in; its trace count is the number of rows.
CREATE TABLE incident_problems (
    incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    problem_id  uuid NOT NULL REFERENCES problems (id) ON DELETE CASCADE,
    linked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, problem_id)
);

CREATE INDEX incident_problems_problem_id_idx ON incident_problems (problem_id, linked_at);

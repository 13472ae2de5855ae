-- The job's OpenTelemetry trace id (32 hex digits; NULL when the operator did not trace it), so a row
-- leads to the JobRun's trace in the tracing backend (docs/tracing.md), as runs.trace_id does a TestRun's.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS trace_id text;
CREATE INDEX IF NOT EXISTS jobs_trace_id_idx ON jobs (trace_id) WHERE trace_id IS NOT NULL;

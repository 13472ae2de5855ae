-- The run's OpenTelemetry trace id (32 hex digits; NULL when the operator did not trace it), so a row
-- leads to the run's trace in the tracing backend (docs/tracing.md).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS trace_id text;
CREATE INDEX IF NOT EXISTS runs_trace_id_idx ON runs (trace_id) WHERE trace_id IS NOT NULL;

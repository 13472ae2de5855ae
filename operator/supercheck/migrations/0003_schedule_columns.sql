-- The RunSchedule that created the run or job (NULL: made otherwise), so that a schedule's history is one query.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS schedule text;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS schedule text;
CREATE INDEX IF NOT EXISTS runs_namespace_schedule_idx ON runs (namespace, schedule, completed_at)
    WHERE schedule IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_namespace_schedule_idx ON jobs (namespace, schedule, completed_at)
    WHERE schedule IS NOT NULL;

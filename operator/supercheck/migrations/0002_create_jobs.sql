-- One row per JobRun (a suite of tests run as one job); provisional (final = false) while it runs.
CREATE TABLE IF NOT EXISTS jobs (
    uid            text        PRIMARY KEY,
    namespace      text        NOT NULL,
    name           text        NOT NULL,
    type           text        NOT NULL,
    phase          text        NOT NULL,
    final          boolean     NOT NULL DEFAULT false,
    reason         text,
    message        text,
    priority       integer     NOT NULL DEFAULT 0,
    parallelism    integer     NOT NULL DEFAULT 1,
    total          integer     NOT NULL DEFAULT 0,
    completed      integer     NOT NULL DEFAULT 0,
    passed         integer     NOT NULL DEFAULT 0,
    failed         integer     NOT NULL DEFAULT 0,
    flaky          integer     NOT NULL DEFAULT 0,
    skipped        integer     NOT NULL DEFAULT 0,
    not_run        integer     NOT NULL DEFAULT 0,
    queued_at      timestamptz,
    started_at     timestamptz,
    completed_at   timestamptz,
    duration_ms    bigint,
    report_bucket  text,
    report_prefix  text,
    report_key     text,
    labels         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS jobs_namespace_name_idx ON jobs (namespace, name);
CREATE INDEX IF NOT EXISTS jobs_completed_at_idx ON jobs (completed_at);

-- One row per test of a job. namespace and job_name repeat the job's, so that questions about tests
-- ("which failed most this week") need no join.
CREATE TABLE IF NOT EXISTS job_tests (
    job_uid        text        NOT NULL REFERENCES jobs (uid) ON DELETE CASCADE,
    name           text        NOT NULL,
    file           text,
    outcome        text        NOT NULL CHECK (outcome IN ('passed', 'failed', 'flaky', 'skipped', 'notRun')),
    duration_ms    bigint,
    retries        integer     NOT NULL DEFAULT 0,
    shard          integer,
    failure        text,
    namespace      text        NOT NULL,
    job_name       text        NOT NULL,
    completed_at   timestamptz,
    PRIMARY KEY (job_uid, name)
);

CREATE INDEX IF NOT EXISTS job_tests_outcome_completed_at_idx ON job_tests (outcome, completed_at);
CREATE INDEX IF NOT EXISTS job_tests_namespace_file_idx ON job_tests (namespace, file);

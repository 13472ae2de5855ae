-- One row per Monitor check (supercheck.monitorresults): written in batches about every second; rows
-- older than SUPERCHECK_MONITOR_RESULTS_RETENTION_DAYS are deleted by an hourly sweep.
CREATE TABLE IF NOT EXISTS monitor_results (
    uid         text        NOT NULL,  -- the Monitor's uid (a Monitor made again under its name has another)
    due_at      timestamptz NOT NULL,  -- when the check was due
    namespace   text        NOT NULL,
    name        text        NOT NULL,
    type        text        NOT NULL,  -- http, tcp, playwright, k6
    checked_at  timestamptz NOT NULL,  -- when it was made (a synthetic check: when its TestRun ended)
    ok          boolean     NOT NULL,
    latency_ms  integer,
    message     text,
    -- one row per due time: a check written again (a restarted operator) is not counted twice
    PRIMARY KEY (uid, due_at)
);
-- A monitor's history: its checks in time order.
CREATE INDEX IF NOT EXISTS monitor_results_uid_checked_at ON monitor_results (uid, checked_at);
-- The retention sweep, and questions about all monitors over a time range.
CREATE INDEX IF NOT EXISTS monitor_results_checked_at ON monitor_results (checked_at);

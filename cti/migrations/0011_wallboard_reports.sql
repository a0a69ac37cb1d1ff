-- Supervisors' live actions, report rollups, and the indexes the interval reports read by.

-- Every live action a supervisor (or admin) took, whether it worked or not.
CREATE TABLE supervisor_actions (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_kind  text NOT NULL,                         -- 'session' or 'api_key'
    actor_id    bigint NOT NULL,
    actor_name  text NOT NULL,
    action      text NOT NULL,                         -- listen, whisper, barge, not_ready, logout, move, priority, callback
    agent_id    text,
    call_id     text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    result      text NOT NULL CHECK (result IN ('done', 'refused', 'failed')),
    error       text
);
CREATE INDEX supervisor_actions_at_idx ON supervisor_actions (at);

-- Interval reports read calls by their entry into a queue, and the calls that
-- overflowed or were moved into a queue by those events' time.
CREATE INDEX calls_queue_joined_at_idx ON calls (queue_joined_at) WHERE queue IS NOT NULL;
CREATE INDEX call_events_queue_moves_idx ON call_events (at) WHERE kind IN ('acd.maxwait', 'acd.moved');

-- 15-minute rollups (local wall-clock intervals, docs/metrics.md): the additive
-- counts of acd.metrics.QueueCounts for one queue and one interval, under one
-- service-level threshold and short-abandon limit. Written once the interval's
-- calls are settled; coarser intervals (30, 60 min, day, week) add them up.
CREATE TABLE report_queue_15min (
    queue             text NOT NULL,
    start_at          timestamptz NOT NULL,
    threshold_s       double precision NOT NULL,
    short_abandon_s   double precision NOT NULL,
    arrived           integer NOT NULL,
    short_abandoned   integer NOT NULL,
    answered          integer NOT NULL,
    abandoned         integer NOT NULL,
    timed_out         integer NOT NULL,
    waiting           integer NOT NULL,
    answered_within   integer NOT NULL,
    abandoned_within  integer NOT NULL,
    answered_wait_s   double precision NOT NULL,
    abandon_wait_s    double precision NOT NULL,
    handled           integer NOT NULL,
    talk_s            double precision NOT NULL,
    hold_s            double precision NOT NULL,
    wrapup_s          double precision NOT NULL,
    longest_wait_s    double precision,
    PRIMARY KEY (start_at, queue, threshold_s, short_abandon_s)
);

-- Which 15-minute intervals are rolled up, and under which queues' thresholds
-- (`policies`, e.g. 'sales:20:5;support:30:0'): an interval with no call has no
-- queue row but is done all the same; new thresholds make it to be done again.
-- Every time zone with a whole quarter-hour offset shares these intervals.
CREATE TABLE report_intervals_done (
    start_at    timestamptz NOT NULL,
    policies    text NOT NULL,
    done_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (policies, start_at)
);

-- Agent time per 15-minute interval: seconds per state and not-ready seconds per reason,
-- and the answered calls that arrived in it with their handle time. agent_id '*' holds
-- the sum over agents (staffing's agents logged in).
CREATE TABLE report_agent_15min (
    agent_id    text NOT NULL,
    start_at    timestamptz NOT NULL,
    seconds     jsonb NOT NULL,
    not_ready   jsonb NOT NULL,
    handled     integer NOT NULL DEFAULT 0,
    handle_s    double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (start_at, agent_id)
);
CREATE INDEX report_agent_15min_agent_idx ON report_agent_15min (agent_id, start_at);

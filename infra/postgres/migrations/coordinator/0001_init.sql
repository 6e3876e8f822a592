-- Every order the coordinator has folded, open or finished: an open one is what a new owner of its
-- tx.log partition resumes, a finished one keeps its decision final for ever (a replayed TxBegun
-- or a late vote finds it here instead of opening the order again).
CREATE TABLE txs (
    order_id  text PRIMARY KEY,
    part      integer NOT NULL,          -- tx.log partition
    at_offset bigint NOT NULL,           -- offset of the last event folded into `tx`
    finished  boolean NOT NULL,          -- decided and acknowledged by everyone it was sent to
    tx        jsonb NOT NULL             -- the fold's state (workers/coordinator/fold.to_dict)
);
CREATE INDEX txs_open ON txs (part) WHERE NOT finished;

-- How far each partition's rows go: every event before next_offset is folded into them.
CREATE TABLE snapshots (
    part        integer PRIMARY KEY,
    next_offset bigint NOT NULL
);

-- strictmx cluster schema, version 2: the destinations' policy weakenings every node saw,
-- so that `strictmx policy changes` and `explain` answer for the whole cluster. `change` is
-- the watch's JSON record (strictmx_delivery::watch::PostureChange).
CREATE TABLE strictmx_posture_changes (
    at_ms   bigint NOT NULL,
    domain  text NOT NULL,
    node    text NOT NULL,
    change  text NOT NULL,
    PRIMARY KEY (at_ms, domain, node)
);

CREATE INDEX strictmx_posture_changes_domain ON strictmx_posture_changes (domain, at_ms);

-- strictmx cluster schema, version 1: what several nodes share. Keys that hold texts of
-- unbounded length (TLSRPT policies and failure details) are their SHA-256, in hex.

-- One row per node: when it was last seen and the hash of the rules it runs.
CREATE TABLE strictmx_nodes (
    node        text PRIMARY KEY,
    hostname    text NOT NULL,
    rules_hash  text NOT NULL,
    seen_at     timestamptz NOT NULL
);

-- Named leases (the TLSRPT reporter, one MTA-STS refresh per policy domain): held by one
-- node until it expires, renewed by its holder.
CREATE TABLE strictmx_leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- The MTA-STS policy cache (RFC 8461 §5.1); times in Unix seconds.
CREATE TABLE strictmx_sts_policies (
    domain      text PRIMARY KEY,
    policy      text NOT NULL,
    txt_id      text NOT NULL,
    fetched_at  bigint NOT NULL,
    expires_at  bigint NOT NULL,
    fetched_by  text NOT NULL
);

-- TLSRPT counters: each node's own absolute totals, so that writing them again after an
-- outage counts nothing twice. Reports add them up over the nodes.
CREATE TABLE strictmx_tlsrpt_policies (
    node           text NOT NULL,
    day            integer NOT NULL,
    report_domain  text NOT NULL,
    policy_key     text NOT NULL,
    policy         text NOT NULL,
    successes      bigint NOT NULL,
    failures       bigint NOT NULL,
    PRIMARY KEY (day, report_domain, policy_key, node)
);

CREATE TABLE strictmx_tlsrpt_details (
    node           text NOT NULL,
    day            integer NOT NULL,
    report_domain  text NOT NULL,
    policy_key     text NOT NULL,
    detail_key     text NOT NULL,
    detail         text NOT NULL,
    count          bigint NOT NULL,
    PRIMARY KEY (day, report_domain, policy_key, detail_key, node)
);

-- Which (day, domain) reports were sent, and by which node: each goes out once.
CREATE TABLE strictmx_tlsrpt_sent (
    day            integer NOT NULL,
    report_domain  text NOT NULL,
    node           text NOT NULL,
    sent_at        bigint NOT NULL,
    PRIMARY KEY (day, report_domain)
);

-- strictmx cluster schema, version 3: the audit index, so that `strictmx audit search` and
-- `audit show` answer for the whole cluster. Each node adds its records in the order its
-- spool wrote them: `seq` is the record's sequence number in that node's spool, so that
-- (node, seq) names a record once however often it is written. The columns are what the
-- searches filter on; `record` is the whole receipt (strictmx_spool::AuditRecord) for
-- `audit show`. Rows older than `[audit] keep` are pruned by the nodes.
CREATE TABLE strictmx_audit (
    node        text NOT NULL,
    seq         bigint NOT NULL,
    -- 16 hex digits, as the CLI writes it.
    queue_id    text NOT NULL,
    rcpt_index  integer NOT NULL,
    -- Without its angle brackets (strictmx_spool::message_id_key).
    message_id  text,
    sender      text NOT NULL,
    recipient   text NOT NULL,
    domain      text NOT NULL,
    outcome     text NOT NULL,
    -- How the deciding attempt's peer was authenticated: dane, sts, webpki or none.
    auth        text NOT NULL,
    final_at_ms bigint NOT NULL,
    record      jsonb NOT NULL,
    PRIMARY KEY (node, seq)
);

CREATE INDEX strictmx_audit_final_at ON strictmx_audit (final_at_ms);
CREATE INDEX strictmx_audit_domain ON strictmx_audit (domain, final_at_ms);
CREATE INDEX strictmx_audit_recipient ON strictmx_audit (lower(recipient), final_at_ms);
CREATE INDEX strictmx_audit_sender ON strictmx_audit (lower(sender), final_at_ms);
CREATE INDEX strictmx_audit_queue_id ON strictmx_audit (queue_id);
CREATE INDEX strictmx_audit_message_id ON strictmx_audit (message_id);

-- Each node's watermark: the first sequence number it has not added yet, moved in the
-- transaction that adds the rows before it.
CREATE TABLE strictmx_audit_sync (
    node     text PRIMARY KEY,
    next_seq bigint NOT NULL
);

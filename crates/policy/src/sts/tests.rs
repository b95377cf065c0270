//! Table-driven tests; each row cites the rule it checks.

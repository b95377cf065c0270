//! strictmx-spool (skeleton; filled in by the owning work item).

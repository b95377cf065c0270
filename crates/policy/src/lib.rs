//! strictmx-policy (skeleton; filled in by the owning work item).

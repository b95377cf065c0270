//! strictmx-config (skeleton; filled in by the owning work item).

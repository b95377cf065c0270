//! strictmx-inbound (skeleton; filled in by the owning work item).

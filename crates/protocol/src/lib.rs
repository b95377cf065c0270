//! strictmx-protocol (skeleton; filled in by the owning work item).

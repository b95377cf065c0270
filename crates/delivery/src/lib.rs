//! strictmx-delivery (skeleton; filled in by the owning work item).

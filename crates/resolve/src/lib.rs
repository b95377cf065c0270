//! strictmx-resolve (skeleton; filled in by the owning work item).

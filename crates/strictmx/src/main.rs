//! The strictmx binary.
fn main() {}

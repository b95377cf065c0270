//! Loopback fixtures for strictmx tests.

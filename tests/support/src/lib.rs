//! Loopback fixtures for strictmx tests: an SMTP client and scriptable receivers (`smtp`), the
//! real binary under test (`relay`), and the lab's fake mail internet (`lab`).

pub mod lab;
pub mod relay;
pub mod smtp;

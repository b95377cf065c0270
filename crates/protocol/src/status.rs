//! The enhanced status codes (RFC 3463 §3) strictmx gives delivery outcomes and DSNs, by name,
//! so that no code is spelled out as a string where it is decided. Class 4 where a later
//! attempt may still succeed; [`EnhancedStatus::permanent`] gives the class 5 form.

use crate::EnhancedStatus;

/// X.0.0: other or undefined status, by class (RFC 3463 §3.1).
pub const SUCCESS: EnhancedStatus = EnhancedStatus::new(2, 0, 0);
pub const OTHER_TRANSIENT: EnhancedStatus = EnhancedStatus::new(4, 0, 0);
pub const OTHER_PERMANENT: EnhancedStatus = EnhancedStatus::new(5, 0, 0);
/// X.1.3: bad destination mailbox address syntax (RFC 3463 §3.2).
pub const BAD_DESTINATION_SYNTAX: EnhancedStatus = EnhancedStatus::new(5, 1, 3);
/// X.1.7: bad sender's mailbox address syntax (RFC 3463 §3.2).
pub const BAD_SENDER_SYNTAX: EnhancedStatus = EnhancedStatus::new(5, 1, 7);
/// X.3.4: message too big for system (RFC 3463 §3.4).
pub const MESSAGE_TOO_BIG: EnhancedStatus = EnhancedStatus::new(5, 3, 4);
/// X.4.1: no answer from host (RFC 3463 §3.5).
pub const NO_ANSWER: EnhancedStatus = EnhancedStatus::new(4, 4, 1);
/// X.4.2: bad connection (RFC 3463 §3.5).
pub const BAD_CONNECTION: EnhancedStatus = EnhancedStatus::new(4, 4, 2);
/// X.4.3: directory server failure (RFC 3463 §3.5).
pub const DIRECTORY_FAILURE: EnhancedStatus = EnhancedStatus::new(4, 4, 3);
/// X.4.4: unable to route (RFC 3463 §3.5).
pub const UNABLE_TO_ROUTE: EnhancedStatus = EnhancedStatus::new(5, 4, 4);
/// X.4.6: routing loop detected (RFC 3463 §3.5).
pub const ROUTING_LOOP: EnhancedStatus = EnhancedStatus::new(5, 4, 6);
/// X.4.7: delivery time expired (RFC 3463 §3.5).
pub const DELIVERY_TIME_EXPIRED: EnhancedStatus = EnhancedStatus::new(5, 4, 7);
/// X.5.0: other or undefined protocol status (RFC 3463 §3.6).
pub const PROTOCOL_ERROR: EnhancedStatus = EnhancedStatus::new(4, 5, 0);
/// X.6.3: conversion required but not supported (RFC 3463 §3.7): 8-bit content to a server
/// without 8BITMIME (RFC 6152).
pub const CONVERSION_NOT_SUPPORTED: EnhancedStatus = EnhancedStatus::new(5, 6, 3);
/// X.6.7: non-ASCII addresses not permitted (RFC 6531 §3.7.5).
pub const NON_ASCII_ADDRESS: EnhancedStatus = EnhancedStatus::new(5, 6, 7);
/// X.7.0: other or undefined security status (RFC 3463 §3.8).
pub const SECURITY_OTHER: EnhancedStatus = EnhancedStatus::new(4, 7, 0);
/// X.7.4: security features not supported (RFC 3463 §3.8).
pub const SECURITY_NOT_SUPPORTED: EnhancedStatus = EnhancedStatus::new(4, 7, 4);
/// X.7.5: cryptographic failure (RFC 3463 §3.8).
pub const CRYPTOGRAPHIC_FAILURE: EnhancedStatus = EnhancedStatus::new(4, 7, 5);
/// X.7.10: encryption needed (RFC 5248 registry; RFC 8689 §4.2.1 for a REQUIRETLS message).
pub const ENCRYPTION_NEEDED: EnhancedStatus = EnhancedStatus::new(5, 7, 10);
/// X.7.30: REQUIRETLS support required (RFC 8689 §5).
pub const REQUIRETLS_NEEDED: EnhancedStatus = EnhancedStatus::new(4, 7, 30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_rfc_3463_writes_them_and_turn_permanent_by_class() {
        assert_eq!(NO_ANSWER.to_string(), "4.4.1");
        assert_eq!(REQUIRETLS_NEEDED.to_string(), "4.7.30");
        assert_eq!(REQUIRETLS_NEEDED.permanent().to_string(), "5.7.30");
        assert_eq!(ENCRYPTION_NEEDED.permanent(), ENCRYPTION_NEEDED);
        assert_eq!(EnhancedStatus::parse("4.7.4"), Some(SECURITY_NOT_SUPPORTED));
    }
}

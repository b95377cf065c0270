//! Unit tests of reply judgement.

//! Pure domain rules: no tokio, no SQL, the clock and randomness passed in.

pub mod address;
pub mod breaker;
pub mod decision;
pub mod lifecycle;
pub mod network;
pub mod outcome;
pub mod retry;

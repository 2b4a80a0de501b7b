//! Pure domain rules: no tokio, no SQL, the clock and randomness passed in. (The vocabulary
//! enums carry their `postgres-types` text conversions, `vocab`: a type, not a query.)

pub mod address;
pub mod breaker;
pub mod decision;
pub mod lifecycle;
pub mod limits;
pub mod network;
pub mod outcome;
pub mod retry;
pub mod vocab;

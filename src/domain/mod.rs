//! Pure domain rules: no tokio, no SQL, the clock passed in.

pub mod lifecycle;

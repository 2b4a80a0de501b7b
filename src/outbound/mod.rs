//! Outbound delivery: the dispatcher (claim → send → outcome), its fair share between sessions,
//! its outcome writer, rendering, and the rescuer of expired leases.

pub mod breakers;
pub mod dispatcher;
pub mod fair;
pub mod outcomes;
pub mod render;
pub mod rescuer;

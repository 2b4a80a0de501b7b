//! The timer of a worker's periodic passes (rescuer, statistics keeper, insights, ...).

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A tick every `every`: a late pass delays the next tick instead of bursting to catch up, and
/// shutdown wins over a due tick.
pub struct Every {
    /// The tokio interval, set to delay (not burst) after a late pass.
    tick: tokio::time::Interval,
}

impl Every {
    pub fn new(every: Duration) -> Every {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Every { tick }
    }

    /// Wait for the next tick: true, or false once `shutdown` is cancelled.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => false,
            _ = self.tick.tick() => true,
        }
    }
}

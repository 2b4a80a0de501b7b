//! The `rules` decider (being written).

//! The `llm` decider (being written).

//! Provider tests: being written.

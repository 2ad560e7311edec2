//! Test cases shared by several test binaries.

pub mod messaging;

//! Test cases shared by several test binaries (each binary uses some of them).
#![allow(dead_code)]

pub mod hybrid;
pub mod messaging;
pub mod safety;

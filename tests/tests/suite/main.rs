//! The workspace's integration tests, in one binary to keep linking cheap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

mod backend;
mod concurrency;
mod crash;
mod engine;
mod group;
mod horizon;
mod http;
mod identity;
mod live;
mod nodes;
mod pool;
mod protocol11;
mod trim;

//! vicinity: a consent-gated, privacy-first backend for People Nearby and Shake.
//!
//! # Layout
//!
//! - [`domain`]: pure rules: validation newtypes, consent, retention, the snapping grid and
//!   the nearby ranking. No I/O; time is passed in.
//! - [`storage`]: the location and consent store traits, the embedded backend and the
//!   conformance suite every backend passes.
//! - [`load`]: the load-test harness behind `vicinity load` (SPEC §8).
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod load;
pub mod server;
pub mod service;
pub mod storage;
pub mod telemetry;
pub mod testing;

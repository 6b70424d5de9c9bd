//! vicinity: a consent-gated, privacy-first backend for People Nearby and Shake.
//!
//! # Layout
//!
//! Layers depend one way: domain ← storage ← service ← grpc ← server ← bin.
//!
//! - [`domain`] (the `vicinity-domain` crate, re-exported): pure rules: validation newtypes,
//!   consent, retention, the snapping grid, the nearby ranking and Shake's choice of partner.
//!   No I/O; time is passed in.
//! - [`storage`]: the location, consent and Shake store traits with their contracts, the
//!   embedded and Redis (single node and Cluster) backends, and the conformance suite every
//!   backend passes.
//! - [`service`]: each operation: consent gate, stores, audit trail, tracing spans.
//! - [`grpc`]: thin adapters: proto conversion, API-key auth, deadlines, the Status mapping.
//! - [`config`]: flags and `VICINITY_*` environment into one validated [`config::Config`].
//! - [`server`]: `run(config, listener, shutdown)`: stores, sweeper, health, reflection.
//! - [`client`]: a typed client for the operator commands, the tests and the harness.
//! - [`telemetry`]: logging set-up.
//! - [`random`]: randomness from the operating system, never a fallback.

pub use vicinity_api::client;
pub mod config;
pub use vicinity_domain as domain;
pub mod grpc;
pub mod places;
pub mod random;
pub mod receipts;
pub mod server;
pub mod service;
pub mod storage;
pub mod telemetry;

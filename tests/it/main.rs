//! The integration suite: the real server on 127.0.0.1:0, driven through the real tonic
//! client over TCP, with a manual clock. Harness: `helpers` (spawn_app, TestApp), `calls`
//! (one method per behaviour), `places` (positions), `details` (refusal assertions) and
//! `capture` (fails any test whose log holds a location it sent).

mod calls;
mod capture;
mod details;
mod helpers;
mod places;

mod attack;
mod auth;
mod binary;
mod checker;
mod consent;
mod contract;
mod deadlines;
mod errors;
mod leaks;
mod limits;
mod load;
mod metrics;
mod nearby;
mod packaging;
mod pagination;
mod privacy;
mod prometheus;
mod redis_backend;
mod redis_tls;
mod retention;
mod rolling;
mod sensitive;
mod sentinel;
mod server;
mod shake;
mod tls;

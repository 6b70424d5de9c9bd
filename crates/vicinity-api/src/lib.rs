//! vicinity's wire contract for Rust: the protobuf types and gRPC services generated from
//! `proto/vicinity/v1/vicinity.proto` (compiled by `build.rs` with `protox`, no `protoc`),
//! and a typed client. The service, its operator commands, the load harness and the tests
//! all speak through it.

pub mod client;

/// The generated protobuf types and services of `vicinity.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("vicinity.v1");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vicinity_descriptor.bin"));
}

//! The generated protobuf and gRPC code; the only place that includes it.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("chitty_chat");

/// The admin service (`chitty_admin`), served on the Unix socket only.
pub mod admin {
    tonic::include_proto!("chitty_admin");
}

/// The events chitty's nodes publish to the cluster's stream (`--cluster`).
pub mod cluster {
    tonic::include_proto!("chitty_cluster");
}

/// The encoded descriptor set of `chitty_chat`, for gRPC server reflection.
pub const CHAT_DESCRIPTOR: &[u8] = tonic::include_file_descriptor_set!("chitty_chat_descriptor");

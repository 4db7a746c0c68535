//! The generated protobuf and gRPC code; the only place that includes it.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("chitty_chat");

//! Generates the protobuf and gRPC code from `proto/` with the pure-Rust `protox` compiler, so a
//! fresh machine needs no system `protoc`, and writes the Chat service's descriptor set for
//! gRPC server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let chat = "proto/chitty_chat.proto";
    let admin = "proto/chitty_admin.proto";
    let cluster = "proto/chitty_cluster.proto";
    for proto in [chat, admin, cluster] {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);

    let chat_fds = protox::compile([chat], ["proto"])?;
    std::fs::write(
        out.join("chitty_chat_descriptor.bin"),
        chat_fds.encode_to_vec(),
    )?;
    // The Chat server is written by hand (src/server/chat.rs) so that it can send pre-encoded
    // messages; only the messages and the client are generated.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(chat_fds)?;

    tonic_prost_build::configure().compile_fds(protox::compile([admin], ["proto"])?)?;
    // The nodes' events on the cluster's stream: messages only, no service.
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(protox::compile([cluster], ["proto"])?)?;
    Ok(())
}

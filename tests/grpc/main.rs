//! The hub through gRPC: real tonic clients over real sockets against chittyd in-process. The
//! session rules and their errors, the ordering contract, shutdown, the audit trail, the limits,
//! and hostile clients, at the accept loop and in the gRPC framing, while well-behaved
//! participants keep chatting.

mod accept;
mod audit;
mod frames;
mod limits;
mod ordering;
mod session;
mod shutdown;

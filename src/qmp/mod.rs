//! The QMP client: framing, what goes on the wire, negotiation, reply
//! matching, the event queue, listeners and matching.

pub(crate) mod connection;
pub mod events;
pub mod framing;
pub(crate) mod listeners;
pub(crate) mod trace;
pub mod wire;

pub(crate) use connection::{ConnectOptions, QmpConnection};

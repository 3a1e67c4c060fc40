//! The QMP client: framing, negotiation, command ids, event queue and
//! matching.

pub(crate) mod connection;
pub mod events;
pub mod framing;
pub(crate) mod trace;

pub(crate) use connection::{ConnectOptions, QmpConnection};

//! MQTT 3.1.1 for iot2mqtt: a codec for every packet, and a client session built for the
//! connector contract. One task owns each connection; publications go through an [`Outbox`]
//! that is bounded, coalesces retained state by topic, and survives disconnections (what was
//! sent but not acknowledged goes back to its front), so nothing is lost or silently queued
//! in a place nobody controls.
//!
//! This crate knows nothing of the contract's topics or payloads; `iot2mqtt-runtime` does.

pub mod codec;
mod outbox;
mod quiet;
mod session;
mod tls;

pub use codec::{Packet, QoS};
pub use outbox::{Message, Outbox, OutboxStats};
pub use session::{ClientEvent, ClientOptions, Session, Will};
pub use tls::{TlsError, TlsOptions};

//! Herald's domain: validated message types, categories, the message lifecycle, time.
//!
//! Invariant: this crate does no I/O and knows nothing of HTTP, WebSocket or storage.
//! Wire DTOs from `herald-proto` become the types here through `TryFrom`/parse
//! functions, so nothing downstream ever sees an unvalidated value.

pub mod category;
pub mod clock;
pub mod lifecycle;
pub mod live;
pub mod payloads;
pub mod policy;
pub mod quota;
pub mod receipt;
pub mod revoke;
pub mod rights;
pub mod send;
pub mod token;

pub use category::Category;
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use lifecycle::{DeliveryState, Outcome, ReceiptCode};

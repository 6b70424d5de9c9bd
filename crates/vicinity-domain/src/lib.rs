//! The pure core: validation into newtypes, consent and retention rules, the grid and the
//! People Nearby ranking. No tokio, Redis, tonic or I/O here; time is passed in.

pub mod cells;
pub mod consent;
pub mod coords;
pub mod epoch_cache;
pub mod error;
pub mod feature;
pub mod limits;
pub mod nearby;
pub mod retention;
pub mod shake;
pub mod time;
pub mod user;

pub use cells::SnapGrid;
pub use consent::{ConsentEvent, ConsentRecord, ConsentState, NoticeVersion, Source};
pub use coords::{Coordinates, Location};
pub use error::ValidationError;
pub use feature::Feature;
pub use retention::{Deadlines, Retention};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use user::{Gender, UserId};

//! People Nearby: which cells to read, which candidates pass, and their order (contract §4.3).
//!
//! Order is by distance band, then by a keyed pseudo-random key that is stable for one viewer
//! cell and one epoch, then by user id. Fine distance never takes part, so neither the list
//! order nor repeated queries reveal more than the band.

mod batches;
mod order;
mod page;
mod query;
mod request;
mod search;
mod walk;

use batches::Batches;
pub use batches::Plans;
pub use order::{ORDER_SPACE, OrderContext, Pseudonyms, Secret, Tickets};
pub use page::{NONCE_LEN, PageToken};
pub use query::{Collector, Cursor, Hit, NearbyQuery, Page, earliest};
pub use request::{
    CellFilter, DEFAULT_LIMIT, DEFAULT_MAX_DISTANCE_M, MAX_DISTANCE_M, MAX_LIMIT, NearbyRequest,
    parse_excluded, parse_limit, parse_max_distance,
};
pub use search::Search;
pub use walk::{BandWalk, FIRST_BATCH, MAX_CELLS_PER_CALL};

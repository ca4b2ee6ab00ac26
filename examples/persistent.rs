//! Jobs that survive restarts, in an SQLite file (no server).
//!
//! ```text
//! cargo run --example persistent --features sqlite -- [PATH] [--seconds N]
//! ```
//! The first run adds three jobs to the file (default: `apsched-example.db` in the temporary
//! directory) and runs them for a few seconds. Run it again on the same path: it restores the
//! jobs, handles the runs they missed while it was not running (one coalesced run; the
//! in-grace runs of the job without coalescing, one after another) and shows their history.

#[path = "shared/durable.rs"]
mod durable;

use apsched::store::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), apsched::Error> {
    let path = std::env::args()
        .skip(1)
        .take_while(|a| a != "--seconds")
        .next()
        .unwrap_or_else(|| {
            std::env::temp_dir()
                .join("apsched-example.db")
                .display()
                .to_string()
        });
    println!("store: {path}");
    let store = SqliteStore::open(&path).await?;
    durable::walk_through(store, durable::seconds_from_args()).await
}

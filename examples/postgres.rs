//! Jobs that survive restarts, in PostgreSQL.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --example postgres --features postgres -- [--seconds N]
//! ```
//! The same walk-through as the `persistent` example, on the database at `DATABASE_URL`, in
//! its own schema `apsched_example`: the first run adds the jobs, the next restores them.

#[path = "shared/durable.rs"]
mod durable;

use apsched::store::PostgresStore;

#[tokio::main]
async fn main() -> Result<(), apsched::Error> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    println!("store: {url} (schema apsched_example)");
    let store = PostgresStore::options(&url)
        .schema("apsched_example")
        .connect()
        .await?;
    durable::walk_through(store, durable::seconds_from_args()).await
}

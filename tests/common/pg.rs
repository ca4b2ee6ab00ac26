//! A PostgreSQL schema of a test's own, on `APSCHED_TEST_POSTGRES_URL`.
#![cfg(feature = "postgres")]

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A fresh schema name on the test server, and a pool to check the tables with.
pub struct Scratch {
    pub url: String,
    pub schema: String,
    pub pool: PgPool,
}

/// A new schema named `<prefix>_<pid>_<µs>_<n>`, or `None`, said out loud, without a server.
pub async fn scratch(prefix: &str) -> Option<Scratch> {
    let Ok(url) = std::env::var("APSCHED_TEST_POSTGRES_URL") else {
        eprintln!("skipped: APSCHED_TEST_POSTGRES_URL is not set");
        return None;
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let pool = PgPool::connect(&url)
        .await
        .expect("APSCHED_TEST_POSTGRES_URL is set: the server must answer");
    Some(Scratch { url, schema, pool })
}

impl Scratch {
    /// `sql` with `{s}` naming the test's schema.
    pub fn sql(&self, sql: &str) -> String {
        sql.replace("{s}", &format!("\"{}\"", self.schema))
    }

    /// The one number `sql` selects.
    pub async fn count(&self, sql: &str) -> i64 {
        self.count_at(sql, &[]).await
    }

    /// As `count`, with times bound to `$1`, `$2`, ...
    pub async fn count_at(&self, sql: &str, times: &[DateTime<Utc>]) -> i64 {
        let sql = self.sql(sql);
        let mut query = sqlx::query_scalar(&sql);
        for time in times {
            query = query.bind(*time);
        }
        query.fetch_one(&self.pool).await.unwrap()
    }

    pub async fn drop_schema(self) {
        let _ = sqlx::query(&self.sql("DROP SCHEMA {s} CASCADE"))
            .execute(&self.pool)
            .await;
    }
}

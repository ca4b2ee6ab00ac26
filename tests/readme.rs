//! The README's snippets that claim to be complete programs or tests, compiled and run here
//! exactly as printed there (keep the two in step).
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apsched::trigger::Cron;
use apsched::{Scheduler, TestClock};
use chrono::{TimeZone, Utc};

// README, "Testing your schedules" (needs tokio's `test-util` feature in dev-dependencies).
#[tokio::test(start_paused = true)]
async fn runs_daily() {
    let clock = TestClock::new(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .timezone(apsched::Zone::UTC)
        .build();
    scheduler.start().await.unwrap();

    let runs = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&runs); // moved into the job...
    scheduler
        .add_job(
            move || {
                let counter = Arc::clone(&counter); // ...and cloned into each run
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            },
            Cron::parse("30 6 * * *").unwrap(),
        )
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_secs(3 * 86_400)).await; // three days in milliseconds
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(
        clock.now(),
        Utc.with_ymd_and_hms(2024, 1, 4, 0, 0, 0).unwrap()
    );
}

/// The README prints the test above, imports included, character for character.
#[test]
fn the_readme_prints_these_tests_as_they_are() {
    let readme = include_str!("../README.md");
    let this = include_str!("readme.rs");
    let block = readme
        .split("`tests/readme.rs`")
        .nth(1)
        .and_then(|rest| rest.split("```rust\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README's testing snippet");
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            this.contains(line),
            "README line not in tests/readme.rs: {line}"
        );
    }
    let (imports, test) = block
        .split_once("#[tokio::test")
        .expect("a test in the snippet");
    assert!(this.contains(imports.trim()), "imports differ");
    assert!(
        this.contains(&format!("#[tokio::test{test}")),
        "the test differs"
    );
}

//! IoT (APScheduler's use case 4): `check_sensor` every 10 seconds and `control_device` every
//! two hours (`Cron::new().hour("0-23/2")`), with the sensor simulated in-process.
//!
//! ```text
//! cargo run --example iot                           # real time, until Ctrl-C
//! cargo run --example iot -- --runs 3               # stop after three sensor checks
//! cargo run --example iot -- --demo --runs 1500     # about four simulated hours, at once
//! ```
//!
//! `--demo` runs the scheduler on a paused Tokio runtime with a
//! [`TestClock`](apsched::TestClock) starting at 01:59:30, so the sensor is checked every
//! simulated 10 s and the device is controlled at 02:00 and 04:00 without waiting (see the
//! `reports` example).

use std::sync::{Arc, Mutex};

use apsched::trigger::{Cron, Interval};
use apsched::{BackgroundScheduler, Event, JobContext, TestClock, Zone};
use chrono::{TimeZone, Utc};
use rand::Rng;

/// A simulated thermostat: a temperature that drifts, and a heater the controller switches.
#[derive(Debug)]
struct Device {
    temperature: f64,
    heater_on: bool,
    last_reading: Option<f64>,
}

fn check_sensor(device: &Mutex<Device>, ctx: &JobContext) {
    let mut device = device.lock().unwrap();
    let drift = if device.heater_on { 0.002 } else { -0.002 };
    let temperature = device.temperature + drift + rand::rng().random_range(-0.02..0.02);
    device.temperature = temperature;
    device.last_reading = Some(temperature);
    println!(
        "{}  check_sensor: {temperature:.2} °C",
        ctx.scheduled_run_time().format("%H:%M:%S")
    );
}

fn control_device(device: &Mutex<Device>, ctx: &JobContext) {
    let mut device = device.lock().unwrap();
    let Some(reading) = device.last_reading else {
        return;
    };
    device.heater_on = reading < 20.0;
    println!(
        "{}  control_device: reading {reading:.2} °C -> heater {}",
        ctx.scheduled_run_time().format("%H:%M:%S"),
        if device.heater_on { "ON" } else { "OFF" }
    );
}

fn main() -> Result<(), apsched::Error> {
    let demo = std::env::args().any(|a| a == "--demo");
    let runs = flag_value("--runs");

    let mut builder = BackgroundScheduler::builder()
        .timezone(Zone::UTC)
        .handle_signals(true);
    if demo {
        let mut runtime = tokio::runtime::Builder::new_current_thread();
        runtime.start_paused(true);
        builder = builder.runtime(runtime).clock(TestClock::new(
            Utc.with_ymd_and_hms(2024, 5, 1, 1, 59, 30).unwrap(),
        ));
    }
    let scheduler = builder.build()?;

    let device = Arc::new(Mutex::new(Device {
        temperature: 20.0,
        heater_on: false,
        last_reading: None,
    }));
    let d = Arc::clone(&device);
    scheduler
        .add_job(
            move |ctx: JobContext| check_sensor(&d, &ctx),
            Interval::seconds(10),
        )
        .id("check_sensor")
        .name("check_sensor")
        .add()?;
    let d = Arc::clone(&device);
    scheduler
        .add_job(
            move |ctx: JobContext| control_device(&d, &ctx),
            Cron::new().hour("0-23/2"),
        )
        .id("control_device")
        .name("control_device")
        .add()?;

    let events = scheduler.events();
    scheduler.start()?;
    for job in scheduler.get_jobs()? {
        println!("scheduled: {job}");
    }
    if !demo {
        println!("press Ctrl-C to stop");
    }

    let mut checks = 0;
    for event in events {
        if let Event::JobExecuted { job_id, .. } = &event {
            if job_id == "check_sensor" {
                checks += 1;
                if Some(checks) == runs {
                    break;
                }
            }
        }
    }
    if scheduler.state() != apsched::SchedulerState::ShutDown {
        scheduler.shutdown()?;
    }
    println!(
        "{checks} sensor check(s); final state {:?}",
        device.lock().unwrap()
    );
    Ok(())
}

/// The number after `name` on the command line, if any.
fn flag_value(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    let value = args.get(at + 1).and_then(|v| v.parse().ok());
    if value.is_none() {
        eprintln!("{name} takes a number");
        std::process::exit(2);
    }
    value
}

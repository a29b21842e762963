//! The probe's report: one line per step as it completes (text), or one
//! JSON object at the end (`--json`); the failing step also on stderr.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::{transport_name, Options};
use crate::cli::ProbeTransport;

/// Milliseconds, rounded to two decimals.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct StepReport {
    step: &'static str,
    status: Status,
    ms: f64,
    detail: String,
}

#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    ok: bool,
    server: &'a str,
    address: Option<SocketAddr>,
    transport: &'static str,
    username: &'a str,
    steps: &'a [StepReport],
    round_trip_ms: Option<f64>,
    error: Option<String>,
}

/// Collects the steps; in text mode prints each as it completes.
pub struct Reporter {
    json: bool,
    server: String,
    transport: ProbeTransport,
    username: String,
    pub address: Option<SocketAddr>,
    steps: Vec<StepReport>,
    pub round_trip: Option<Duration>,
}

impl Reporter {
    pub fn new(opts: &Options, json: bool) -> Self {
        if !json {
            println!(
                "probing {} {} as {:?}",
                transport_name(opts.transport),
                opts.server,
                opts.username
            );
        }
        Reporter {
            json,
            server: opts.server.clone(),
            transport: opts.transport,
            username: opts.username.clone(),
            address: None,
            steps: Vec::new(),
            round_trip: None,
        }
    }

    pub fn step(&mut self, step: &'static str, status: Status, took: Duration, detail: String) {
        if !self.json {
            let label = match status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!(
                "  {label:<4}  {step:<13} {:>9.2} ms  {detail}",
                millis(took)
            );
        }
        self.steps.push(StepReport {
            step,
            status,
            ms: millis(took),
            detail,
        });
    }

    pub fn finish(&self, ok: bool) {
        let failed = self.steps.iter().find(|s| s.status == Status::Fail);
        let error = failed.map(|s| format!("{}: {}", s.step, s.detail));
        if self.json {
            let report = JsonReport {
                ok,
                server: &self.server,
                address: self.address,
                transport: transport_name(self.transport),
                username: &self.username,
                steps: &self.steps,
                round_trip_ms: self.round_trip.map(millis),
                error: error.clone(),
            };
            match serde_json::to_string_pretty(&report) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("turnd probe: cannot encode the report: {e}"),
            }
        } else if let (true, Some(rtt)) = (ok, self.round_trip) {
            println!(
                "relaying works: round trip through {} in {:.2} ms",
                self.address.map_or(self.server.clone(), |a| a.to_string()),
                millis(rtt)
            );
        }
        if let Some(error) = error {
            eprintln!("turnd probe: failed at {error}");
        }
    }
}

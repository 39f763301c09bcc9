//! Figures, their table, and the arithmetic of rates and ratios.

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::io::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;

/// One measured figure (one element of the `--json` array).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    pub(crate) workload: String,
    pub(crate) backend: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    pub(crate) baseline: Option<f64>,
    pub(crate) ratio: Option<f64>,
    pub(crate) target: Option<String>,
}

impl Figure {
    /// The baseline, ratio and target as printed (`-` where there is none).
    pub(crate) fn cells(&self) -> (String, String, String) {
        (
            self.baseline.map_or("-".to_owned(), |b| format!("{b:.1}")),
            self.ratio.map_or("-".to_owned(), |r| format!("{r:.2}")),
            self.target.clone().unwrap_or_default(),
        )
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Sizes {
    pub(crate) single: usize,
    pub(crate) concurrent: usize,
    pub(crate) batches: usize,
    pub(crate) stream: usize,
    pub(crate) relay: usize,
    pub(crate) latency: usize,
    /// Events a projection catches up over.
    pub(crate) projection: usize,
    /// Events 8 writers append while a projection follows live.
    pub(crate) live: usize,
}

impl Sizes {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Self {
                single: 200,
                concurrent: 800,
                batches: 40,
                stream: 10_000,
                relay: 5_000,
                latency: 100,
                projection: 10_000,
                live: 400,
            }
        } else {
            Self {
                single: 2_000,
                concurrent: 8_000,
                batches: 400,
                stream: 100_000,
                relay: 50_000,
                latency: 1_000,
                projection: 100_000,
                live: 4_000,
            }
        }
    }
}

pub(crate) fn best(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Default)]
pub(crate) struct Report {
    pub(crate) figures: Vec<Figure>,
}

impl Report {
    /// Prints the progress header on stderr.
    pub(crate) fn header() {
        eprintln!(
            "  {:<40} {:<9} {:>12} {:<8} {:>12} {:>7} target",
            "WORKLOAD", "BACKEND", "VALUE", "UNIT", "BASELINE", "RATIO"
        );
    }

    /// The figures so far.
    pub(crate) fn figures(&self) -> &[Figure] {
        &self.figures
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        workload: &str,
        backend: &str,
        value: f64,
        unit: &'static str,
        baseline: Option<f64>,
        higher_is_better: bool,
        target: Option<&str>,
    ) {
        let ratio = baseline.map(|b| {
            if higher_is_better {
                value / b
            } else {
                b / value
            }
        });
        let f = Figure {
            workload: workload.to_owned(),
            backend: backend.to_owned(),
            value,
            unit,
            baseline,
            ratio,
            target: target.map(str::to_owned),
        };
        let (baseline, ratio, target) = f.cells();
        eprintln!(
            "  {:<40} {:<9} {:>12.1} {:<8} {baseline:>12} {ratio:>7} {target}",
            f.workload, f.backend, f.value, f.unit
        );
        self.figures.push(f);
    }
}

pub(crate) fn print_table(figures: &[Figure]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| workload | backend | value | baseline | ratio | target |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---|")?;
    for f in figures {
        let (baseline, ratio, target) = f.cells();
        writeln!(
            out,
            "| {} | {} | {:.1} {} | {baseline} | {ratio} | {target} |",
            f.workload, f.backend, f.value, f.unit
        )?;
    }
    Ok(())
}

pub(crate) fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    (at(50), at(99))
}

//! Figures, their table, and the arithmetic of rates and ratios.

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::io::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;

/// What a figure should reach: its ratio to the same run's baseline (oriented so that higher
/// is better), or its value itself (latencies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Goal {
    /// No target.
    None,
    /// `ratio >= x`.
    Ratio(f64),
    /// `value <= x`, in the figure's unit.
    AtMost(f64),
}

impl Goal {
    fn describe(self, unit: &str) -> Option<String> {
        match self {
            Goal::None => None,
            Goal::Ratio(x) => Some(format!(">= {x}")),
            Goal::AtMost(x) => Some(format!("<= {x} {unit}")),
        }
    }

    fn met(self, value: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Goal::None => None,
            Goal::Ratio(x) => ratio.map(|r| r >= x),
            Goal::AtMost(x) => Some(value <= x),
        }
    }
}

/// One measured figure (one element of the `--json` array).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    /// A stable name for the workload (`append_single`, `read_log`, …).
    pub(crate) key: &'static str,
    pub(crate) workload: String,
    pub(crate) backend: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    /// The same work with nothing of ours in between, in the same run.
    pub(crate) baseline: Option<f64>,
    /// `value` against `baseline`, higher is better.
    pub(crate) ratio: Option<f64>,
    /// The target, as printed.
    pub(crate) target: Option<String>,
    /// Whether the target is met (`null`: no target).
    pub(crate) met: Option<bool>,
    /// The same workload on a peer store, in the same run, through the same client.
    pub(crate) peer: Option<Peer>,
}

/// A peer's figure for the same workload.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Peer {
    /// Which store (`Message DB 1.3.0`).
    pub(crate) name: String,
    pub(crate) value: f64,
    /// Ours against the peer's, higher is better (`2.0`: twice as fast).
    pub(crate) ratio: f64,
    pub(crate) target: Option<String>,
    pub(crate) met: Option<bool>,
}

impl Figure {
    /// The baseline, ratio, target, peer and peer ratio as printed (`-` where there is none).
    pub(crate) fn cells(&self) -> [String; 5] {
        let met = |m: Option<bool>| match m {
            Some(true) => " (met)",
            Some(false) => " (missed)",
            None => "",
        };
        let target = |t: &Option<String>, m: Option<bool>| {
            t.as_ref()
                .map_or(String::new(), |t| format!("{t}{}", met(m)))
        };
        let (peer, vs) = self
            .peer
            .as_ref()
            .map_or(("-".to_owned(), String::new()), |p| {
                (
                    format!("{:.1}", p.value),
                    format!(
                        "{:.2}x{}",
                        p.ratio,
                        target(&p.target, p.met).replace(">= ", " target >= ")
                    ),
                )
            });
        [
            self.baseline.map_or("-".to_owned(), |b| format!("{b:.1}")),
            self.ratio.map_or("-".to_owned(), |r| format!("{r:.2}")),
            target(&self.target, self.met),
            peer,
            vs,
        ]
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

    /// Adds a figure; `baseline` is the same work without us, `goal` what it should reach.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        key: &'static str,
        workload: &str,
        backend: &str,
        value: f64,
        unit: &'static str,
        baseline: Option<f64>,
        higher_is_better: bool,
        goal: Goal,
    ) {
        let ratio = baseline.map(|b| {
            if higher_is_better {
                value / b
            } else {
                b / value
            }
        });
        let f = Figure {
            key,
            workload: workload.to_owned(),
            backend: backend.to_owned(),
            value,
            unit,
            baseline,
            ratio,
            target: goal.describe(unit),
            met: goal.met(value, ratio),
            peer: None,
        };
        let [baseline, ratio, target, _, _] = f.cells();
        eprintln!(
            "  {:<40} {:<9} {:>12.1} {:<8} {baseline:>12} {ratio:>7} {target}",
            f.workload, f.backend, f.value, f.unit
        );
        self.figures.push(f);
    }

    /// Sets the peer's figure for `backend`'s workload `key` (higher is better), with the
    /// factor ours should reach (`None`: no target). A workload not measured is left alone.
    pub(crate) fn compare(
        &mut self,
        backend: &str,
        key: &str,
        name: &str,
        value: f64,
        at_least: Option<f64>,
    ) {
        let Some(f) = self
            .figures
            .iter_mut()
            .find(|f| f.backend == backend && f.key == key)
        else {
            return;
        };
        let ratio = f.value / value;
        f.peer = Some(Peer {
            name: name.to_owned(),
            value,
            ratio,
            target: at_least.map(|x| format!(">= {x}")),
            met: at_least.map(|x| ratio >= x),
        });
        eprintln!(
            "  {:<40} {:<9} {:>12.1} {:<8} {name}: ours is {ratio:.2}x",
            f.workload, f.backend, value, f.unit
        );
    }
}

pub(crate) fn print_table(figures: &[Figure]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let peer = figures
        .iter()
        .find_map(|f| f.peer.as_ref().map(|p| p.name.clone()));
    match &peer {
        Some(name) => {
            writeln!(
                out,
                "| workload | backend | value | baseline | ratio | target | {name} | ours vs {name} |"
            )?;
            writeln!(out, "|---|---|---:|---:|---:|---|---:|---|")?;
        }
        None => {
            writeln!(
                out,
                "| workload | backend | value | baseline | ratio | target |"
            )?;
            writeln!(out, "|---|---|---:|---:|---:|---|")?;
        }
    }
    for f in figures {
        let [baseline, ratio, target, peer_value, vs] = f.cells();
        write!(
            out,
            "| {} | {} | {:.1} {} | {baseline} | {ratio} | {target} |",
            f.workload, f.backend, f.value, f.unit
        )?;
        if peer.is_some() {
            write!(out, " {peer_value} | {vs} |")?;
        }
        writeln!(out)?;
    }
    let (met, missed) = figures
        .iter()
        .flat_map(|f| [f.met, f.peer.as_ref().and_then(|p| p.met)])
        .flatten()
        .fold(
            (0, 0),
            |(m, x), ok| if ok { (m + 1, x) } else { (m, x + 1) },
        );
    writeln!(out, "\nTargets: {met} met, {missed} missed.")?;
    Ok(())
}

pub(crate) fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    (at(50), at(99))
}

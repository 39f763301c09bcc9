//! Progress on stderr, on a terminal only (and never with `--quiet`): labelled, counted in
//! events, with events per second.

use std::io::IsTerminal as _;
use std::time::Instant;

use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};

/// Hides `bar` unless stderr is a terminal and `quiet` is off.
fn shown(bar: ProgressBar, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let rate = s.per_sec();
            let rate = if rate.is_finite() && rate > 0.0 {
                // Whole events per second, at most u64::MAX.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let whole = rate.min(u64::MAX as f64) as u64;
                whole
            } else {
                0
            };
            let _ = write!(w, "{} events/s", HumanCount(rate));
        })
        .progress_chars("=> ")
}

/// A bar over `total` events (a spinner with a count when the total is unknown).
pub(crate) fn bar(total: Option<u64>, what: &str, quiet: bool) -> ProgressBar {
    let Some(total) = total else {
        return counter(what, quiet);
    };
    let bar = ProgressBar::new(total).with_style(style(&format!(
        "{what} [{{bar:30}}] {{human_pos}}/{{human_len}} events, {{rate}}, eta {{eta}}"
    )));
    shown(bar, quiet)
}

/// A running count of events, for input of unknown length (stdin).
pub(crate) fn counter(what: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_style(style(&format!(
        "{{spinner}} {what}: {{human_pos}} events, {{rate}}, {{elapsed}}"
    )));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    shown(bar, quiet)
}

/// Progress through a file of known size, counted in events: the bar follows the bytes read,
/// the label says how many events and how fast.
pub(crate) struct FileProgress {
    bar: ProgressBar,
    started: Instant,
}

impl FileProgress {
    pub(crate) fn new(bytes: u64, what: &str, quiet: bool) -> Self {
        let bar = ProgressBar::new(bytes).with_style(style(&format!(
            "{what} [{{bar:30}}] {{percent:>3}}% of the file, {{msg}}, eta {{eta}}"
        )));
        Self {
            bar: shown(bar, quiet),
            started: Instant::now(),
        }
    }

    /// `read` bytes of the file done, `events` events among them.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub(crate) fn update(&self, read: u64, events: u64) {
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 {
            (events as f64 / seconds) as u64
        } else {
            0
        };
        self.bar.set_position(read);
        self.bar.set_message(format!(
            "{} events, {} events/s",
            HumanCount(events),
            HumanCount(rate)
        ));
    }

    pub(crate) fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

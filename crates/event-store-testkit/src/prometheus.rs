//! Reading back what a process recorded through the `metrics` facade, for tests of the names
//! `event_store::metrics` documents.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs a Prometheus recorder as the process's one recorder (a test binary of its own:
/// a recorder is global) and returns the handle that renders it.
pub fn install_recorder() -> PrometheusHandle {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
    handle
}

/// The value of `series` (a name with its labels, as rendered: `name{label="x"}`) in the
/// Prometheus text `text`, if it is there.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

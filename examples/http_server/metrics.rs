//! `GET /metrics`: the service's counters in Prometheus's text format
//! (version 0.0.4), which `curl` shows and a Prometheus server scrapes.

use std::fmt::Write;

use reactor::service::Connections;

use crate::reply::Counts;

/// The page: one `# HELP`, one `# TYPE` and the samples per metric.
pub fn render(conns: &mut Connections<'_>, counts: &Counts) -> String {
    let service = conns.stats();
    let reactor = conns.reactor().stats();
    let mut page = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        // Writing to a String cannot fail.
        let _ = write!(
            page,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "http_connections_open",
        "gauge",
        "Connections open now.",
        service.open as u64,
    );
    metric(
        "http_connections_total",
        "counter",
        "Connections accepted since start.",
        service.accepted,
    );
    metric(
        "http_connections_rejected_total",
        "counter",
        "Connections refused at the connection limit.",
        service.rejected,
    );
    metric(
        "http_received_bytes_total",
        "counter",
        "Bytes read from clients.",
        service.bytes_in,
    );
    metric(
        "http_sent_bytes_total",
        "counter",
        "Bytes written to clients.",
        service.bytes_out,
    );
    metric(
        "reactor_loop_turns_total",
        "counter",
        "Turns of the event loop.",
        reactor.turns,
    );
    metric(
        "reactor_events_total",
        "counter",
        "Readiness events the loop handled.",
        reactor.events,
    );
    page.push_str("# HELP http_requests_total Responses sent, by status code.\n");
    page.push_str("# TYPE http_requests_total counter\n");
    for (status, count) in counts.by_status() {
        let _ = writeln!(page, "http_requests_total{{status=\"{status}\"}} {count}");
    }
    page
}

//! The end-of-run report: JSON for machines, one self-contained HTML page
//! (inline SVG charts, no scripts, no network) for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;
use serde::Serialize;

use crate::stats::{Percentiles, Sample, Stats};

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Target address.
    pub target: String,
    /// UDP or TCP.
    pub transport: String,
    /// Target rate (calls per second).
    pub rate: f64,
    /// Wall-clock start (RFC 3339, UTC).
    pub started_at: String,
    /// Run length in seconds.
    pub elapsed_s: f64,
    /// Calls started.
    pub started: u64,
    /// Calls that completed the scenario.
    pub succeeded: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Succeeded calls per second over the run.
    pub achieved_rate: f64,
    /// Most calls in progress at once.
    pub peak_concurrent: u64,
    /// SIP messages sent.
    pub messages_out: u64,
    /// SIP messages received.
    pub messages_in: u64,
    /// Retransmissions sent.
    pub retransmissions_out: u64,
    /// Retransmissions received.
    pub retransmissions_in: u64,
    /// Messages belonging to no call.
    pub stray: u64,
    /// RTP packets echoed.
    pub rtp_echoed: u64,
    /// Latency summaries (ms) by label.
    pub latency: BTreeMap<String, Percentiles>,
    /// One sample per second.
    pub timeline: Vec<Sample>,
}

impl Report {
    /// Build from the final stats and the timeline.
    pub fn new(
        head: (&str, &str, &str, f64, String),
        elapsed_s: f64,
        s: &Stats,
        timeline: Vec<Sample>,
    ) -> Report {
        let (scenario, target, transport, rate, started_at) = head;
        Report {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            transport: transport.to_owned(),
            rate,
            started_at,
            elapsed_s,
            started: s.started,
            succeeded: s.succeeded,
            failed: s.failures(),
            failures: s.failed.clone(),
            achieved_rate: if elapsed_s > 0.0 {
                s.succeeded as f64 / elapsed_s
            } else {
                0.0
            },
            peak_concurrent: s.peak_active,
            messages_out: s.msgs_out,
            messages_in: s.msgs_in,
            retransmissions_out: s.retrans_out,
            retransmissions_in: s.retrans_in,
            stray: s.stray,
            rtp_echoed: s.rtp_echoed,
            latency: s
                .latency
                .iter()
                .map(|(k, h)| (k.clone(), Percentiles::of(h)))
                .collect(),
            timeline,
        }
    }

    /// The HTML page.
    pub fn html(&self) -> String {
        let mut h = String::with_capacity(64 * 1024);
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>switchboard-load: {name}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f4f4f4}}\
             figure{{margin:1.5em 0}}</style></head><body>\
             <h1>switchboard-load: {name}</h1><p>Target {target} over {transport}, started {start}, {elapsed:.1} s, \
             target rate {rate} /s.</p>",
            name = esc(&self.scenario),
            target = esc(&self.target),
            transport = esc(&self.transport),
            start = esc(&self.started_at),
            elapsed = self.elapsed_s,
            rate = self.rate,
        );
        h.push_str("<h2>Totals</h2><table id=\"totals\">");
        for (k, v) in [
            ("started", self.started.to_string()),
            ("succeeded", self.succeeded.to_string()),
            ("failed", self.failed.to_string()),
            ("achieved rate (/s)", format!("{:.1}", self.achieved_rate)),
            ("peak concurrent", self.peak_concurrent.to_string()),
            (
                "messages out / in",
                format!("{} / {}", self.messages_out, self.messages_in),
            ),
            (
                "retransmissions out / in",
                format!("{} / {}", self.retransmissions_out, self.retransmissions_in),
            ),
        ] {
            let _ = write!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
        }
        h.push_str("</table>");
        if !self.failures.is_empty() {
            h.push_str(
                "<h2>Failures</h2><table id=\"failures\"><tr><th>reason</th><th>calls</th></tr>",
            );
            for (k, v) in &self.failures {
                let _ = write!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
            }
            h.push_str("</table>");
        }
        h.push_str(
            "<h2>Latency (ms)</h2><table id=\"latency\"><tr><th>from → to</th><th>count</th><th>min</th>\
             <th>p50</th><th>p90</th><th>p99</th><th>max</th><th>mean</th></tr>",
        );
        for (k, p) in &self.latency {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                esc(k),
                p.count,
                p.min,
                p.p50,
                p.p90,
                p.p99,
                p.max,
                p.mean
            );
        }
        h.push_str("</table>");
        let t: Vec<f64> = self.timeline.iter().map(|s| s.t).collect();
        let series =
            |f: &dyn Fn(&Sample) -> f64| -> Vec<f64> { self.timeline.iter().map(f).collect() };
        figure(
            &mut h,
            "chart-rate",
            "Calls per second",
            &t,
            &[
                ("started", series(&|s| s.started as f64), BLUE),
                ("succeeded", series(&|s| s.succeeded as f64), GREEN),
                ("failed", series(&|s| s.failed as f64), RED),
            ],
        );
        figure(
            &mut h,
            "chart-concurrency",
            "Calls in progress",
            &t,
            &[("concurrent", series(&|s| s.active as f64), BLUE)],
        );
        let main = self.main_latency();
        if let Some(label) = main {
            let pick = |q: fn(&Percentiles) -> f64| -> Vec<f64> {
                self.timeline
                    .iter()
                    .map(|s| s.latency.get(&label).map_or(f64::NAN, q))
                    .collect()
            };
            figure(
                &mut h,
                "chart-latency",
                &format!("{label} latency (ms) per second"),
                &t,
                &[
                    ("p50", pick(|p| p.p50), GREEN),
                    ("p90", pick(|p| p.p90), BLUE),
                    ("p99", pick(|p| p.p99), RED),
                ],
            );
        }
        h.push_str("</body></html>\n");
        h
    }

    /// The latency that matters most: a 200 to INVITE, else to REGISTER,
    /// else the first one.
    fn main_latency(&self) -> Option<String> {
        ["INVITE→200", "REGISTER→200"]
            .iter()
            .map(|s| (*s).to_owned())
            .find(|k| self.latency.contains_key(k))
            .or_else(|| self.latency.keys().next().cloned())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Append a `<figure>` with a line chart drawn as inline SVG.
fn figure(h: &mut String, id: &str, title: &str, t: &[f64], lines: &[(&str, Vec<f64>, RGBColor)]) {
    let mut svg = String::new();
    if draw(&mut svg, title, t, lines).is_err() {
        svg = format!("<p>chart {title}: nothing to draw</p>");
    }
    let _ = write!(
        h,
        "<figure id=\"{id}\">{svg}<figcaption>{}</figcaption></figure>",
        esc(title)
    );
}

fn draw(
    svg: &mut String,
    title: &str,
    t: &[f64],
    lines: &[(&str, Vec<f64>, RGBColor)],
) -> Result<(), Box<dyn std::error::Error>> {
    let x_max = t.iter().copied().fold(1.0f64, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|(_, v, _)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::with_string(svg, (900, 320)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart.configure_mesh().x_desc("seconds").draw()?;
    for (name, values, color) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                t.iter()
                    .copied()
                    .zip(values.iter().copied())
                    .filter(|(_, v)| v.is_finite()),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn html_has_tables_and_three_charts() {
        let mut s = Stats::default();
        let mut timeline = Vec::new();
        for i in 0..5u32 {
            s.start();
            s.succeed();
            s.record("INVITE→200", Duration::from_millis(u64::from(10 + i)));
            timeline.push(Sample {
                t: f64::from(i + 1),
                started: 1,
                succeeded: 1,
                failed: 0,
                active: 0,
                latency: s.take_interval(),
            });
        }
        s.start();
        s.fail("486");
        let r = Report::new(
            ("call", "127.0.0.1:5060", "UDP", 1.0, "now".into()),
            5.0,
            &s,
            timeline,
        );
        assert_eq!((r.started, r.succeeded, r.failed), (6, 5, 1));
        let html = r.html();
        for id in ["chart-rate", "chart-concurrency", "chart-latency"] {
            let at = html
                .find(&format!("<figure id=\"{id}\"><svg"))
                .unwrap_or_else(|| panic!("{id} missing"));
            assert!(
                html[at..].contains("<polyline") || html[at..].contains("<path"),
                "{id} draws nothing"
            );
        }
        assert!(html.contains("<td>486</td><td>1</td>"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["failures"]["486"], 1);
        assert_eq!(json["timeline"].as_array().unwrap().len(), 5);
    }
}

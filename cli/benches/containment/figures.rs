//! Summaries of timings, the critical path of a set of EC2 calls, and the burst chart.

use std::time::{Duration, Instant};

use cordon_tests::faults::ProxiedCall;

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The nearest-rank percentile of `values` (sorted here); NaN when there are none.
pub fn percentile(values: &[f64], pct: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// "median (min–max)" in milliseconds.
pub fn spread(values: &[f64]) -> String {
    format!(
        "{:.1} ({:.1}–{:.1})",
        median(values),
        percentile(values, 0.0),
        percentile(values, 100.0)
    )
}

/// The longest chain of calls each of which started after the one before it had ended, among
/// the calls up to and including `last`: the EC2 round trips that had to happen one after
/// another to reach `last`. Calls made at the same time count once.
pub fn critical_path(calls: &[ProxiedCall], last: &ProxiedCall) -> Vec<ProxiedCall> {
    let mut before: Vec<&ProxiedCall> = calls
        .iter()
        .filter(|c| c.finished <= last.started)
        .collect();
    before.sort_by_key(|c| c.started);
    // chain[i]: the longest chain ending with before[i].
    let mut chain: Vec<Vec<&ProxiedCall>> = Vec::new();
    for (i, call) in before.iter().enumerate() {
        let best = (0..i)
            .filter(|&j| before[j].finished <= call.started)
            .max_by_key(|&j| chain[j].len());
        let mut path = best.map(|j| chain[j].clone()).unwrap_or_default();
        path.push(call);
        chain.push(path);
    }
    let mut path: Vec<ProxiedCall> = chain
        .into_iter()
        .max_by_key(Vec::len)
        .unwrap_or_default()
        .into_iter()
        .cloned()
        .collect();
    path.push(last.clone());
    path
}

pub fn actions(path: &[ProxiedCall]) -> String {
    path.iter()
        .map(|c| c.action.as_str())
        .collect::<Vec<_>>()
        .join(" → ")
}

pub fn since(start: Instant, at: Instant) -> f64 {
    ms(at.saturating_duration_since(start))
}

/// The burst's time to containment as a cumulative distribution: one step per finding.
pub fn burst_svg(seconds: &[f64], title: &str, limit: Option<f64>) -> String {
    let (width, height, left, bottom, top, right) = (720.0, 400.0, 60.0, 50.0, 40.0, 20.0);
    let mut sorted = seconds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let max = sorted
        .last()
        .copied()
        .unwrap_or(1.0)
        .max(limit.unwrap_or(0.0))
        .max(0.001);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let x = |s: f64| left + s / max * plot_w;
    let y = |fraction: f64| top + (1.0 - fraction) * plot_h;
    let n = sorted.len().max(1) as f64;
    let mut path = format!("M {:.1} {:.1}", x(0.0), y(0.0));
    for (i, s) in sorted.iter().enumerate() {
        path.push_str(&format!(
            " L {:.1} {:.1} L {:.1} {:.1}",
            x(*s),
            y(i as f64 / n),
            x(*s),
            y((i + 1) as f64 / n)
        ));
    }
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"24\" font-size=\"14\">{title}</text>\n"
    );
    for tick in 0..=5 {
        let seconds = max * tick as f64 / 5.0;
        let fraction = tick as f64 / 5.0;
        svg.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{top}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{seconds:.1} s</text>\n\
             <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>\n",
            x(seconds),
            x(seconds),
            top + plot_h,
            x(seconds),
            top + plot_h + 18.0,
            y(fraction),
            left + plot_w,
            y(fraction),
            left - 6.0,
            y(fraction) + 4.0,
            fraction * 100.0
        ));
    }
    let p50 = percentile(&sorted, 50.0);
    let p99 = percentile(&sorted, 99.0);
    if let Some(limit) = limit.filter(|l| *l > 0.0) {
        svg.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{top}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#2a2\" stroke-width=\"2\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#2a2\" text-anchor=\"end\">token-bucket limit {limit:.1} s</text>\n",
            x(limit),
            x(limit),
            top + plot_h,
            x(limit) - 4.0,
            top + plot_h - 8.0,
        ));
    }
    for (label, at) in [("p50", p50), ("p99", p99)] {
        svg.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{top}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c33\">{label} {at:.2} s</text>\n",
            x(at),
            x(at),
            top + plot_h,
            x(at) + 4.0,
            top + 14.0 + if label == "p99" { 14.0 } else { 0.0 },
        ));
    }
    svg.push_str(&format!(
        "<path d=\"{path}\" fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"2\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds from the burst's start to containment</text>\n\
         <text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">findings contained</text>\n\
         </svg>\n",
        left + plot_w / 2.0,
        height - 10.0,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    ));
    svg
}

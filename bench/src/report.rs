//! Figures and the report: each figure is measured for iot2mqtt and, where it has one, the
//! Python baseline, over repeated runs; the report gives the median and the spread.

use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

/// Who a figure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// iot2mqtt.
    Iot2mqtt,
    /// The Python reference connector.
    Baseline,
}

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Smaller is better (latency, memory).
    Lower,
    /// Larger is better (throughput).
    Higher,
}

/// A stated target a figure is compared with in `--check`.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// `value < limit` (lower) or `value >= limit` (higher).
    pub limit: f64,
    /// For people.
    pub text: String,
}

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What is measured (`round_trip_p99_100hz`).
    pub name: String,
    /// For whom.
    pub subject: Subject,
    /// `ms`, `KiB`, `msg/s`…
    pub unit: String,
    /// The median of the runs.
    pub value: f64,
    /// The same.
    pub median: f64,
    /// Smallest and largest run.
    pub spread: [f64; 2],
    /// Every run.
    pub runs: Vec<f64>,
    /// Which way is better.
    pub better: Better,
    /// The target, for iot2mqtt figures that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// How it was measured, in a few words.
    pub note: String,
    /// The benchmark it belongs to.
    pub bench: String,
    /// The commit measured.
    pub commit: String,
}

impl Figure {
    /// Whether it meets its target (`None` without one).
    pub fn meets(&self) -> Option<bool> {
        self.target.as_ref().map(|t| match self.better {
            Better::Lower => self.value < t.limit,
            Better::Higher => self.value >= t.limit,
        })
    }
}

/// What a benchmark run collects.
#[derive(Debug, Default)]
pub struct Report {
    figures: Vec<Figure>,
    commit: String,
    bench: String,
    machine: Value,
}

/// A figure being made: `report.figure(...).runs(...).target(...)`.
#[derive(Debug)]
pub struct Pending<'a> {
    report: &'a mut Report,
    figure: Figure,
}

impl Pending<'_> {
    /// The target.
    pub fn target(mut self, limit: f64, text: &str) -> Self {
        self.figure.target = Some(Target { limit, text: text.to_string() });
        self
    }

    /// The target, when the figure is iot2mqtt's (the baseline has none).
    pub fn target_for_ours(self, limit: f64, text: &str) -> Self {
        if self.figure.subject == Subject::Iot2mqtt { self.target(limit, text) } else { self }
    }

    /// How it was measured.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.figure.note = note.into();
        self
    }

    /// Which way is better (lower by default).
    pub fn higher_is_better(mut self) -> Self {
        self.figure.better = Better::Higher;
        self
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let figure = self.figure.clone();
        println!(
            "  {:<40} {:<9} {:>12} {:<6} (runs {})",
            figure.name,
            format!("{:?}", figure.subject).to_lowercase(),
            format_value(figure.value),
            figure.unit,
            runs_text(&figure.runs)
        );
        self.report.figures.push(figure);
    }
}

impl Report {
    /// An empty report for `commit`.
    pub fn new(commit: String) -> Self {
        Self { commit, machine: machine(), ..Self::default() }
    }

    /// Figures from now on belong to `bench`.
    pub fn section(&mut self, bench: &str) {
        self.bench = bench.to_string();
        println!("\n{bench}");
    }

    /// Record a figure from its runs.
    pub fn figure(&mut self, name: &str, subject: Subject, unit: &str, runs: Vec<f64>) -> Pending<'_> {
        let median = median(&runs);
        let spread = [
            runs.iter().copied().fold(f64::INFINITY, f64::min),
            runs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ];
        let figure = Figure {
            name: name.to_string(),
            subject,
            unit: unit.to_string(),
            value: median,
            median,
            spread,
            runs,
            better: Better::Lower,
            target: None,
            note: String::new(),
            bench: self.bench.clone(),
            commit: self.commit.clone(),
        };
        Pending { report: self, figure }
    }

    /// Every figure so far.
    pub fn figures(&self) -> &[Figure] {
        &self.figures
    }

    /// Write `report.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = json!({"commit": self.commit, "machine": self.machine, "figures": self.figures});
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&json)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        Ok(())
    }

    /// The report as a Markdown table, iot2mqtt and baseline side by side.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Commit `{}` on {} ({} CPUs, {} GiB), {}.\n\n",
            self.commit,
            self.machine["cpu"].as_str().unwrap_or("?"),
            self.machine["cpus"],
            self.machine["memory_gib"],
            self.machine["os"].as_str().unwrap_or("?"),
        ));
        out.push_str("| figure | unit | iot2mqtt | baseline | ratio | target |\n|---|---|---:|---:|---:|---|\n");
        let mut seen = Vec::new();
        for figure in &self.figures {
            if seen.contains(&figure.name) {
                continue;
            }
            seen.push(figure.name.clone());
            let find = |s: Subject| self.figures.iter().find(|f| f.name == figure.name && f.subject == s);
            let (ours, theirs) = (find(Subject::Iot2mqtt), find(Subject::Baseline));
            let cell = |f: Option<&Figure>| f.map_or("–".to_string(), with_spread);
            let ratio = match (ours, theirs) {
                (Some(o), Some(t)) if o.value > 0.0 && t.value > 0.0 => {
                    let r = match figure.better {
                        Better::Lower => t.value / o.value,
                        Better::Higher => o.value / t.value,
                    };
                    format!("{r:.1}×")
                }
                _ => "–".into(),
            };
            let target = ours.and_then(|o| {
                let t = o.target.as_ref()?;
                Some(format!("{} {}", if o.meets() == Some(true) { "✓" } else { "✗" }, t.text))
            });
            out.push_str(&format!(
                "| {}{} | {} | {} | {} | {} | {} |\n",
                figure.name,
                if figure.note.is_empty() { String::new() } else { format!(" ({})", figure.note) },
                figure.unit,
                cell(ours),
                cell(theirs),
                ratio,
                target.unwrap_or_default()
            ));
        }
        out.push_str("\nValues are medians over the runs, with the smallest and largest run in brackets. ");
        out.push_str("The ratio is how many times better iot2mqtt is.\n");
        out
    }
}

fn runs_text(runs: &[f64]) -> String {
    let shown: Vec<String> = runs.iter().take(5).map(|r| format_value(*r)).collect();
    if runs.len() > 5 { format!("{}, … {} in all", shown.join(", "), runs.len()) } else { shown.join(", ") }
}

fn with_spread(f: &Figure) -> String {
    if f.runs.len() > 1 && f.spread[0] != f.spread[1] {
        format!("{} [{}–{}]", format_value(f.value), format_value(f.spread[0]), format_value(f.spread[1]))
    } else {
        format_value(f.value)
    }
}

/// A number for people: three significant digits, no exponent.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let magnitude = v.abs();
    if magnitude >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if magnitude >= 100.0 {
        format!("{v:.1}")
    } else if magnitude >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The median of some runs.
pub fn median(runs: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = runs.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] }
}

/// A percentile (0–100) of samples.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |s| s.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| l[12..].trim_matches('"').to_string()))
        .unwrap_or_else(|| "Linux".into());
    json!({
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memory_gib": (mem_kib / 1024.0 / 1024.0).round(),
        "os": os,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut samples, 50.0), 51.0);
        assert_eq!(percentile(&mut samples, 99.0), 99.0);
        assert_eq!(percentile(&mut samples, 100.0), 100.0);
        assert_eq!(format_value(0.01234), "0.012");
        assert_eq!(format_value(12345.6), "12346");
    }

    #[test]
    fn the_markdown_sets_figures_side_by_side() {
        let mut report = Report::new("abc".into());
        report.section("latency");
        report.figure("p99", Subject::Iot2mqtt, "ms", vec![0.5, 0.4, 0.6]).target(1.0, "< 1 ms");
        report.figure("p99", Subject::Baseline, "ms", vec![5.0]);
        let md = report.markdown();
        assert!(md.contains("| p99 | ms | 0.500 [0.400–0.600] | 5 | 10.0× | ✓ < 1 ms |"), "{md}");
        assert_eq!(report.figures()[0].meets(), Some(true));
    }
}

//! `iot2mqtt-bench`: the benchmarks behind `cargo xtask bench`. Each benchmark measures
//! iot2mqtt and, where it has a counterpart, the Python reference connector
//! (`bench/python-baseline`), against a Mosquitto it starts itself; the figures go to
//! `report.json` and `report.md`. Figures are reported, not asserted; `--check` compares
//! them with the stated targets.

mod benches;
mod driver;
mod procs;
mod report;
mod tally;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use procs::{Paths, Proc};
use report::{Report, Subject};

#[derive(Debug, Parser)]
#[command(about = "iot2mqtt benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the benchmarks and write the report.
    Run(RunArgs),
    /// (Internal) run N demo instances in this process until stdin closes.
    Density {
        /// The broker's port.
        #[arg(long)]
        port: u16,
        /// How many instances.
        #[arg(long)]
        count: usize,
        /// The demo plugin.
        #[arg(long)]
        plugin: PathBuf,
        /// The compile cache.
        #[arg(long)]
        cache: PathBuf,
    },
    /// (Internal) run the embedded broker on 127.0.0.1:PORT, anonymous clients allowed, until
    /// terminated: a process of its own, as Mosquitto is and as it is inside `serve`.
    Broker {
        /// Where it listens.
        #[arg(long)]
        port: u16,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Run only these benchmarks (sizes, start, round_trip, throughput, swap, footprint,
    /// control_plane, pages, tools, density, python, http).
    #[arg(long = "only", value_delimiter = ',')]
    only: Vec<String>,
    /// Shorter runs and smaller sizes (minutes instead of a quarter of an hour).
    #[arg(long)]
    quick: bool,
    /// Repetitions of each measurement (default 3, quick 1).
    #[arg(long)]
    runs: Option<usize>,
    /// Compare the figures with the targets; exit 1 if one is missed.
    #[arg(long)]
    check: bool,
    /// Where the report goes.
    #[arg(long)]
    out: PathBuf,
    /// The repository.
    #[arg(long)]
    repo: PathBuf,
    /// Built plugins.
    #[arg(long)]
    plugins: PathBuf,
    /// Skip the Python baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Also run the soak: 5,000 devices read every second for ten minutes (one with --quick).
    #[arg(long)]
    soak: bool,
}

/// What every benchmark gets.
#[derive(Debug)]
pub struct Ctx {
    /// Where things are.
    pub paths: Paths,
    /// The Mosquitto every subject talks to.
    pub broker: u16,
    /// Shorter runs.
    pub quick: bool,
    /// Repetitions.
    pub runs: usize,
    /// A compile cache warmed before measuring.
    pub cache: tempfile::TempDir,
    /// The figures.
    pub report: Report,
    /// Whether the baseline runs.
    pub baseline: bool,
    serial: u32,
}

impl Ctx {
    /// The subjects: iot2mqtt, and the baseline when there is one.
    pub fn subjects(&self) -> Vec<Subject> {
        let mut subjects = vec![Subject::Iot2mqtt];
        if self.baseline {
            subjects.push(Subject::Baseline);
        }
        subjects
    }

    /// A fresh instance id.
    pub fn id(&mut self, prefix: &str) -> String {
        self.serial += 1;
        format!("{prefix}-{}-{}", std::process::id() % 100_000, self.serial)
    }

    /// Start an instance of `config` in its own process: `iot2mqtt-host` or the baseline.
    pub fn start(&self, subject: Subject, config: &Value) -> anyhow::Result<Proc> {
        match subject {
            Subject::Iot2mqtt => procs::host(&self.paths, self.broker, config, "demo", self.cache.path()),
            Subject::Baseline => procs::baseline(&self.paths, self.broker, config),
        }
    }

    /// Seconds: `quick` or `full`.
    pub fn secs(&self, quick: u64, full: u64) -> Duration {
        Duration::from_secs(if self.quick { quick } else { full })
    }
}

/// A demo instance with `devices`.
pub fn demo_config(id: &str, devices: Value, update_interval: u64) -> Value {
    json!({"instance_id": id, "connector_type": "demo", "update_interval": update_interval, "devices": devices})
}

/// `n` demo devices of `kind`, `d0`…
pub fn devices(kind: &str, n: usize) -> Value {
    Value::Array((0..n).map(|i| json!({"device_id": format!("d{i}"), "kind": kind})).collect())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Density { port, count, plugin, cache } => {
            runtime.block_on(benches::density_child(port, count, plugin, cache))
        }
        Command::Broker { port } => runtime.block_on(benches::broker_child(port)),
        Command::Run(args) => runtime.block_on(run(args)),
    }
}

const ALL: [&str; 12] = [
    "sizes",
    "start",
    "round_trip",
    "throughput",
    "swap",
    "footprint",
    "control_plane",
    "pages",
    "tools",
    "density",
    "python",
    "http",
];

async fn run(args: RunArgs) -> anyhow::Result<()> {
    for name in &args.only {
        anyhow::ensure!(ALL.contains(&name.as_str()), "unknown benchmark \"{name}\"; there are: {}", ALL.join(", "));
    }
    procs::raise_limits();
    let bin = std::env::current_exe()?.parent().context("the benchmark binary has no folder")?.to_path_buf();
    let python = if args.no_baseline { None } else { benches::find_python() };
    if python.is_none() && !args.no_baseline {
        eprintln!("note: no Python 3 with paho-mqtt (apt-get install python3-paho-mqtt): the baseline is skipped");
    }
    let paths = Paths { repo: args.repo.clone(), bin, plugins: args.plugins.clone(), python };
    let port = procs::free_port();
    let _mosquitto = procs::mosquitto(port).context("cannot start Mosquitto (apt-get install mosquitto)")?;
    let mut ctx = Ctx {
        baseline: paths.python.is_some(),
        paths,
        broker: port,
        quick: args.quick,
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        cache: tempfile::tempdir()?,
        report: Report::new(commit(&args.repo)),
        serial: 0,
    };
    benches::warm_cache(&ctx).await?;
    println!(
        "iot2mqtt benchmarks: {} run(s) each{}, Mosquitto on {port}",
        ctx.runs,
        if ctx.quick { ", quick" } else { "" }
    );
    let selected = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    for name in ALL.into_iter().filter(|n| selected(n)) {
        let outcome = match name {
            "sizes" => benches::sizes(&mut ctx).await,
            "start" => benches::start(&mut ctx).await,
            "round_trip" => benches::round_trip(&mut ctx).await,
            "throughput" => benches::throughput(&mut ctx).await,
            "swap" => benches::swap(&mut ctx).await,
            "footprint" => benches::footprint(&mut ctx).await,
            "control_plane" => benches::control_plane(&mut ctx).await,
            "pages" => benches::pages(&mut ctx).await,
            "tools" => benches::tools(&mut ctx).await,
            "density" => benches::density(&mut ctx).await,
            "python" => benches::python(&mut ctx).await,
            "http" => benches::http(&mut ctx).await,
            _ => unreachable!("checked above"),
        };
        if let Err(e) = outcome {
            eprintln!("benchmark {name} failed: {e:#}");
            return Err(e);
        }
    }
    if args.soak {
        benches::soak(&mut ctx).await.inspect_err(|e| eprintln!("benchmark soak failed: {e:#}"))?;
    }
    ctx.report.write(&args.out)?;
    println!("\n{}", ctx.report.markdown());
    println!("written: {} and report.md", args.out.join("report.json").display());
    if args.check {
        let missed: Vec<_> = ctx.report.figures().iter().filter(|f| f.meets() == Some(false)).collect();
        for figure in &missed {
            let target = figure.target.as_ref().map_or("", |t| t.text.as_str());
            eprintln!("target missed: {} = {} {} (target {target})", figure.name, figure.value, figure.unit);
        }
        anyhow::ensure!(missed.is_empty(), "{} target(s) missed", missed.len());
        println!("every target met");
    }
    Ok(())
}

fn commit(repo: &std::path::Path) -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

//! `cargo xtask fuzz [--seconds N] [target…]`: run the fuzz targets of `tests/fuzz` with
//! cargo-fuzz for a fixed time each (60 s by default); `cargo xtask test` runs each for a short
//! time. Coverage-guided without a sanitizer (`--sanitizer none`), which works on the stable
//! toolchain; a crash leaves its input under `tests/fuzz/artifacts/<target>/` and fails.

use anyhow::{Context, bail};

use crate::{root, target_dir};

/// Every target, in the order they run.
pub(crate) const TARGETS: [&str; 2] = ["codec", "broker_session"];

/// `cargo xtask fuzz` with its arguments.
pub(crate) fn command(args: &[String]) -> anyhow::Result<()> {
    let mut seconds = 60;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a number")?;
                seconds = value.parse().with_context(|| format!("--seconds {value}: not a number of seconds"))?;
            }
            name if TARGETS.contains(&name) => targets.push(name.to_string()),
            other => bail!("unknown fuzz argument {other:?}: the targets are {}", TARGETS.join(", ")),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(ToString::to_string).collect();
    }
    if !installed() {
        bail!("cargo-fuzz is not installed: cargo install cargo-fuzz --locked");
    }
    for target in &targets {
        run(target, seconds)?;
    }
    Ok(())
}

/// Whether `cargo fuzz` can run.
pub(crate) fn installed() -> bool {
    crate::cargo_command().args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success())
}

/// Run one target for `seconds`.
pub(crate) fn run(target: &str, seconds: u32) -> anyhow::Result<()> {
    let fuzz_dir = root().join("tests/fuzz");
    let corpus = target_dir().join("fuzz-corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    println!("xtask: fuzzing {target} for {seconds} s");
    let status = crate::cargo_command()
        .args(["fuzz", "run", "--sanitizer", "none", "--release", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        // The instrumented build must not replace the units of the normal one.
        .env("CARGO_TARGET_DIR", target_dir().join("fuzz"))
        .current_dir(root())
        .status()
        .context("cannot run cargo fuzz")?;
    if !status.success() {
        bail!(
            "fuzz target {target} failed ({status}); the input that broke it is under tests/fuzz/artifacts/{target}/"
        );
    }
    Ok(())
}

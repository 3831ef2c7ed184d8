//! Script tools as subprocesses of `serve` (the embedded runtime): a process group of their
//! own, a cleared environment, and no network at all when they ask for none (`unshare --net`).

use std::path::Path;
use std::process::Stdio;

use iot2mqtt_flows::schema::ToolNetwork;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

use super::{Call, KILL_GRACE, Limited, Ran, Sink, Tail};

/// Starts script tools as subprocesses.
#[derive(Debug, Default)]
pub(super) struct Processes {
    isolation: OnceCell<Option<Vec<&'static str>>>,
}

impl Processes {
    /// Make `call` in `dir`. An error is why it could not be run at all.
    pub(super) async fn run(&self, dir: &Path, call: &Call<'_>) -> Result<Ran, String> {
        let Call { program, name, network, timeout, request } = *call;
        let mut command = match network {
            ToolNetwork::None => {
                let prefix = self.isolation().await.ok_or_else(|| {
                    "this tool must run without network, and this machine cannot isolate it \
                     (`unshare --net` is missing or not permitted)"
                        .to_string()
                })?;
                let mut command = tokio::process::Command::new(prefix[0]);
                command.args(&prefix[1..]).arg(program);
                command
            }
            ToolNetwork::Local | ToolNetwork::Internet => tokio::process::Command::new(program),
        };
        command
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("LANG", "C.UTF-8")
            .env("HOME", std::env::temp_dir())
            .env("IOT2MQTT_TOOL", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let run = async {
            let write = async {
                if let Some(stdin) = stdin.as_mut() {
                    // A tool that does not read its input closes the pipe early; that is its choice.
                    let _ = stdin.write_all(request).await;
                    let _ = stdin.shutdown().await;
                }
                drop(stdin.take());
            };
            let (_, out, err, status) = tokio::join!(
                write,
                drain(stdout.as_mut(), Limited::default()),
                drain(stderr.as_mut(), Tail::default()),
                child.wait()
            );
            (out, err, status)
        };
        let Ok((out, err, status)) = tokio::time::timeout(timeout, run).await else {
            terminate(&mut child).await;
            return Ok(Ran::TimedOut);
        };
        let status = status.map_err(|e| e.to_string())?;
        Ok(Ran::Exited { code: status.code().map(i64::from), stdout: out.into_inner(), stderr: err.into_inner() })
    }

    /// The command prefix that runs a program without network, found once.
    async fn isolation(&self) -> Option<Vec<&'static str>> {
        self.isolation
            .get_or_init(|| async {
                let candidates: [&[&'static str]; 2] =
                    [&["unshare", "--net", "--"], &["unshare", "--user", "--map-root-user", "--net", "--"]];
                for prefix in candidates {
                    let probe = tokio::process::Command::new(prefix[0])
                        .args(&prefix[1..])
                        .arg("true")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .await;
                    if probe.is_ok_and(|s| s.success()) {
                        return Some(prefix.to_vec());
                    }
                }
                tracing::warn!("`unshare --net` does not work here: tools that ask for no network will not run");
                None
            })
            .await
            .clone()
    }
}

/// Everything on `reader`, into `sink`, until it ends (a full pipe never blocks the tool).
async fn drain<R: AsyncRead + Unpin, S: Sink>(reader: Option<&mut R>, mut sink: S) -> S {
    let Some(reader) = reader else { return sink };
    let mut chunk = [0u8; 8192];
    while let Ok(n) = reader.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        sink.push(&chunk[..n]);
    }
    sink
}

/// SIGTERM to the tool's process group, SIGKILL after the grace.
async fn terminate(child: &mut tokio::process::Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else { return };
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

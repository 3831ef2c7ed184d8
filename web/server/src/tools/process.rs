//! Script tools as subprocesses of `serve` (the embedded runtime), each in a [`Sandbox`] with a
//! cleared environment and only the network it asks for. Without a working sandbox no script
//! tool runs, and the error says why.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

use super::sandbox::Sandbox;
use super::{Call, KILL_GRACE, Limited, Ran, Sink, Tail};

/// Starts script tools as sandboxed subprocesses.
#[derive(Debug, Default)]
pub(super) struct Processes {
    sandbox: OnceCell<Result<Sandbox, String>>,
}

impl Processes {
    /// Make `call` in `dir`. An error is why it could not be run at all.
    pub(super) async fn run(&self, dir: &Path, call: &Call<'_>) -> Result<Ran, String> {
        let Call { program, name, network, timeout, request } = *call;
        let sandbox = self.sandbox().await.map_err(|why| format!("script tools run in a sandbox, and {why}"))?;
        let mut command = sandbox.command(dir, program, network)?;
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("HOME", "/tmp")
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

    /// The sandbox, found once (and the reason there is none, logged once).
    async fn sandbox(&self) -> Result<&Sandbox, &str> {
        self.sandbox
            .get_or_init(|| async {
                let found = Sandbox::find().await;
                if let Err(why) = &found {
                    tracing::warn!("script setup tools cannot run: {why}");
                }
                found
            })
            .await
            .as_ref()
            .map_err(String::as_str)
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

//! The Debian base image of container connectors, made without a registry: `debootstrap`
//! fetches Debian's packages (from this machine's own apt mirror unless told otherwise) into a
//! folder, which is imported into Docker as an image. Connector Dockerfiles start
//! `ARG BASE=iot2mqtt/base:bookworm` / `FROM ${BASE}`, so someone with a registry may choose
//! another base; the orchestrator passes `BASE` when it builds.
//!
//! The image is tagged by its recipe (suite and packages), so changing the recipe makes a new
//! one, and the stable tag [`BASE_IMAGE`] points at the newest.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bollard::Docker;
use bollard::query_parameters::{CreateImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};

use crate::runtime::RuntimeError;

/// The tag connector Dockerfiles name.
pub const BASE_IMAGE: &str = "iot2mqtt/base:bookworm";
/// The Debian release.
const SUITE: &str = "bookworm";
/// What the image holds beyond Debian's minimal base, one package a line (`#` comments).
const PACKAGES: &str = include_str!("../../../../../runner-image/base/packages");
/// Where Debian is fetched from when this machine names no mirror.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The variable that names another mirror.
pub const MIRROR_VARIABLE: &str = "IOT2MQTT_DEBIAN_MIRROR";
/// What the imported image runs and how it behaves, as Dockerfile instructions.
const IMAGE_SETTINGS: &[&str] = &[
    "ENV PYTHONUNBUFFERED=1",
    "ENV LANG=C.UTF-8",
    "CMD [\"/usr/bin/supervisord\", \"-n\", \"-c\", \"/etc/supervisor/supervisord.conf\"]",
];
/// Bytes read from `tar` at a time while importing.
const CHUNK: usize = 1 << 20;

/// The base image's tag for this recipe.
pub fn recipe_tag() -> String {
    let mut hash = Sha256::new();
    hash.update(SUITE);
    for item in packages().iter().chain(IMAGE_SETTINGS) {
        hash.update([0]);
        hash.update(item);
    }
    format!("iot2mqtt/base:{SUITE}-{}", &hex::encode(hash.finalize())[..12])
}

/// The packages of the recipe.
fn packages() -> Vec<&'static str> {
    PACKAGES.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

/// Make sure the base image of this recipe exists, building it when it does not; its stable
/// tag. Each step is told to `progress` (and the log).
pub async fn ensure_base(docker: &Docker, progress: &(dyn Fn(&str) + Sync)) -> Result<String, RuntimeError> {
    let tag = recipe_tag();
    if docker.inspect_image(&tag).await.is_ok() {
        point_stable_tag(docker, &tag).await?;
        return Ok(BASE_IMAGE.to_string());
    }
    let debootstrap = which("debootstrap").ok_or_else(|| {
        RuntimeError::Io(format!(
            "the base image {BASE_IMAGE} is missing and debootstrap is not installed to make it \
             (apt-get install debootstrap), or load an image under that tag"
        ))
    })?;
    if !nix::unistd::Uid::effective().is_root() {
        return Err(RuntimeError::Io(format!(
            "the base image {BASE_IMAGE} is missing and making it (debootstrap) needs root: run \
             `sudo iot2mqtt base-image` once"
        )));
    }
    let mirror = mirror();
    let work = tempfile::Builder::new()
        .prefix("iot2mqtt-base-")
        .tempdir_in(std::env::temp_dir())
        .map_err(|e| RuntimeError::Io(format!("cannot make a folder for the base image: {e}")))?;
    let rootfs = work.path().join("rootfs");
    tell(progress, &format!("making the base image {BASE_IMAGE}: Debian {SUITE} from {mirror}"));
    bootstrap(&debootstrap, &rootfs, &mirror, progress).await?;
    tidy(&rootfs).await?;
    tell(progress, "importing the base image into Docker");
    import(docker, &rootfs, &tag).await?;
    point_stable_tag(docker, &tag).await?;
    tell(progress, &format!("the base image {BASE_IMAGE} is ready"));
    Ok(BASE_IMAGE.to_string())
}

fn tell(progress: &(dyn Fn(&str) + Sync), line: &str) {
    tracing::info!("{line}");
    progress(line);
}

/// Run debootstrap into `rootfs`, telling each of its lines.
async fn bootstrap(
    debootstrap: &Path,
    rootfs: &Path,
    mirror: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), RuntimeError> {
    let mut child = tokio::process::Command::new(debootstrap)
        .arg("--variant=minbase")
        .arg(format!("--include={}", packages().join(",")))
        .arg(SUITE)
        .arg(rootfs)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RuntimeError::Io(format!("cannot run debootstrap: {e}")))?;
    let mut last = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(step) = line.strip_prefix("I: ") {
                // Phases go to the log; the hundreds of per-package lines only to the status.
                let per_package = ["Retrieving ", "Validating ", "Extracting ", "Unpacking ", "Configuring "]
                    .iter()
                    .any(|p| step.starts_with(p));
                if per_package { progress(step) } else { tell(progress, step) }
            }
            last.push(line);
            if last.len() > 20 {
                last.remove(0);
            }
        }
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    let status = child.wait().await.map_err(|e| RuntimeError::Io(format!("debootstrap: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let said =
        stderr.lines().chain(last.iter().map(String::as_str)).filter(|l| l.starts_with("E: ")).collect::<Vec<_>>();
    let said = if said.is_empty() { last.join("\n") } else { said.join("\n") };
    Err(RuntimeError::Io(format!("debootstrap failed ({status}):\n{said}")))
}

/// Leave out what only the build needed: downloaded packages and package lists.
async fn tidy(rootfs: &Path) -> Result<(), RuntimeError> {
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let dir = rootfs.join(dir);
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else { continue };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            if path.is_file() {
                let _ = tokio::fs::remove_file(&path).await;
            }
        }
    }
    Ok(())
}

/// `docker import` of `rootfs` as `tag`, streamed from `tar`.
async fn import(docker: &Docker, rootfs: &Path, tag: &str) -> Result<(), RuntimeError> {
    let mut tar = tokio::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RuntimeError::Io(format!("cannot run tar: {e}")))?;
    let stdout = tar.stdout.take().ok_or_else(|| RuntimeError::Io("tar has no output".to_string()))?;
    let chunks = futures_util::stream::unfold(stdout, |mut out| async move {
        let mut buffer = vec![0; CHUNK];
        match out.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buffer)), out))
            }
            Err(e) => Some((Err(e), out)),
        }
    });
    let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
    let changes: Vec<String> = IMAGE_SETTINGS.iter().map(|s| (*s).to_string()).collect();
    let options = CreateImageOptionsBuilder::default().from_src("-").repo(repo).tag(version).changes(changes).build();
    let mut import = docker.create_image(Some(options), Some(bollard::body_try_stream(chunks)), None);
    while let Some(step) = import.next().await {
        step.map_err(|e| RuntimeError::Docker(format!("importing {tag}: {e}")))?;
    }
    let status = tar.wait().await.map_err(|e| RuntimeError::Io(format!("tar: {e}")))?;
    if !status.success() {
        return Err(RuntimeError::Io(format!("tar of the base image failed ({status})")));
    }
    Ok(())
}

/// Point [`BASE_IMAGE`] at `tag`.
async fn point_stable_tag(docker: &Docker, tag: &str) -> Result<(), RuntimeError> {
    let (repo, version) = BASE_IMAGE.split_once(':').unwrap_or((BASE_IMAGE, "latest"));
    let options = TagImageOptionsBuilder::default().repo(repo).tag(version).build();
    docker.tag_image(tag, Some(options)).await.map_err(|e| RuntimeError::Docker(format!("tagging {tag}: {e}")))
}

/// The Debian mirror: the variable's, else the first this machine's apt uses, else Debian's.
fn mirror() -> String {
    if let Ok(mirror) = std::env::var(MIRROR_VARIABLE)
        && !mirror.trim().is_empty()
    {
        return mirror.trim().to_string();
    }
    let deb822 = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let classic = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    apt_mirror(&deb822, &classic).unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// The first Debian archive (not its security archive) named by apt's sources.
fn apt_mirror(deb822: &str, classic: &str) -> Option<String> {
    let from_deb822 = deb822.lines().filter_map(|l| l.trim().strip_prefix("URIs:")).flat_map(str::split_whitespace);
    let from_classic = classic
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("deb "))
        .filter_map(|l| l.split_whitespace().find(|w| w.contains("://")));
    from_deb822.chain(from_classic).find(|uri| !uri.contains("security")).map(str::to_string)
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).map(|d| d.join(tool)).find(|f| f.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_the_machines_debian_archive() {
        let deb822 = "Types: deb\nURIs: http://mirror.lan/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(apt_mirror(deb822, ""), Some("http://mirror.lan/debian".to_string()));
        let classic = "# comment\ndeb http://security.debian.org/debian-security bookworm-security main\ndeb [arch=amd64] http://ftp.de.debian.org/debian bookworm main\n";
        assert_eq!(apt_mirror("", classic), Some("http://ftp.de.debian.org/debian".to_string()));
        assert_eq!(apt_mirror("", ""), None);
    }

    #[test]
    fn the_package_list_is_read_without_its_comments() {
        let packages = packages();
        assert!(packages.contains(&"supervisor") && packages.contains(&"python3-paho-mqtt"), "{packages:?}");
        assert!(packages.iter().all(|p| !p.contains(' ') && !p.starts_with('#')), "{packages:?}");
    }

    #[test]
    fn the_recipe_names_its_image() {
        let tag = recipe_tag();
        assert!(
            tag.starts_with("iot2mqtt/base:bookworm-") && tag.len() == "iot2mqtt/base:bookworm-".len() + 12,
            "{tag}"
        );
        assert_eq!(tag, recipe_tag(), "the same recipe, the same tag");
    }
}

//! The images the Docker runtime builds: the runner image (`FROM scratch` around the static
//! `iot2mqtt-host`), a connector's own image from the `Dockerfile` in its folder, and the tool
//! image (the connector's folder on top of one of them). All are tagged by content and pruned
//! when outdated.

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters::BuildImageOptionsBuilder;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::DockerRuntime;
use crate::runtime::RuntimeError;

/// The runner image's recipe, from `runner-image/`.
const RUNNER_DOCKERFILE: &str = include_str!("../../../../../runner-image/Dockerfile");
/// The most of a connector's folder that goes into a build context.
const MAX_FOLDER_BYTES: u64 = 64 << 20;
/// The recipe of a tool image, added to the connector's folder when it is built.
const TOOL_DOCKERFILE: &str = ".iot2mqtt-tool.Dockerfile";
/// Its text: the connector's folder on top of its image.
const TOOL_DOCKERFILE_TEXT: &str = "ARG BASE\nFROM ${BASE}\nCOPY . /connector/\n";

impl DockerRuntime {
    /// Build the runner image unless an up-to-date one exists; its tag. The host binary is read
    /// and hashed again only when its size or modification time changed.
    pub async fn ensure_image(&self) -> Result<String, RuntimeError> {
        let mut cached = self.image.lock().await;
        let stamp = tokio::fs::metadata(&self.host_binary).await.ok().map(|m| (m.len(), m.modified().ok()));
        if let Some((seen, tag)) = cached.as_ref()
            && stamp.is_some()
            && *seen == stamp
        {
            return Ok(tag.clone());
        }
        let dockerfile = RUNNER_DOCKERFILE.as_bytes();
        let binary = self.host_binary_bytes().await?;
        let mut hash = Sha256::new();
        hash.update(dockerfile);
        hash.update(&binary);
        let tag = format!("iot2mqtt/runner:{}", &hex::encode(hash.finalize())[..16]);
        if self.docker.inspect_image(&tag).await.is_ok() {
            *cached = Some((stamp, tag.clone()));
            return Ok(tag);
        }
        tracing::info!(%tag, "building the runner image");
        let context = build_context(dockerfile, &binary).map_err(|e| RuntimeError::Io(e.to_string()))?;
        self.build(&tag, context, "Dockerfile", &HashMap::new(), &[("iot2mqtt.type", "runner")], &|_| {}).await?;
        *cached = Some((stamp, tag.clone()));
        self.prune_images(&tag, &["iot2mqtt.type=runner".to_string()]).await;
        Ok(tag)
    }

    /// The static `iot2mqtt-host` the images are built around.
    async fn host_binary_bytes(&self) -> Result<Vec<u8>, RuntimeError> {
        let binary = tokio::fs::read(&self.host_binary).await.map_err(|e| {
            RuntimeError::Io(format!(
                "cannot read {} (build it with `cargo build --release`): {e}",
                self.host_binary.display()
            ))
        })?;
        if crate::runtime::elf::is_static(&binary) != Some(true) {
            return Err(RuntimeError::Io(format!(
                "{} is not a static executable; build it with `cargo build --release` in the repository",
                self.host_binary.display()
            )));
        }
        Ok(binary)
    }

    /// The image a connector's program tools run in: the connector's own image (built from
    /// the `Dockerfile` in its folder) or, without one, the runner image; with the folder at
    /// `/connector`. Tagged by the folder's content, built when that changes.
    pub async fn tool_image(&self, connector: &str, dir: &Path) -> Result<String, RuntimeError> {
        let packed = self.pack(connector, dir).await?;
        let base = match packed.own_image {
            true => None,
            false => Some(self.ensure_image().await?),
        };
        let mut hash = Sha256::new();
        hash.update(&packed.context);
        hash.update(base.as_deref().unwrap_or_default());
        let hash = &hex::encode(hash.finalize())[..16];
        let tag = format!("iot2mqtt/tool:{connector}-{hash}");
        if self.docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        let base = match base {
            Some(runner) => runner,
            None => self.connector_image(connector, &packed, &|_| {}).await?,
        };
        let _one_build_at_a_time = self.building.lock().await;
        if self.docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        tracing::info!(%tag, "building the tool image of connector {connector}");
        let args = HashMap::from([("BASE".to_string(), base)]);
        let labels = [("iot2mqtt.type", "tool"), ("iot2mqtt.connector", connector)];
        self.build(&tag, packed.context.clone(), TOOL_DOCKERFILE, &args, &labels, &|_| {}).await?;
        let labels = ["iot2mqtt.type=tool".to_string(), format!("iot2mqtt.connector={connector}")];
        self.prune_images(&tag, &labels).await;
        Ok(tag)
    }

    /// A connector's own image, built from the `Dockerfile` in its folder (after the base
    /// image, when the Dockerfile starts from it) unless it exists; its tag. Each step of a
    /// build is told to `progress`.
    pub(super) async fn connector_image(
        &self,
        connector: &str,
        packed: &Packed,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<String, RuntimeError> {
        let tag = packed.tag.clone();
        if self.docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        let _one_build_at_a_time = self.building.lock().await;
        if self.docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        if packed.wants_base {
            super::base::ensure_base(&self.docker, progress).await?;
        }
        tracing::info!(%tag, "building the image of connector {connector}");
        progress(&format!("building the image of connector {connector}"));
        let labels = [("iot2mqtt.type", "connector"), ("iot2mqtt.connector", connector)];
        self.build(&tag, packed.context.clone(), "Dockerfile", &HashMap::new(), &labels, progress).await?;
        let labels = ["iot2mqtt.type=connector".to_string(), format!("iot2mqtt.connector={connector}")];
        self.prune_images(&tag, &labels).await;
        Ok(tag)
    }

    /// Build `context` (a tar archive) with its `dockerfile` and `args` as `tag`.
    async fn build(
        &self,
        tag: &str,
        context: Vec<u8>,
        dockerfile: &str,
        args: &HashMap<String, String>,
        labels: &[(&str, &str)],
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), RuntimeError> {
        let labels: HashMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let options = BuildImageOptionsBuilder::default()
            .t(tag)
            .dockerfile(dockerfile)
            .buildargs(args)
            .rm(true)
            .forcerm(true)
            .labels(&labels)
            .build();
        let mut build = self.docker.build_image(options, None, Some(bollard::body_full(Bytes::from(context))));
        while let Some(step) = build.next().await {
            let step = step.map_err(|e| RuntimeError::Docker(format!("building {tag}: {e}")))?;
            if let Some(detail) = step.error_detail {
                return Err(RuntimeError::Docker(format!("building {tag}: {}", detail.message.unwrap_or_default())));
            }
            // Docker's steps ("Step 2/5 : RUN …"), not every line of their output.
            if let Some(line) = step.stream.as_deref().map(str::trim).filter(|l| l.starts_with("Step ")) {
                tracing::info!(image = %tag, "{line}");
                progress(line);
            }
        }
        Ok(())
    }

    /// Remove images with `labels` other than `current` that no container uses (best effort:
    /// Docker refuses to remove an image in use, and that refusal is fine).
    async fn prune_images(&self, current: &str, labels: &[String]) {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), labels.to_vec());
        let options = bollard::query_parameters::ListImagesOptionsBuilder::new().filters(&filters).build();
        let Ok(images) = self.docker.list_images(Some(options)).await else { return };
        // By tag: an image under the current tag too only loses the old name.
        for tag in images.into_iter().flat_map(|i| i.repo_tags).filter(|t| t != current) {
            let options = bollard::query_parameters::RemoveImageOptionsBuilder::new().build();
            if self.docker.remove_image(&tag, Some(options), None).await.is_ok() {
                tracing::info!(image = %tag, "removed an outdated image");
            }
        }
    }
}

/// A connector's folder packed for a build, and the tag of its own image.
pub(super) struct Packed {
    /// The folder as a tar archive, with the tool recipe (and the host, when asked) added.
    context: Vec<u8>,
    /// `iot2mqtt/connector:{connector}-{content hash}`.
    pub(super) tag: String,
    /// It has a `Dockerfile`.
    own_image: bool,
    /// Its `Dockerfile` starts from the base image made here.
    wants_base: bool,
}

/// Where a connector's Dockerfile finds `iot2mqtt-host` in its build context, to run its
/// plugin as the contract bridge (`COPY .iot2mqtt/iot2mqtt-host /usr/local/bin/`).
pub const HOST_IN_CONTEXT: &str = ".iot2mqtt/iot2mqtt-host";

impl DockerRuntime {
    /// Pack a connector's folder, with the static `iot2mqtt-host` when its Dockerfile copies it.
    pub(super) async fn pack(&self, connector: &str, dir: &Path) -> Result<Packed, RuntimeError> {
        let dockerfile = tokio::fs::read_to_string(dir.join("Dockerfile")).await.ok();
        let host = match dockerfile.as_deref().is_some_and(|d| d.contains(HOST_IN_CONTEXT)) {
            true => Some(self.host_binary_bytes().await?),
            false => None,
        };
        let folder = dir.to_path_buf();
        let context = tokio::task::spawn_blocking(move || {
            let mut extra = vec![(TOOL_DOCKERFILE, TOOL_DOCKERFILE_TEXT.as_bytes(), 0o644)];
            if let Some(host) = &host {
                extra.push((HOST_IN_CONTEXT, host.as_slice(), 0o755));
            }
            folder_archive(&folder, &extra)
        })
        .await
        .map_err(|e| RuntimeError::Io(e.to_string()))?
        .map_err(|e| RuntimeError::Io(format!("cannot pack the folder of connector \"{connector}\": {e}")))?;
        let hash = hex::encode(Sha256::digest(&context));
        Ok(Packed {
            context,
            tag: format!("iot2mqtt/connector:{connector}-{}", &hash[..16]),
            own_image: dockerfile.is_some(),
            wants_base: dockerfile.as_deref().is_some_and(starts_from_base),
        })
    }
}

/// Whether a Dockerfile's `FROM` (directly or through an `ARG` default) is the base image.
fn starts_from_base(dockerfile: &str) -> bool {
    let base = super::base::BASE_IMAGE.split(':').next().unwrap_or_default();
    dockerfile.lines().map(str::trim).any(|line| {
        let upper = line.to_ascii_uppercase();
        (upper.starts_with("FROM ") || upper.starts_with("ARG ")) && line.contains(base)
    })
}

/// The build context: the Dockerfile and the host binary, as a tar archive in memory.
fn build_context(dockerfile: &[u8], binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    for (name, bytes, mode) in [("Dockerfile", dockerfile, 0o644), ("iot2mqtt-host", binary, 0o755)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        archive.append_data(&mut header, name, bytes)?;
    }
    archive.into_inner()
}

/// A connector's folder as a tar archive in memory, with `extra` files after it: regular files and folders in name order with fixed times and owners, so
/// the same content gives the same bytes. Symbolic links are left out (they could point
/// outside the folder).
fn folder_archive(dir: &Path, extra: &[(&str, &[u8], u32)]) -> std::io::Result<Vec<u8>> {
    fn add(archive: &mut tar::Builder<Vec<u8>>, dir: &Path, name: &Path, total: &mut u64) -> std::io::Result<()> {
        let mut entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let kind = entry.file_type()?;
            let path = name.join(entry.file_name());
            let executable = std::os::unix::fs::PermissionsExt::mode(&entry.metadata()?.permissions()) & 0o100 != 0;
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            if kind.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                header.set_cksum();
                archive.append_data(&mut header, &path, std::io::empty())?;
                add(archive, &entry.path(), &path, total)?;
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path())?;
                *total += bytes.len() as u64;
                if *total > MAX_FOLDER_BYTES {
                    return Err(std::io::Error::other(format!("it holds more than {} MiB", MAX_FOLDER_BYTES >> 20)));
                }
                header.set_mode(if executable { 0o755 } else { 0o644 });
                header.set_size(bytes.len() as u64);
                header.set_cksum();
                archive.append_data(&mut header, &path, bytes.as_slice())?;
            }
        }
        Ok(())
    }
    let mut archive = tar::Builder::new(Vec::new());
    add(&mut archive, dir, Path::new(""), &mut 0)?;
    for (name, bytes, mode) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_mode(*mode);
        header.set_size(bytes.len() as u64);
        header.set_cksum();
        archive.append_data(&mut header, name, *bytes)?;
    }
    archive.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfiles_starting_from_the_base_are_told() {
        assert!(starts_from_base("ARG BASE=iot2mqtt/base:bookworm\nFROM ${BASE}\n"));
        assert!(starts_from_base("from iot2mqtt/base:bookworm\n"));
        assert!(!starts_from_base("ARG BASE=registry.lan/python:3.12\nFROM ${BASE}\n"));
        assert!(!starts_from_base("FROM scratch\n# not iot2mqtt/base\n"));
    }

    #[test]
    fn folder_archives_are_reproducible_and_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/tool.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.path().join("sub/tool.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let first = folder_archive(dir.path(), &[("extra", b"x", 0o644)]).unwrap();
        let touched = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("Dockerfile"))
            .unwrap()
            .set_modified(touched)
            .unwrap();
        assert_eq!(first, folder_archive(dir.path(), &[("extra", b"x", 0o644)]).unwrap(), "same content, same bytes");
        let mut archive = tar::Archive::new(first.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.header().mode().unwrap())
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("Dockerfile".to_string(), 0o644),
                ("sub".to_string(), 0o755),
                ("sub/tool.sh".to_string(), 0o755),
                ("extra".to_string(), 0o644)
            ]
        );
    }
}

//! The sandbox of script tools in the embedded runtime, made with bubblewrap (Debian's
//! `bubblewrap`): a tool sees the system's programs and libraries read-only, its connector's
//! folder read-only at `/connector`, an empty `/tmp`, and nothing of `serve`'s data. It runs
//! as an unprivileged user with no capabilities, in namespaces of its own (PID, IPC, UTS, and
//! network unless it asked for some), under a seccomp filter that refuses the calls a tool has
//! no use for (mounts, namespaces, tracing, kernel modules, keyrings, BPF, …).
//!
//! Its PID namespace is what bounds its lifetime: when the tool exits or is killed, the
//! namespace's first process dies and the kernel kills everything left in it, including a
//! child that called `setsid()` to get away.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use command_fds::{CommandFdExt, FdMapping};
use iot2mqtt_flows::schema::ToolNetwork;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Where the connector's folder appears inside the sandbox.
pub(super) const CONNECTOR_DIR: &str = "/connector";
/// The user a tool runs as when `serve` runs as root: `nobody`.
const NOBODY: u32 = 65534;
/// The descriptors the two seccomp programs are handed over on.
const FILTER_FDS: [i32; 2] = [3, 4];

/// System folders bound read-only where they exist.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/// The parts of `/etc` programs need to run, resolve names and check certificates; nothing with
/// secrets or accounts in it.
const SYSTEM_FILES: &[&str] = &[
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/mime.types",
    "/etc/nsswitch.conf",
    "/etc/protocols",
    "/etc/resolv.conf",
    "/etc/services",
    "/etc/ssl",
];

/// The sandbox, found once: bubblewrap's path and the compiled filters.
#[derive(Debug)]
pub(super) struct Sandbox {
    bwrap: PathBuf,
    /// `setpriv`, when `serve` is root and the tool must be made `nobody` inside.
    setpriv: Option<PathBuf>,
    /// The `python*` folders of `/etc` (Debian's site configuration).
    etc_python: Vec<PathBuf>,
    /// The filter refusing with EPERM, and the one answering `clone3` with ENOSYS.
    filters: [Vec<u8>; 2],
}

impl Sandbox {
    /// Find bubblewrap and check that it works here; the error says what is missing.
    pub(super) async fn find() -> Result<Self, String> {
        let bwrap = which("bwrap").ok_or("bubblewrap (`bwrap`) is not installed; install Debian's `bubblewrap`")?;
        let setpriv = if nix::unistd::geteuid().is_root() {
            Some(which("setpriv").ok_or("`setpriv` (util-linux) is not installed")?)
        } else {
            None
        };
        let etc_python = std::fs::read_dir("/etc")
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("python")))
                    .collect()
            })
            .unwrap_or_default();
        let sandbox = Self { bwrap, setpriv, etc_python, filters: filters()? };
        sandbox.probe().await?;
        Ok(sandbox)
    }

    /// Run `true` in the sandbox once: a kernel without user namespaces, or a container that
    /// forbids mounts, shows here rather than at a person's first tool.
    async fn probe(&self) -> Result<(), String> {
        let empty = std::env::temp_dir();
        let mut command = self.command(&empty, Path::new("true"), ToolNetwork::None)?;
        let output = command
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot start {}: {e}", self.bwrap.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("bubblewrap cannot make a sandbox here: {}", String::from_utf8_lossy(&output.stderr).trim()))
        }
    }

    /// The command that runs `program` (a path in `dir`, or a program on the system's `PATH`)
    /// in the sandbox, in `dir` seen as [`CONNECTOR_DIR`], with `network`.
    pub(super) fn command(
        &self,
        dir: &Path,
        program: &Path,
        network: ToolNetwork,
    ) -> Result<tokio::process::Command, String> {
        let inside = match program.strip_prefix(dir) {
            Ok(relative) => Path::new(CONNECTOR_DIR).join(relative),
            Err(_) => program.to_path_buf(),
        };
        let mut command = tokio::process::Command::new(&self.bwrap);
        command.args(["--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]);
        command.args(["--unshare-cgroup-try", "--hostname", "iot2mqtt-tool"]);
        if network == ToolNetwork::None {
            command.arg("--unshare-net");
        }
        // Folders bubblewrap makes for mount points follow `serve`'s umask; /etc is one of
        // them and must be readable by the tool.
        command.args(["--perms", "0755", "--dir", "/etc"]);
        for system in SYSTEM_DIRS.iter().map(Path::new).chain(SYSTEM_FILES.iter().map(Path::new)) {
            command.arg("--ro-bind-try").arg(system).arg(system);
        }
        for python in &self.etc_python {
            command.arg("--ro-bind-try").arg(python).arg(python);
        }
        command.args(["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]);
        command.arg("--ro-bind").arg(dir).arg(CONNECTOR_DIR).args(["--chdir", CONNECTOR_DIR]);
        command.args(["--cap-drop", "ALL"]);
        let mut mappings = Vec::new();
        for (bytes, fd) in self.filters.iter().zip(FILTER_FDS) {
            command.arg("--add-seccomp-fd").arg(fd.to_string());
            mappings.push(FdMapping { parent_fd: readable(bytes)?, child_fd: fd });
        }
        command.fd_mappings(mappings).map_err(|e| e.to_string())?;
        match &self.setpriv {
            // Root outside: bubblewrap keeps what it needs to become nobody, and `setpriv`
            // drops it, with every capability, before the tool starts.
            Some(setpriv) => {
                command.args(["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP", "--"]);
                command.arg(setpriv).arg(format!("--reuid={NOBODY}")).arg(format!("--regid={NOBODY}"));
                command.args(["--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]);
            }
            // An ordinary user outside: a user namespace of its own, in which it is nobody.
            None => {
                command.args(["--unshare-user", "--uid", &NOBODY.to_string(), "--gid", &NOBODY.to_string(), "--"]);
            }
        }
        command.arg(inside);
        Ok(command)
    }
}

/// `bytes` behind the read end of a pipe (a filter is far smaller than a pipe's buffer).
fn readable(bytes: &[u8]) -> Result<OwnedFd, String> {
    let (read, write) = nix::unistd::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    std::fs::File::from(write).write_all(bytes).map_err(|e| format!("cannot write the seccomp filter: {e}"))?;
    Ok(read)
}

/// `program` on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// The system calls a tool is refused (EPERM): changing mounts and namespaces, tracing other
/// processes, loading code into the kernel, keyrings, and other attack surface a script that
/// talks to a device never needs.
fn refused() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_fsconfig,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_clock_settime,
        libc::SYS_settimeofday,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_vhangup,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_modify_ldt, libc::SYS_uselib]);
    calls
}

/// The two seccomp programs, as bubblewrap reads them: everything in [`refused`] and `clone`
/// with a namespace flag answer EPERM; `clone3`, whose flags a filter cannot see, answers
/// ENOSYS so that the C library falls back to `clone`.
fn filters() -> Result<[Vec<u8>; 2], String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("no seccomp filter for {}: {e:?}", std::env::consts::ARCH))?;
    let namespaces = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWCGROUP,
    ];
    let compile = |rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32| -> Result<Vec<u8>, String> {
        let errno = u32::try_from(errno).map_err(|e| e.to_string())?;
        let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno), arch)
            .map_err(|e| format!("seccomp filter: {e}"))?;
        let program = BpfProgram::try_from(filter).map_err(|e| format!("seccomp filter: {e}"))?;
        Ok(program
            .iter()
            .flat_map(|i| [&i.code.to_ne_bytes()[..], &[i.jt, i.jf], &i.k.to_ne_bytes()].concat())
            .collect())
    };
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = refused().into_iter().map(|call| (call, Vec::new())).collect();
    let clone_rules = namespaces
        .iter()
        .map(|&flag| {
            let flag = u64::try_from(flag).map_err(|e| e.to_string())?;
            let condition = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
                .map_err(|e| format!("seccomp filter: {e}"))?;
            SeccompRule::new(vec![condition]).map_err(|e| format!("seccomp filter: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    denied.insert(libc::SYS_clone, clone_rules);
    let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    Ok([compile(denied, libc::EPERM)?, compile(clone3, libc::ENOSYS)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_this_machine() {
        let [denied, clone3] = filters().unwrap();
        // Whole BPF instructions, and more of them for the long list.
        assert_eq!(denied.len() % 8, 0);
        assert_eq!(clone3.len() % 8, 0);
        assert!(denied.len() > clone3.len());
    }
}

//! Executors: the last step of amphi's create pipeline.
//!
//! The shared pipeline (namespaces, id maps, mounts and rootfs, cgroups, process attributes) runs the
//! same way for every container; what runs at the end is decided once per container by [`select`] and
//! carried out by an [`Executor`]. The [`linux::LinuxExecutor`] `execve`s a binary found inside the
//! container; the [`wasm::WasmExecutor`] runs a WASI module or component in wasmtime.
//!
//! Lifecycle of an executor within one container (see `DESIGN.md`):
//! 1. [`Executor::prepare`], host side, in `amphi create` before any process is forked;
//! 2. [`Executor::load`], inside the init process once the rootfs is final (after `pivot_root`), still
//!    during `create`, so that a missing workload fails `create` and not `start`;
//! 3. [`Executor::exec`], inside the init process after `amphi start`: replaces the process with the
//!    workload and returns only on error.

use std::convert::Infallible;
use std::path::Path;

use oci_spec::runtime::Spec;

pub mod linux;
pub mod path;
pub mod signals;
pub mod wasm;

/// Annotation that marks a Kubernetes pod sandbox ("pause") container (CRI).
pub const ANNOTATION_CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// An error of an executor. Its message is shown to the user as the reason `create` or `start` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// `process.args` is missing or empty (runtime-spec config.md, "process.args": REQUIRED, at least one
    /// entry).
    #[error("process.args: must contain at least one entry")]
    EmptyArgs,
    /// The executable named by `process.args[0]` was not found inside the container. The message keeps
    /// runc's wording "executable file not found in $PATH": podman matches it to report "command not
    /// found" (exit status 127).
    #[error(
        "process.args[0]: {name:?}: executable file not found in $PATH ({path}) of the container"
    )]
    NotFound {
        /// `args[0]` as given.
        name: String,
        /// The search path that was used.
        path: String,
    },
    /// `process.args[0]` names something that cannot be executed (not a regular file, no execute bit).
    #[error("process.args[0]: {path:?} is not an executable file: {reason}")]
    NotExecutable {
        /// The path inside the container.
        path: String,
        /// Why it cannot be executed.
        reason: String,
    },
    /// A string of the process (an argument or environment entry) contains a NUL byte.
    #[error("{field}: contains a NUL byte")]
    Nul {
        /// The config field, e.g. `process.env[3]`.
        field: String,
    },
    /// The Wasm workload could not be compiled, linked or instantiated.
    #[error("{0}")]
    Wasm(String),
    /// The final exec failed.
    #[error("exec {path:?}: {source}")]
    Exec {
        /// The path that was executed.
        path: String,
        /// The errno of `execve(2)`.
        source: nix::Error,
    },
}

/// What an executor is chosen from: the container's config and where its rootfs is on the host.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    /// The container's config.json, already validated by the pipeline.
    pub spec: &'a Spec,
    /// The rootfs directory on the host (absolute), before any mount of the pipeline.
    pub rootfs: &'a Path,
    /// The file name the runtime binary was invoked under (argv\[0\] of amphi itself, base name only).
    pub invoked_as: &'a str,
    /// The directory of the Wasm AOT cache.
    pub wasm_cache_dir: &'a Path,
}

impl Workload<'_> {
    /// The value of the annotation `key`, if any.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }

    /// True for a Kubernetes pod sandbox (pause) container, which is always run natively.
    pub fn is_sandbox(&self) -> bool {
        self.annotation(ANNOTATION_CRI_CONTAINER_TYPE) == Some("sandbox")
    }
}

/// The final step of the create pipeline, specialised per kind of workload.
pub trait Executor {
    /// Short name, recorded in the container state and shown in logs (e.g. `linux`).
    fn name(&self) -> &'static str;

    /// Host side, during `create`, before the init process is forked: check and prepare what can be
    /// done before the container's mounts exist. Errors fail `create`.
    fn prepare(&mut self, workload: &Workload<'_>) -> Result<(), ExecutorError>;

    /// Inside the init process, once the rootfs is final (after `pivot_root`, before the process's
    /// user and capabilities are applied), still during `create`: find the workload in the container's
    /// view. Errors fail `create`.
    fn load(&mut self, spec: &Spec) -> Result<(), ExecutorError>;

    /// Inside the init process after `start`: run the workload. Returns only on error.
    ///
    /// `notify_started` is called once the workload is about to run, by executors that do not
    /// `execve` (an `execve` reports the start by closing the close-on-exec start connection).
    fn exec(&mut self, notify_started: &mut dyn FnMut()) -> Result<Infallible, ExecutorError>;
}

/// The name under which amphi always runs workloads as Wasm (a symlink to the binary), the way podman's
/// `--platform wasi/wasm` picks a runtime by name.
pub const WASM_ALIAS: &str = "amphi-wasm";

/// Annotation naming the handler of a container (crun's `run.oci.handler`).
pub const ANNOTATION_HANDLER: &str = "run.oci.handler";

/// Annotation of wasm images (`module.wasm.image/variant`).
pub const ANNOTATION_VARIANT: &str = "module.wasm.image/variant";

/// Which executor a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Execute a Linux binary.
    Linux,
    /// Run a Wasm module or component in wasmtime.
    Wasm,
}

/// Decides, once per container, which executor runs it. In order:
/// 1. `io.kubernetes.cri.container-type=sandbox` (a pod's pause container): Linux;
/// 2. `run.oci.handler`: `wasm` or `wasmtime` -> Wasm; `wasm-smart` -> Wasm when `args[0]` ends in
///    `.wasm` or `.wat`, else Linux;
/// 3. `module.wasm.image/variant`: `compat` -> Wasm; `compat-smart` -> the same suffix rule;
/// 4. amphi invoked as `amphi-wasm`: Wasm;
/// 5. the file `args[0]` resolves to inside the rootfs: `\0asm` magic or WAT text -> Wasm; anything else
///    (ELF, `#!`, missing) -> Linux.
pub fn choose(w: &Workload<'_>) -> Choice {
    if w.is_sandbox() {
        return Choice::Linux;
    }
    let arg0 = w
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first())
        .map(String::as_str)
        .unwrap_or("");
    let by_suffix = || {
        if wasm::detect::has_wasm_suffix(arg0) {
            Choice::Wasm
        } else {
            Choice::Linux
        }
    };
    match w.annotation(ANNOTATION_HANDLER) {
        Some("wasm") | Some("wasmtime") => return Choice::Wasm,
        Some("wasm-smart") => return by_suffix(),
        _ => {}
    }
    match w.annotation(ANNOTATION_VARIANT) {
        Some("compat") => return Choice::Wasm,
        Some("compat-smart") => return by_suffix(),
        _ => {}
    }
    if w.invoked_as == WASM_ALIAS {
        return Choice::Wasm;
    }
    let head = path::locate(w.spec, w.rootfs).and_then(|p| {
        use std::io::Read;
        let mut buf = vec![0u8; 4096];
        let n = std::fs::File::open(p)
            .and_then(|mut f| f.read(&mut buf))
            .ok()?;
        buf.truncate(n);
        Some(buf)
    });
    match head.as_deref().and_then(wasm::detect::sniff) {
        Some(_) => Choice::Wasm,
        None => Choice::Linux,
    }
}

/// The executor for `w`, as [`choose`] decides.
pub fn select(w: &Workload<'_>) -> Box<dyn Executor> {
    match choose(w) {
        Choice::Linux => Box::new(linux::LinuxExecutor::default()),
        Choice::Wasm => Box::new(wasm::WasmExecutor::new(w.wasm_cache_dir)),
    }
}
